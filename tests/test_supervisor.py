"""The one supervision of a live source (edge.audio.live.Supervisor), with a scripted source: what it
retries (MicUnavailable, non-finite samples), how it backs off, and what it lets through (any other
exception). The real sources under it are tested in test_microphone.py and test_sources.py."""

from __future__ import annotations

import numpy as np
import pytest

from edge.audio.io import MicUnavailable
from edge.audio.live import HEALTHY_AFTER_S, Supervisor


class ScriptedSource:
    """A LiveSource whose ``open()`` outcomes and blocks are given in advance."""

    kind = "scripted"

    def __init__(self, opens: list[Exception | None], blocks: list[np.ndarray]) -> None:
        self.opens = list(opens)
        self.pending = list(blocks)
        self.rate_hz = 16000
        self.stream: object | None = None
        self.blocks = 0
        self.captured_at = 0.0
        self.overflows = 0
        self.dropped_blocks = 0
        self.on_read = lambda: None

    @property
    def alive(self) -> bool:
        return self.stream is not None

    def open(self) -> None:
        outcome = self.opens.pop(0)
        if outcome is not None:
            raise outcome
        self.stream = object()
        self.blocks = 0

    def read(self, timeout_s: float) -> np.ndarray | None:
        if not self.pending:
            return None
        self.on_read()
        self.blocks += 1
        return self.pending.pop(0)

    def close(self) -> None:
        self.stream = None


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def opening(self) -> None:
        self.calls.append(("opening",))

    def opened(self, source) -> None:
        self.calls.append(("opened", source.rate_hz))

    def failed(self, what: str, error: Exception | None, retry_in_s: float) -> None:
        self.calls.append(("failed", what, retry_in_s))

    def idle(self) -> None:
        self.calls.append(("idle",))


class FakeTime:
    """The supervisor's clock and wait: a wait advances the clock (nothing sleeps) and is recorded."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def _supervisor(source: ScriptedSource) -> tuple[Supervisor, Recorder, FakeTime]:
    recorder, fake = Recorder(), FakeTime()
    return Supervisor(source, recorder, 1.0, 4.0, wait=fake.wait, clock=lambda: fake.now), recorder, fake


def test_an_unavailable_source_is_retried_with_doubling_backoff_capped_at_the_maximum():
    source = ScriptedSource([MicUnavailable("busy")] * 4 + [None], [np.zeros(4, np.float32)])
    supervisor, recorder, fake = _supervisor(source)
    blocks = [b for b in (supervisor.read(0.0) for _ in range(20)) if b is not None]
    failures = [c[1:] for c in recorder.calls if c[0] == "failed"]
    assert failures == [("unavailable", 1.0), ("unavailable", 2.0), ("unavailable", 4.0), ("unavailable", 4.0)]
    assert fake.waits == [1.0, 2.0, 4.0, 4.0]  # each wait is the backoff just announced
    assert ("opened", 16000) in recorder.calls and len(blocks) == 1


def test_the_backoff_grows_while_runs_are_short_and_starts_anew_after_a_healthy_run():
    """Issue 18 item 7: a source that delivers a few blocks and dies again is reopened with a growing
    delay (it used to reset after two blocks: a restart every second forever); only a run of
    HEALTHY_AFTER_S since the open resets the backoff to the minimum."""
    block_s = 0.1
    ok, bad = np.zeros(1600, np.float32), np.array([np.inf], np.float32)
    healthy_blocks = int(HEALTHY_AFTER_S / block_s) + 1
    script = [ok] * 3 + [bad] + [ok] * 3 + [bad] + [ok] * 3 + [bad] + [ok] * healthy_blocks + [bad] + [bad]
    source = ScriptedSource([None] * 6, script)
    supervisor, recorder, fake = _supervisor(source)
    source.on_read = lambda: setattr(fake, "now", fake.now + block_s)  # each block is 0.1 s of audio
    for _ in range(len(script) + 20):
        supervisor.read(0.0)
    failures = [c[1:] for c in recorder.calls if c[0] == "failed"]
    assert failures == [("bad samples", 1.0), ("bad samples", 2.0), ("bad samples", 4.0),
                        ("bad samples", 1.0), ("bad samples", 2.0)]


def test_non_finite_samples_close_the_source_and_count_as_a_failure():
    source = ScriptedSource([None, None], [np.array([0.0, np.nan], np.float32)])
    supervisor, recorder, _ = _supervisor(source)
    assert supervisor.read(0.0) is None and source.stream is None
    assert [c for c in recorder.calls if c[0] == "failed"] == [("failed", "bad samples", 1.0)]


def test_any_other_exception_from_open_propagates():
    supervisor, _, _ = _supervisor(ScriptedSource([RuntimeError("a bug")], []))
    with pytest.raises(RuntimeError, match="a bug"):
        supervisor.read(0.0)
