"""Emotion events: the payload published for each utterance and its schema (the topics it travels on
are :mod:`edge.mqtt.topics`').

The payload is compact JSON (schema version :data:`SCHEMA_VERSION` = 2), fields in this order::

    {"schema":2,"device_id":"kitchen-pi","session":"5f0c2a9be41d","seq":42,
     "time":"2026-11-21T14:03:07.120Z","start_time":"2026-11-21T14:03:03.050Z",
     "end_time":"2026-11-21T14:03:06.610Z","start_s":812.34,"end_s":815.9,
     "label":"angry","confidence":0.71,"unsure":false,
     "scores":{"neutral":0.03,"calm":0.01,"happy":0.08,"sad":0.02,"angry":0.71,...},
     "arousal":null,"valence":null,"model":"emotion4-conv1d@de4950545d8c"}

* ``schema``: payload version, 2.
* ``device_id``: the device (also the topic level).
* ``session``: 12 random hex digits drawn at every process start (:func:`new_session_id`).
* ``seq``: 0, 1, 2, ... per session; ``(device_id, session, seq)`` is unique across restarts.
* ``time``: when the emotion was decided, RFC 3339 UTC with milliseconds: the wall clock when the event
  was made, or, if later, the capture clock's time of the audio the decision waited for (the
  utterance's end plus the VAD's hangover). The two agree for live audio; for a file replayed faster
  than real time the capture clock runs ahead of the wall clock, and ``time`` follows it, so always
  ``start_time <= end_time <= time``.
* ``start_time``/``end_time``: wall-clock time of the utterance's first and last audio, RFC 3339
  UTC (ms), from the capture clock (:class:`edge.audio.clock.CaptureClock`: PortAudio's input ADC timestamps, the
  read time of an input command's pipe, or the replay's start plus the audio offset, so for a
  replay without ``--realtime`` they are where the audio would be had it been heard live from the
  replay's start).
* ``start_s``/``end_s``: the utterance in seconds of audio since the start of the stream.
* ``label``/``confidence``: the top label (always one of the model's labels) and its probability.
* ``unsure``: true when ``confidence`` is below the model's calibrated threshold; the event is
  still published (an utterance happened) but its label should not be acted on.
* ``scores``: probability of every label, in the manifest's order.
* ``arousal``/``valence``: floats in [-1, 1] when the model has such outputs
  (``ModelManifest.dimensions``), else ``null``.
* ``model``: manifest name @ first 12 hex digits of the model's sha256.

Delivery is at-least-once: a subscriber may see an event twice (after a broker restart or a lost
PUBACK) and can drop duplicates by ``(device_id, session, seq)``.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from edge.audio.clock import CaptureClock

if TYPE_CHECKING:
    from edge.manifest import ModelManifest
    from edge.postprocess import Decision

SCHEMA_VERSION = 2
"""Version of the event payload; bumped on any incompatible change of :data:`EVENT_FIELDS`."""

EVENT_FIELDS = (
    "schema",
    "device_id",
    "session",
    "seq",
    "time",
    "start_time",
    "end_time",
    "start_s",
    "end_s",
    "label",
    "confidence",
    "unsure",
    "scores",
    "arousal",
    "valence",
    "model",
)
"""Payload fields of an emotion event, in the order they are serialised."""

TIME_DECIMALS = 3
"""``start_s``/``end_s`` are rounded to milliseconds in the payload."""
SCORE_DECIMALS = 4
"""``confidence``, ``scores``, ``arousal`` and ``valence`` are rounded to 4 decimals in the payload."""

SESSION_HEX_DIGITS = 12
"""Length of the ``session`` id: 48 random bits, so two starts of one device practically never share one."""

UNSURE_EVENT_TYPE = "unsure"
"""What a subscriber that wants one outcome per utterance (Home Assistant's event entity) calls an
event with ``unsure`` set, instead of its label."""

MODEL_SHA256_PREFIX_CHARS = 12
"""Length of the sha256 prefix in the ``model`` field (``name@3f9a1c2b7d10``)."""

_RFC3339_UTC_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


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


def _check_time(name: str, value: object) -> str:
    _check_str(name, value)
    if not _RFC3339_UTC_MS.fullmatch(value):  # type: ignore[arg-type]
        raise ValueError(f"expected {name} as RFC 3339 UTC with milliseconds "
                         f"(2026-11-21T14:03:07.120Z), got {value!r}")
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f"expected a valid calendar time in {name}, got {value!r}") from None
    return value  # type: ignore[return-value]


def _check_dimension(name: str, value: object) -> float | None:
    if value is None:
        return None
    number = _check_float(name, value)
    if not -1.0 <= number <= 1.0:
        raise ValueError(f"expected {name} in [-1, 1] or null, got {number!r}")
    return number


def new_session_id() -> str:
    """A fresh ``session`` id: :data:`SESSION_HEX_DIGITS` lowercase hex digits from :mod:`secrets`."""
    return secrets.token_hex(SESSION_HEX_DIGITS // 2)


@dataclass(frozen=True)
class EmotionEvent:
    """The emotion recognised in one utterance; the payload of ``{prefix}/{device_id}/emotion``.

    Construction validates every field and raises ``ValueError("expected ..., got ...")``;
    integer ``start_s``/``end_s``/``confidence``/scores/arousal/valence are stored as floats.
    """

    schema: int
    """Payload schema version; always :data:`SCHEMA_VERSION`."""
    device_id: str
    """Device that heard the utterance (also the topic level)."""
    session: str
    """Random id of the process that made the event, new at every start (:func:`new_session_id`)."""
    seq: int
    """Per-session event counter, >= 0, increasing by one per event; ``(device_id, session, seq)``
    orders and de-duplicates events across restarts."""
    time: str
    """Wall-clock time the event was made, RFC 3339 UTC with milliseconds: ``2026-11-21T14:03:07.120Z``."""
    start_time: str
    """Wall-clock time of the utterance's first audio (capture clock), RFC 3339 UTC with milliseconds."""
    end_time: str
    """Wall-clock time of the utterance's last audio (capture clock), RFC 3339 UTC with milliseconds."""
    start_s: float
    """Start of the utterance, seconds of audio since the start of the stream (>= 0)."""
    end_s: float
    """End of the utterance, seconds of audio since the start of the stream (>= start_s)."""
    label: str
    """Recognised emotion (the top label); one of the keys of ``scores``."""
    confidence: float
    """Probability of ``label``, in [0, 1]."""
    unsure: bool
    """``confidence`` is below the model's calibrated threshold: the utterance happened, its label is doubtful."""
    scores: dict[str, float] = field(hash=False)
    """Label -> probability in [0, 1], for every label of the model, in the manifest's output order."""
    arousal: float | None
    """Arousal in [-1, 1] (calm .. excited), ``None`` (JSON null) when the model has no such output."""
    valence: float | None
    """Valence in [-1, 1] (unpleasant .. pleasant), ``None`` (JSON null) when the model has no such output."""
    model: str
    """Model that produced the scores: ``"manifestname@sha256prefix12"`` (see :func:`model_id`)."""

    def __post_init__(self) -> None:
        if _check_int("schema", self.schema) != SCHEMA_VERSION:
            raise ValueError(f"expected schema {SCHEMA_VERSION}, got {self.schema!r}")
        _check_str("device_id", self.device_id)
        _check_str("session", self.session)
        if _check_int("seq", self.seq) < 0:
            raise ValueError(f"expected seq >= 0, got {self.seq!r}")
        _check_time("time", self.time)
        _check_time("start_time", self.start_time)
        _check_time("end_time", self.end_time)
        if self.start_time > self.end_time:  # same fixed-width format: string order is time order
            raise ValueError(f"expected start_time <= end_time, got {self.start_time!r} > {self.end_time!r}")
        start_s = _check_float("start_s", self.start_s)
        end_s = _check_float("end_s", self.end_s)
        if start_s < 0.0:
            raise ValueError(f"expected start_s >= 0, got {start_s!r}")
        if start_s > end_s:
            raise ValueError(f"expected start_s <= end_s, got start_s={start_s!r} end_s={end_s!r}")
        _check_str("label", self.label)
        confidence = _check_probability("confidence", self.confidence)
        if not isinstance(self.unsure, bool):
            raise ValueError(f"expected unsure to be true or false, got {_type_name(self.unsure)} {self.unsure!r}")
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
        arousal = _check_dimension("arousal", self.arousal)
        valence = _check_dimension("valence", self.valence)
        _check_str("model", self.model)
        object.__setattr__(self, "start_s", start_s)
        object.__setattr__(self, "end_s", end_s)
        object.__setattr__(self, "confidence", confidence)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "arousal", arousal)
        object.__setattr__(self, "valence", valence)

    @property
    def event_type(self) -> str:
        """The one outcome of the utterance: :data:`UNSURE_EVENT_TYPE` if ``unsure``, else ``label``."""
        return UNSURE_EVENT_TYPE if self.unsure else self.label

    def to_dict(self) -> dict[str, Any]:
        """The payload as a dict in :data:`EVENT_FIELDS` order, floats rounded as in :meth:`to_json`."""

        def dimension(value: float | None) -> float | None:
            return None if value is None else round(value, SCORE_DECIMALS)

        return {
            "schema": self.schema,
            "device_id": self.device_id,
            "session": self.session,
            "seq": self.seq,
            "time": self.time,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "start_s": round(self.start_s, TIME_DECIMALS),
            "end_s": round(self.end_s, TIME_DECIMALS),
            "label": self.label,
            "confidence": round(self.confidence, SCORE_DECIMALS),
            "unsure": self.unsure,
            "scores": {name: round(p, SCORE_DECIMALS) for name, p in self.scores.items()},
            "arousal": dimension(self.arousal),
            "valence": dimension(self.valence),
            "model": self.model,
        }

    def to_json(self) -> str:
        """Compact JSON payload (no spaces, UTF-8 text, keys in :data:`EVENT_FIELDS` order).

        Times are rounded to 3 decimals (ms), confidence, scores, arousal and valence to 4
        decimals, so ``from_json(e.to_json())`` equals ``e`` only up to that rounding.
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
            outside [0, 1], arousal/valence outside [-1, 1], ``start_s > end_s``, or a number is
            NaN/infinite.
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
        if data.get("schema") != SCHEMA_VERSION and "schema" in data:
            raise ValueError(f"expected schema {SCHEMA_VERSION}, got {data['schema']!r}")
        missing = [name for name in EVENT_FIELDS if name not in data]
        if missing:
            raise ValueError(f"expected fields {list(EVENT_FIELDS)}, got {sorted(data)} (missing {missing})")
        unknown = sorted(set(data) - set(EVENT_FIELDS))
        if unknown:
            raise ValueError(f"expected only fields {list(EVENT_FIELDS)}, got unknown fields {unknown}")
        return cls(**data)


class EventFactory:
    """Turns :class:`edge.pipeline.Decision` into :class:`EmotionEvent`: one ``session`` id per
    factory (per process start), ``seq`` counting up by one per event, utterance wall-clock times
    from :attr:`clock` (the source marks it), ``unsure``/``arousal``/``valence`` from the decision.
    """

    def __init__(self, device_id: str, manifest: ModelManifest, session: str | None = None,
                 clock: CaptureClock | None = None) -> None:
        """:param session: the session id (default: :func:`new_session_id`).
        :param clock: maps the decisions' stream seconds to wall-clock time (default: stream time 0
            is now)."""
        self.device_id = device_id
        self.manifest = manifest
        self.session = session or new_session_id()
        self.clock = clock or CaptureClock()
        self.seq = 0

    def make(self, decision: Decision) -> EmotionEvent:
        """The next event; raises ``ValueError`` if the decision's values are out of range."""
        labels = self.manifest.labels
        start_wall_s = self.clock.wall_s(decision.start_s)
        end_wall_s = max(start_wall_s, self.clock.wall_s(decision.end_s))  # a re-anchor may step back
        decided_s = decision.end_s if decision.decided_s is None else decision.decided_s
        # now, or the decision's capture time when a fast replay runs ahead of the wall clock
        decided_wall_s = max(time.time(), end_wall_s, self.clock.wall_s(decided_s))
        event = EmotionEvent(
            schema=SCHEMA_VERSION,
            device_id=self.device_id,
            session=self.session,
            seq=self.seq,
            time=to_rfc3339_utc(datetime.fromtimestamp(decided_wall_s, UTC)),
            start_time=to_rfc3339_utc(datetime.fromtimestamp(start_wall_s, UTC)),
            end_time=to_rfc3339_utc(datetime.fromtimestamp(end_wall_s, UTC)),
            start_s=decision.start_s,
            end_s=decision.end_s,
            label=labels[decision.top],
            confidence=decision.confidence,
            unsure=bool(decision.unsure),
            scores={label: float(score) for label, score in zip(labels, decision.scores, strict=True)},
            arousal=None if decision.arousal is None else float(decision.arousal),
            valence=None if decision.valence is None else float(decision.valence),
            model=self.manifest.model_id,
        )
        self.seq += 1
        return event


def _reject_constant(name: str) -> float:
    raise ValueError(f"expected finite numbers, got {name}")
