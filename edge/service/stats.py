"""Runtime statistics of the daemon: the retained payload of ``{prefix}/{device_id}/stats``.

The daemon publishes :meth:`Stats.payload` every ``mqtt.stats_interval_s`` seconds of wall-clock
time (0 = never) and once more at a clean shutdown. Compact JSON with exactly
:data:`STATS_FIELDS`::

    {"schema":1,"uptime_s":3600.2,"audio_s":3598.4,"events":412,"utterances":415,
     "short_utterances":37,"overflows":0,"source":"ok","dropped_events":0,"refused_events":0,"pending":0,
     "outbox":"durable","processing_ms_per_s_mean":21.4,"processing_ms_per_s_p95":48.9,
     "interpreter":"ai-edge-litert 1.2.0","model":"emotion4-conv1d@de4950545d8c","version":"0.1.0"}

No audio, features or scores ever go into it: counters, timings and identifiers only.
"""

from __future__ import annotations

import collections
import json
import time
from typing import Any

import numpy as np

STATS_SCHEMA_VERSION = 1
"""Version of the stats payload; bumped on any incompatible change of :data:`STATS_FIELDS`."""

STATS_FIELDS = (
    "schema",
    "uptime_s",
    "audio_s",
    "events",
    "utterances",
    "short_utterances",
    "overflows",
    "source",
    "dropped_events",
    "refused_events",
    "pending",
    "outbox",
    "processing_ms_per_s_mean",
    "processing_ms_per_s_p95",
    "interpreter",
    "model",
    "version",
)
"""Payload fields of the stats message, in the order they are serialised:

* ``uptime_s``: wall-clock seconds since the daemon started (or :meth:`Stats.reset`).
* ``audio_s``: seconds of audio processed.
* ``events``: events made (published or queued); ``utterances``: utterances scored (including
  those below the confidence threshold); ``short_utterances``: speech too short to score.
* ``overflows``: audio blocks lost on input (sound-card overflows plus blocks dropped because
  processing fell behind); always 0 for file replay.
* ``source``: the audio source's state: ``"ok"``, ``"file"`` (replay), ``"starting"``,
  ``"lost, reopening"`` (the stream died or stalled; waiting for the backoff), or
  ``"unavailable: <reason>"`` while a microphone that failed or disappeared is being retried
  (the daemon publishes the stats at once when this changes).
* ``dropped_events``: events the publisher dropped (outbox overflow, or undelivered at close with an
  in-memory outbox); ``refused_events``: events the broker answered with an MQTT 5 PUBACK reason
  code >= 0x80 (e.g. not authorised: an ACL denies the topic), so they were not delivered, and
  those it would refuse: larger than its MQTT 5 Maximum Packet Size, or dropping the connection
  each of 3 times they were sent (:data:`edge.mqtt.publisher.MAX_SEND_ATTEMPTS`);
  ``pending``: events in the outbox, not yet acknowledged by the broker.
* ``outbox``: where those events are kept (:attr:`edge.outbox.Outbox.state`): ``"durable"`` (the
  state directory), ``"memory"`` (no state directory), ``"degraded: <reason>"`` (a storage error such
  as a full disk: in memory until the disk works again), ``"none"`` (no MQTT publisher).
* ``processing_ms_per_s_mean``/``_p95``: milliseconds of CPU per second of audio over the last
  :data:`PROCESSING_WINDOW_BLOCKS` blocks: the mean is the window's CPU time over its audio time,
  the p95 the 95th percentile of the blocks' ratios (numpy's linear interpolation); ``null``
  before the first block. 1000 would be exactly real time on one core.
* ``interpreter``: :data:`edge.model.INTERPRETER`; ``model``: the event's ``model`` field;
  ``version``: ser-edge's version.
"""

PROCESSING_WINDOW_BLOCKS = 600
"""Blocks in the rolling processing-time window: 60 s of audio at the microphone's 100 ms blocks."""

STATS_DECIMALS = 3
"""Times and ratios in the payload are rounded to this many decimals."""


class Stats:
    """Wall-clock uptime, audio processed, input overflows and a rolling window of processing times.

    Event, utterance and publisher counters live in their own stages; :meth:`payload` takes them.
    """

    def __init__(self, window_blocks: int = PROCESSING_WINDOW_BLOCKS) -> None:
        if isinstance(window_blocks, bool) or not isinstance(window_blocks, int) or window_blocks < 1:
            raise ValueError(f"expected window_blocks >= 1, got {window_blocks!r}")
        self._blocks: collections.deque[tuple[float, float]] = collections.deque(maxlen=window_blocks)
        self.reset()

    def reset(self) -> None:
        self.started = time.monotonic()
        self.audio_s = 0.0
        """Seconds of audio processed."""
        self.cpu_s = 0.0
        """CPU seconds spent processing it."""
        self.overflows = 0
        """Audio blocks lost on input; set by the microphone driver."""
        self.source_state = "starting"
        """The audio source's state, see :data:`STATS_FIELDS` ``source``."""
        self._blocks.clear()

    def record_block(self, audio_s: float, cpu_s: float) -> None:
        """Account one processed block: ``audio_s`` seconds of audio took ``cpu_s`` CPU seconds.

        :raises ValueError: if ``audio_s`` or ``cpu_s`` is negative.
        """
        if audio_s < 0 or cpu_s < 0:
            raise ValueError(f"expected audio_s >= 0 and cpu_s >= 0, got {audio_s!r}, {cpu_s!r}")
        self.audio_s += audio_s
        self.cpu_s += cpu_s
        if audio_s > 0:
            self._blocks.append((audio_s, cpu_s))

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    def processing_ms_per_s(self) -> tuple[float | None, float | None]:
        """``(mean, p95)`` milliseconds of CPU per second of audio over the window; ``None`` if empty."""
        if not self._blocks:
            return None, None
        blocks = np.array(self._blocks, dtype=np.float64)  # (n, 2): audio_s, cpu_s
        mean = 1000.0 * blocks[:, 1].sum() / blocks[:, 0].sum()
        p95 = float(np.percentile(1000.0 * blocks[:, 1] / blocks[:, 0], 95))
        return float(mean), p95

    def payload(self, *, events: int, utterances: int, short_utterances: int, dropped_events: int,
                refused_events: int, pending: int, interpreter: str, model: str, version: str,
                outbox: str = "none") -> dict[str, Any]:
        """The stats message as a dict with exactly :data:`STATS_FIELDS`, in that order."""
        mean, p95 = self.processing_ms_per_s()
        return {
            "schema": STATS_SCHEMA_VERSION,
            "uptime_s": round(self.uptime_s, STATS_DECIMALS),
            "audio_s": round(self.audio_s, STATS_DECIMALS),
            "events": events,
            "utterances": utterances,
            "short_utterances": short_utterances,
            "overflows": self.overflows,
            "source": self.source_state,
            "dropped_events": dropped_events,
            "refused_events": refused_events,
            "pending": pending,
            "outbox": outbox,
            "processing_ms_per_s_mean": None if mean is None else round(mean, STATS_DECIMALS),
            "processing_ms_per_s_p95": None if p95 is None else round(p95, STATS_DECIMALS),
            "interpreter": interpreter,
            "model": model,
            "version": version,
        }


def to_json(payload: dict[str, Any]) -> str:
    """Compact JSON of a :meth:`Stats.payload` (no spaces, NaN rejected)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
