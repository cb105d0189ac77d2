"""Event schema 2: session ids, capture-clock times, unsure/arousal/valence, from real replays."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pytest
from paths import SAMPLE, SHIPPED_MODEL

from edge.audio.clock import CaptureClock
from edge.events import EVENT_FIELDS, SCHEMA_VERSION, EmotionEvent, EventFactory, new_session_id, to_rfc3339_utc
from edge.manifest import load_manifest
from edge.postprocess import Decision


def _replay_stdout(*args: str) -> list[EmotionEvent]:
    result = subprocess.run([sys.executable, "-m", "edge.cli", "replay", str(SAMPLE), "--model", str(SHIPPED_MODEL),
                             "--sink", "stdout", *args], capture_output=True, text=True, timeout=120, check=True)
    return [EmotionEvent.from_json(line) for line in result.stdout.splitlines()]


def _wall(text: str) -> float:
    return datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


@pytest.mark.slow
def test_two_runs_have_two_sessions_and_keys_stay_unique() -> None:
    first, second = _replay_stdout(), _replay_stdout()
    assert first and len(first) == len(second)
    assert len({e.session for e in first}) == 1 and len({e.session for e in second}) == 1
    assert first[0].session != second[0].session
    keys = {(e.device_id, e.session, e.seq) for e in first + second}
    assert len(keys) == len(first) + len(second)  # (device_id, seq) alone would collide: seq restarts at 0
    for event in first:
        payload = json.loads(event.to_json())
        assert list(payload) == list(EVENT_FIELDS) and payload["schema"] == SCHEMA_VERSION == 2
        assert all(-1 <= payload[key] <= 1 for key in ("arousal", "valence"))  # the shipped model's second head
        threshold = load_manifest(SHIPPED_MODEL).unsure_below
        if abs(payload["confidence"] - threshold) > 1e-3:  # the payload's confidence is rounded to 4 decimals
            assert payload["unsure"] is (payload["confidence"] < threshold)
        # replay: utterance times are the replay start plus the audio offset
        assert _wall(event.end_time) - _wall(event.start_time) == pytest.approx(event.end_s - event.start_s, abs=0.002)
    origin = [_wall(e.start_time) - e.start_s for e in first]
    assert max(origin) - min(origin) <= 0.002


def test_capture_clock_follows_the_latest_anchor_before_each_time() -> None:
    clock = CaptureClock(start_wall_s=1000.0)
    assert clock.wall_s(2.5) == 1002.5
    clock.mark(10.0, 2000.0)  # a reopened microphone: the stream went on, the wall clock jumped
    assert clock.wall_s(9.0) == 1009.0 and clock.wall_s(12.0) == 2002.0
    clock.mark(5.0, 3000.0)  # out of order: ignored
    assert clock.wall_s(12.0) == 2002.0
    assert to_rfc3339_utc(datetime.fromtimestamp(clock.wall_s(12.25), UTC)) == "1970-01-01T00:33:22.250Z"


def test_factory_reads_unsure_and_dimensions_from_the_decision() -> None:
    manifest = load_manifest(SHIPPED_MODEL)
    n = len(manifest.labels)
    scores = [0.9 / (n - 1)] * n
    scores[2] = 0.1
    factory = EventFactory("pi", manifest, clock=CaptureClock(start_wall_s=1_700_000_000.0))

    decision = Decision(start_frame=0, end_frame=100, start_s=1.0, end_s=2.0, scores=np.array(scores, np.float32),
                        windows=1, final=True, publish=True, unsure=True, arousal=0.5, valence=-0.25)
    event = factory.make(decision)
    assert (event.unsure, event.arousal, event.valence, event.seq) == (True, 0.5, -0.25, 0)
    assert event.event_type == "unsure" and event.label == manifest.labels[int(np.argmax(scores))]
    assert (event.start_time, event.end_time) == ("2023-11-14T22:13:21.000Z", "2023-11-14T22:13:22.000Z")
    assert factory.make(decision).seq == 1
    assert len(new_session_id()) == 12 and new_session_id() != new_session_id()
    for bad, fragment in (({"arousal": 1.5}, "arousal in [-1, 1]"), ({"unsure": 1}, "unsure to be true or false"),
                          ({"session": ""}, "session to be a non-empty string"),
                          ({"start_time": "2023-11-14T22:13:23.000Z"}, "start_time <= end_time")):
        data = {**json.loads(event.to_json()), **bad}
        with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
            EmotionEvent.from_json(json.dumps(data))
    old = {**json.loads(event.to_json()), "schema": 1}
    with pytest.raises(ValueError, match="expected schema 2, got 1"):
        EmotionEvent.from_json(json.dumps(old))
