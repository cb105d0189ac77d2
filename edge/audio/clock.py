"""The capture clock: stream seconds -> the wall-clock time the audio was captured.

Its own module because the events need it (:class:`edge.events.EventFactory`) without the sources.
"""

from __future__ import annotations

import bisect
import time
from collections import deque

CLOCK_ANCHORS = 4096
"""Anchors a :class:`CaptureClock` keeps (one per audio block: 400 s at 100 ms blocks), more than
the longest utterance plus one model window needs."""


class CaptureClock:
    """Maps stream time (seconds of audio since the start of the stream) to wall-clock time.

    The audio source marks anchors: "the sample at ``stream_s`` was captured at ``wall_s``" (Unix
    seconds), one per block read: the ADC time PortAudio reports for a microphone block, the read
    time of an input command's pipe minus the block's duration, or the replay's start plus the
    offset for a file. :meth:`wall_s` uses the latest anchor at or before the asked stream time
    and adds the audio elapsed since it, so gaps (a microphone reopened) and drift are corrected
    block by block. Before any anchor, stream time 0 is the clock's creation time.
    """

    def __init__(self, start_wall_s: float | None = None) -> None:
        """:param start_wall_s: Unix time of stream time 0 (default: now)."""
        self._stream_s: deque[float] = deque(maxlen=CLOCK_ANCHORS)
        self._wall_s: deque[float] = deque(maxlen=CLOCK_ANCHORS)
        self.mark(0.0, time.time() if start_wall_s is None else start_wall_s)

    def mark(self, stream_s: float, wall_s: float) -> None:
        """Record that the audio at ``stream_s`` (seconds) was captured at Unix time ``wall_s``.

        Anchors must come in stream order; an anchor before the latest one is ignored.
        """
        if self._stream_s and stream_s < self._stream_s[-1]:
            return
        self._stream_s.append(float(stream_s))
        self._wall_s.append(float(wall_s))

    def wall_s(self, stream_s: float) -> float:
        """Unix time at which the audio at ``stream_s`` was captured (seconds)."""
        index = max(0, bisect.bisect_right(self._stream_s, stream_s) - 1)
        return self._wall_s[index] + (stream_s - self._stream_s[index])
