"""Emotion events: the payload published for each utterance, its schema and its MQTT topics.

One event is published per utterance on ``{prefix}/{device_id}/emotion`` with QoS 1; the device's
availability is a retained ``online``/``offline`` on ``{prefix}/{device_id}/status`` (``offline`` is
also the last will); periodic statistics go to ``{prefix}/{device_id}/stats``.

The payload is compact JSON (schema version :data:`SCHEMA_VERSION`)::

    {"schema":1,"device_id":"kitchen-pi","seq":42,"time":"2026-11-21T14:03:07.120Z",
     "start_s":812.34,"end_s":815.9,"label":"angry","confidence":0.71,
     "scores":{"neutral":0.03,"calm":0.01,"happy":0.08,"sad":0.02,"angry":0.71,...},
     "model":"ravdess8-conv1d@3f9a1c2b7d10"}

Delivery is at-least-once: a subscriber may see an event twice (after a broker restart or a lost
PUBACK) and can drop duplicates by ``(device_id, seq)``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 1
"""Version of the event payload; bumped on any incompatible change of :data:`EVENT_FIELDS`."""

EVENT_FIELDS = (
    "schema",
    "device_id",
    "seq",
    "time",
    "start_s",
    "end_s",
    "label",
    "confidence",
    "scores",
    "model",
)
"""Payload fields of an emotion event, in the order they are serialised."""

EMOTION_SUBTOPIC = "emotion"
STATUS_SUBTOPIC = "status"
STATS_SUBTOPIC = "stats"

STATUS_ONLINE = "online"
"""Retained birth message on the status topic."""
STATUS_OFFLINE = "offline"
"""Retained message on the status topic on clean shutdown, and the last will."""
STATUS_VALUES = (STATUS_ONLINE, STATUS_OFFLINE)

EMOTION_QOS = 1
"""QoS of emotion events and status messages: at least once."""

TIME_DECIMALS = 3
"""``start_s``/``end_s`` are rounded to milliseconds in the payload."""
SCORE_DECIMALS = 4
"""``confidence`` and ``scores`` are rounded to 4 decimals in the payload."""

MODEL_SHA256_PREFIX_CHARS = 12
"""Length of the sha256 prefix in the ``model`` field (``name@3f9a1c2b7d10``)."""

_RFC3339_UTC_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_TOPIC_FORBIDDEN = ("+", "#", "\x00")


def _check_topic_parts(prefix: str, device_id: str) -> None:
    """Raise ``ValueError`` unless ``prefix``/``device_id`` form a valid, wildcard-free topic."""
    if not isinstance(prefix, str) or not prefix or prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError(f"expected a non-empty topic prefix without leading/trailing '/', got {prefix!r}")
    if any(c in prefix for c in _TOPIC_FORBIDDEN):
        raise ValueError(f"expected a topic prefix without '+', '#' or NUL, got {prefix!r}")
    if not isinstance(device_id, str) or not device_id:
        raise ValueError(f"expected a non-empty device_id, got {device_id!r}")
    if any(c in device_id for c in (*_TOPIC_FORBIDDEN, "/")):
        raise ValueError(f"expected a device_id without '/', '+', '#' or NUL, got {device_id!r}")


def emotion_topic(prefix: str, device_id: str) -> str:
    """Topic of the emotion events of one device: ``f"{prefix}/{device_id}/emotion"``.

    :raises ValueError: if ``prefix`` is empty, starts/ends with '/' or holds a wildcard, or if
        ``device_id`` is empty or holds '/', '+', '#'.
    """
    _check_topic_parts(prefix, device_id)
    return f"{prefix}/{device_id}/{EMOTION_SUBTOPIC}"


def status_topic(prefix: str, device_id: str) -> str:
    """Availability topic of one device (retained ``online``/``offline``): ``.../status``.

    :raises ValueError: as :func:`emotion_topic`.
    """
    _check_topic_parts(prefix, device_id)
    return f"{prefix}/{device_id}/{STATUS_SUBTOPIC}"


def stats_topic(prefix: str, device_id: str) -> str:
    """Statistics topic of one device: ``.../stats``.

    :raises ValueError: as :func:`emotion_topic`.
    """
    _check_topic_parts(prefix, device_id)
    return f"{prefix}/{device_id}/{STATS_SUBTOPIC}"


def model_id(name: str, sha256_hex: str) -> str:
    """The ``model`` field: manifest name, '@', first 12 hex digits of the model's sha256.

    :raises ValueError: if ``name`` is empty or ``sha256_hex`` is shorter than 12 hex digits.
    """
    if not name:
        raise ValueError(f"expected a non-empty model name, got {name!r}")
    prefix = sha256_hex[:MODEL_SHA256_PREFIX_CHARS].lower()
    if len(prefix) < MODEL_SHA256_PREFIX_CHARS or any(c not in "0123456789abcdef" for c in prefix):
        raise ValueError(f"expected a sha256 hex digest, got {sha256_hex!r}")
    return f"{name}@{prefix}"


def to_rfc3339_utc(moment: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with milliseconds: ``2026-11-21T14:03:07.120Z``.

    Milliseconds are truncated, not rounded, so the result never lies in the future.

    :raises ValueError: if ``moment`` is naive (no tzinfo).
    """
    if moment.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {moment!r}")
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def utc_now_rfc3339() -> str:
    """The current wall-clock time as RFC 3339 UTC with milliseconds and 'Z'."""
    return to_rfc3339_utc(datetime.now(UTC))


def _type_name(value: object) -> str:
    return type(value).__name__


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected {name} to be an integer, got {_type_name(value)} {value!r}")
    return value


def _check_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected {name} to be a number, got {_type_name(value)} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"expected {name} to be a finite number, got {value!r}")
    return float(value)


def _check_str(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected {name} to be a non-empty string, got {_type_name(value)} {value!r}")
    return value


def _check_probability(name: str, value: object) -> float:
    number = _check_float(name, value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"expected {name} in [0, 1], got {number!r}")
    return number


@dataclass(frozen=True)
class EmotionEvent:
    """The emotion recognised in one utterance; the payload of ``{prefix}/{device_id}/emotion``.

    Construction validates every field and raises ``ValueError("expected ..., got ...")``;
    integer ``start_s``/``end_s``/``confidence``/scores are stored as floats.
    """

    schema: int
    """Payload schema version; always :data:`SCHEMA_VERSION`."""
    device_id: str
    """Device that heard the utterance (also the topic level)."""
    seq: int
    """Per-stream event counter, >= 0, increasing by one per event; used to order and dedupe."""
    time: str
    """Wall-clock time the event was made, RFC 3339 UTC with milliseconds: ``2026-11-21T14:03:07.120Z``."""
    start_s: float
    """Start of the utterance, seconds of audio since the start of the stream (>= 0)."""
    end_s: float
    """End of the utterance, seconds of audio since the start of the stream (>= start_s)."""
    label: str
    """Recognised emotion; one of the keys of ``scores``."""
    confidence: float
    """Probability of ``label``, in [0, 1]."""
    scores: dict[str, float] = field(hash=False)
    """Label -> probability in [0, 1], for every label of the model, in the manifest's output order."""
    model: str
    """Model that produced the scores: ``"manifestname@sha256prefix12"`` (see :func:`model_id`)."""

    def __post_init__(self) -> None:
        if _check_int("schema", self.schema) != SCHEMA_VERSION:
            raise ValueError(f"expected schema {SCHEMA_VERSION}, got {self.schema!r}")
        _check_str("device_id", self.device_id)
        if _check_int("seq", self.seq) < 0:
            raise ValueError(f"expected seq >= 0, got {self.seq!r}")
        _check_str("time", self.time)
        if not _RFC3339_UTC_MS.fullmatch(self.time):
            raise ValueError(f"expected time as RFC 3339 UTC with milliseconds "
                             f"(2026-11-21T14:03:07.120Z), got {self.time!r}")
        try:
            datetime.strptime(self.time, "%Y-%m-%dT%H:%M:%S.%fZ")
        except ValueError:
            raise ValueError(f"expected a valid calendar time, got {self.time!r}") from None
        start_s = _check_float("start_s", self.start_s)
        end_s = _check_float("end_s", self.end_s)
        if start_s < 0.0:
            raise ValueError(f"expected start_s >= 0, got {start_s!r}")
        if start_s > end_s:
            raise ValueError(f"expected start_s <= end_s, got start_s={start_s!r} end_s={end_s!r}")
        _check_str("label", self.label)
        confidence = _check_probability("confidence", self.confidence)
        if not isinstance(self.scores, dict) or not self.scores:
            raise ValueError(f"expected scores to be a non-empty object, got "
                             f"{_type_name(self.scores)} {self.scores!r}")
        scores = {}
        for name, value in self.scores.items():
            _check_str("score label", name)
            scores[name] = _check_probability(f"scores[{name!r}]", value)
        if self.label not in scores:
            raise ValueError(f"expected label to be one of the scores' labels {sorted(scores)}, "
                             f"got {self.label!r}")
        _check_str("model", self.model)
        object.__setattr__(self, "start_s", start_s)
        object.__setattr__(self, "end_s", end_s)
        object.__setattr__(self, "confidence", confidence)
        object.__setattr__(self, "scores", scores)

    def to_dict(self) -> dict[str, Any]:
        """The payload as a dict in :data:`EVENT_FIELDS` order, floats rounded as in :meth:`to_json`."""
        return {
            "schema": self.schema,
            "device_id": self.device_id,
            "seq": self.seq,
            "time": self.time,
            "start_s": round(self.start_s, TIME_DECIMALS),
            "end_s": round(self.end_s, TIME_DECIMALS),
            "label": self.label,
            "confidence": round(self.confidence, SCORE_DECIMALS),
            "scores": {name: round(p, SCORE_DECIMALS) for name, p in self.scores.items()},
            "model": self.model,
        }

    def to_json(self) -> str:
        """Compact JSON payload (no spaces, UTF-8 text, keys in :data:`EVENT_FIELDS` order).

        Times are rounded to 3 decimals (ms), confidence and scores to 4 decimals, so
        ``from_json(e.to_json())`` equals ``e`` only up to that rounding.
        """
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> EmotionEvent:
        """Parse and strictly validate a payload made by :meth:`to_json`.

        :param text: JSON text, ``str`` or UTF-8 ``bytes`` (an MQTT payload).
        :returns: the event.
        :raises ValueError: one line ``"expected ..., got ..."`` if the text is not a JSON object,
            a field of :data:`EVENT_FIELDS` is missing, an unknown field is present, a field has the
            wrong type, ``schema != SCHEMA_VERSION``, ``label`` is not in ``scores``, a probability is
            outside [0, 1], ``start_s > end_s``, or a number is NaN/infinite.
        """
        if isinstance(text, bytes | bytearray):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"expected UTF-8 JSON, got undecodable bytes ({err})") from None
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as err:
            raise ValueError(f"expected a JSON object, got invalid JSON ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {_type_name(data)}")
        missing = [name for name in EVENT_FIELDS if name not in data]
        if missing:
            raise ValueError(f"expected fields {list(EVENT_FIELDS)}, got {sorted(data)} (missing {missing})")
        unknown = sorted(set(data) - set(EVENT_FIELDS))
        if unknown:
            raise ValueError(f"expected only fields {list(EVENT_FIELDS)}, got unknown fields {unknown}")
        return cls(**data)


def _reject_constant(name: str) -> float:
    raise ValueError(f"expected finite numbers, got {name}")
