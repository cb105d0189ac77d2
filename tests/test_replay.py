"""End to end: the installed ``ser-edge replay`` on real 48 kHz RAVDESS originals, a real mosquitto,
a real subscriber (paho) receiving schema-valid events; and ``mosquitto_sub`` as a second subscriber."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
from helpers import skip_or_fail
from paths import RAVDESS_48K, SHIPPED_MODEL

from edge.events import EVENT_FIELDS, EmotionEvent
from edge.manifest import load_manifest

pytestmark = pytest.mark.slow  # each test runs ser-edge or a broker for several seconds (make check skips them)

SER_EDGE = [sys.executable, "-m", "edge.cli"]
CLIPS = sorted(RAVDESS_48K.glob("*.wav"))


def _replay(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    installed = shutil.which("ser-edge", path=str(Path(sys.executable).parent))
    command = [installed] if installed else SER_EDGE
    return subprocess.run([*command, "replay", *args, "--model", str(SHIPPED_MODEL)], capture_output=True,
                          text=True, timeout=timeout_s, check=False)


def test_replay_publishes_schema_valid_events_to_mosquitto(mosquitto, mqtt_subscriber):
    manifest = load_manifest(SHIPPED_MODEL)
    if shutil.which("mosquitto_sub") is None:
        skip_or_fail("mosquitto_sub not found (apt-get install mosquitto-clients): the second subscriber")
    subscriber = mqtt_subscriber(mosquitto.host, mosquitto.port, ["ser/+/emotion", "ser/+/status"])
    sub_process = subprocess.Popen(["mosquitto_sub", "-h", mosquitto.host, "-p", str(mosquitto.port), "-q", "1",
                                    "-t", "ser/replay-test/emotion", "-C", "8", "-W", "60"],
                                   stdout=subprocess.PIPE, text=True)
    result = _replay(*map(str, CLIPS), "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port),
                     "--device-id", "replay-test")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    statuses = subscriber.wait_for(2, 10, topic="ser/replay-test/status")
    assert [m.payload for m in statuses][-2:] == [b"online", b"offline"]
    n_events = result.stderr.count("edge.service.daemon: event #")
    assert n_events >= len(CLIPS)
    received = subscriber.wait_for(n_events, 10, topic="ser/replay-test/emotion")
    events = [EmotionEvent.from_json(m.payload) for m in received]
    assert [e.seq for e in events] == list(range(n_events))
    assert all(m.qos == 1 for m in received)
    for event in events:
        assert list(json.loads(event.to_json())) == list(EVENT_FIELDS)
        assert event.device_id == "replay-test"
        assert set(event.scores) == set(manifest.labels)
        assert event.model == manifest.model_id
        assert 0 <= event.start_s < event.end_s
    assert [e.start_s for e in events] == sorted(e.start_s for e in events)
    out, _ = sub_process.communicate(timeout=60)
    lines = out.strip().splitlines()
    assert len(lines) == 8
    assert [EmotionEvent.from_json(line).seq for line in lines] == list(range(8))


def test_retained_online_and_offline_for_late_subscribers(mosquitto, mqtt_subscriber):
    result = _replay(str(CLIPS[0]), "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port),
                     "--device-id", "late")
    assert result.returncode == 0, result.stderr
    late = mqtt_subscriber(mosquitto.host, mosquitto.port, "ser/late/status")
    message = late.wait_for(1, 10)[0]
    assert message.retain and message.payload == b"offline"


def test_stdout_sink_needs_no_broker_and_is_deterministic():
    first = _replay(*map(str, CLIPS[:3]), "--sink", "stdout", "--device-id", "x")
    second = _replay(*map(str, CLIPS[:3]), "--sink", "stdout", "--device-id", "x")
    assert first.returncode == second.returncode == 0, first.stderr

    def strip_time(text):  # wall-clock fields, and the session id drawn at every start
        return [{k: v for k, v in json.loads(line).items() if k not in ("time", "start_time", "end_time", "session")}
                for line in text.splitlines()]

    events = strip_time(first.stdout)
    assert len(events) >= 3
    assert events == strip_time(second.stdout)


def test_unusable_files_are_skipped_with_a_reason(tmp_path):
    bad = tmp_path / "not-audio.wav"
    bad.write_text("this is not audio\n")
    result = _replay(str(bad), str(CLIPS[0]), "--sink", "stdout")
    assert result.returncode == 1
    assert "skipped" in result.stderr and "not-audio.wav: expected a WAV, AIFF or FLAC file" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stdout.splitlines()) >= 1  # the good file was still processed


def test_broker_unreachable_at_the_end_is_a_failure_not_a_hang(tmp_path):
    from mqtt_helpers import free_port

    config = tmp_path / "c.toml"
    config.write_text("[mqtt]\nreconnect_min_s = 0.2\nreconnect_max_s = 0.5\n")
    result = _replay(str(CLIPS[0]), "--config", str(config), "--mqtt-port", str(free_port()), timeout_s=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("argv, status, message", [
    (["replay", "x.wav", "--sink", "nowhere"], 2, "invalid choice"),
    (["replay", "x.wav", "--mqtt-port", "abc"], 2, "invalid int value"),
])
def test_usage_errors(argv, status, message):
    result = subprocess.run([*SER_EDGE, *argv], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == status
    assert message in result.stderr


def test_replay_output_reads_right():
    """What a user reads after a replay (issue 19): no unformatted runtime INFO line on stderr; counts
    with their plural; ``start_time <= end_time <= time`` in every event (``time`` is when the emotion
    was decided); a real-time factor only over enough audio to mean something (SPEED_MIN_AUDIO_S)."""
    from edge.service.daemon import SPEED_MIN_AUDIO_S

    one = _replay(str(CLIPS[0]), "--sink", "stdout")
    assert one.returncode == 0, one.stderr
    assert "INFO: Created TensorFlow Lite" not in one.stderr
    events = [EmotionEvent.from_json(line) for line in one.stdout.splitlines()]
    assert len(events) == 1, one.stdout  # a RAVDESS clip is one sentence
    summary = next(line for line in one.stderr.splitlines() if "processed " in line)
    assert summary.endswith(": 1 utterance, 1 event"), summary  # and no "x real time" for a few seconds

    audio_s = sum(soundfile.info(str(p)).duration for p in CLIPS)
    repeats = int(SPEED_MIN_AUDIO_S // audio_s) + 1
    many = _replay(*map(str, CLIPS * repeats), "--sink", "stdout")
    assert many.returncode == 0, many.stderr
    events = [EmotionEvent.from_json(line) for line in many.stdout.splitlines()]
    assert len(events) > 1
    for event in events:
        assert event.start_time <= event.end_time <= event.time, event  # RFC 3339 UTC ms: text order is time order
    summary = next(line for line in many.stderr.splitlines() if "processed " in line)
    assert re.search(rf": \d+ utterances, {len(events)} events, \d+x real time \(audio s per CPU s\)$", summary), summary


# ------------------------------------------------------------------ issue 18 item 10: a closed or full stdout


def _long_wav(tmp_path: Path) -> Path:
    """The speech sample four times over (about 56 s, 16 events): the reader of its events has gone
    long before the last is written."""
    import numpy as np
    import soundfile
    from paths import SAMPLE

    speech, rate = soundfile.read(str(SAMPLE), dtype="int16")
    path = tmp_path / "long.wav"
    soundfile.write(str(path), np.tile(speech, 4), rate, subtype="PCM_16")
    return path


def _ser_edge() -> list[str]:
    installed = shutil.which("ser-edge", path=str(Path(sys.executable).parent))
    return [installed] if installed else SER_EDGE


def test_stdout_closed_by_head_ends_quietly_with_status_0(tmp_path):
    """``ser-edge replay long.wav --sink stdout | head -1`` with real pipes: head prints one event and
    exits; ser-edge's next write gets EPIPE: it says so in one INFO line and exits 0 (it was a
    BrokenPipeError traceback and status 1)."""
    long_wav = _long_wav(tmp_path)
    replay = subprocess.Popen([*_ser_edge(), "replay", str(long_wav), "--sink", "stdout", "--model", str(SHIPPED_MODEL)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    head = subprocess.Popen(["head", "-1"], stdin=replay.stdout, stdout=subprocess.PIPE, text=True)
    replay.stdout.close()  # head holds the only read end
    first, _ = head.communicate(timeout=120)
    stderr = replay.stderr.read()
    assert replay.wait(120) == 0, stderr
    assert EmotionEvent.from_json(first.strip()).seq == 0
    assert "standard output closed by its reader after" in stderr  # the EPIPE did happen
    assert "Traceback" not in stderr and "Exception ignored" not in stderr and "Error" not in stderr


def test_stdout_on_a_full_device_is_one_line_and_status_1(tmp_path):
    """Standard output on /dev/full (ENOSPC): one line naming the cause, status 1, no traceback."""
    with open("/dev/full", "w") as full:
        result = subprocess.run([*_ser_edge(), "replay", str(_long_wav(tmp_path)), "--sink", "stdout", "--model",
                                 str(SHIPPED_MODEL)], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
                                check=False)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if "standard output" in line]
    assert len(errors) == 1 and "No space left on device" in errors[0], result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
