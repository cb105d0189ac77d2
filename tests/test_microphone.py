"""``ser-edge run`` through the real sounddevice → PortAudio → ALSA stack, on a machine without a sound card.

Approach: a test-local ALSA configuration (``$HOME/.asoundrc`` in a temporary HOME, read by
alsa-lib when PortAudio initialises in the daemon subprocess) defines a capture PCM with the
ALSA ``file`` plugin whose ``infile`` is a named pipe (FIFO). A writer thread in the test plays
a real RAVDESS clip into the pipe at real-time pace, so the daemon reads genuine speech through
its unmodified microphone path (``MicSource``: PortAudio callback → queue → resampler →
pipeline → MQTT) with a real mosquitto broker and a real subscriber. Nothing is mocked.

What was found out about the ``file`` plugin (alsa-lib 1.2.8, PortAudio 19.6):

* Its slave is the ``null`` PCM, which has no clock: capture from a *regular* infile runs at
  CPU speed (about 200 s of audio per wall-clock second here) instead of real time.
* At the end of a regular infile, ``read()`` returns 0 and the plugin keeps delivering the stale
  contents of the ring buffer, still unpaced: it neither blocks nor loops the file. A regular
  file therefore cannot stand in for a microphone; a FIFO can: ``read()`` blocks until the writer
  delivers, which paces the capture at the writer's real-time rate.
* The plugin copies infile bytes verbatim in the format the client negotiated; it never converts.
  The daemon asks PortAudio for float32 and ``null`` accepts any format, so ALSA negotiates
  FLOAT_LE and the pipe carries float32 samples. (Putting a ``plug`` in front to pin S16_LE makes
  ALSA convert through the mmap path, which bypasses the infile after the first buffer: the
  data were garbage.) ``null`` also accepts any rate, so the test config pins
  ``audio.sample_rate_hz = 48000`` (a 48 kHz USB microphone) and the daemon resamples to the
  model's rate itself; at the default (0) the daemon would open at the model's rate and read the
  48 kHz samples as 16 kHz ones.
* A short ``read()`` corrupts the stream: the plugin first advances the ``null`` slave by a whole
  period, then fills only what ``read()`` returned, leaving the rest of the period stale (NaN
  here). So the writer puts exactly one reader period (``audio.block_ms``) into the pipe per write,
  and only when the pipe has room for all of it; every read then finds whole periods.
* alsa-lib opens the infile when the PCM is opened, and PortAudio opens every PCM while it
  enumerates devices, so the writer must already be waiting on the pipe (``open`` of a FIFO for
  reading blocks until there is a writer). The writer restarts its programme for each new reader.

Needs the Debian packages libportaudio2 and libasound2 (and mosquitto for the broker). The model
comes from the ``model_path`` fixture: ``paths.SHIPPED_MODEL`` (the repository's model, or the
environment variable ``SER_EDGE_TEST_MODEL``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from helpers import ser_edge_command
from microphone import (
    BLOCK_MS,
    BROKER_TIMEOUT_S,
    CLIP,
    DURATION_TOLERANCE_S,
    EVENT_TIMEOUT_S,
    EXIT_TIMEOUT_S,
    LEAD_SILENCE_S,
    LOG_TIMEOUT_S,
    MIC_RATE_HZ,
    PCM_NAME,
    PERIOD_FRAMES,
    PREFIX,
    REPO_ROOT,
    Daemon,
    require_portaudio,
)

from edge.events import EmotionEvent
from edge.manifest import load_manifest
from edge.mqtt.topics import STATUS_OFFLINE, STATUS_ONLINE, emotion_topic, stats_topic, status_topic

pytestmark = pytest.mark.slow  # each test runs ser-edge or a broker for several seconds (make check skips them)


def _replayed_durations_s(model: Path, clip: Path) -> list[float]:
    """Utterance lengths ``end_s - start_s`` (s) of ``clip`` through ``ser-edge replay --sink stdout``."""
    done = subprocess.run([*ser_edge_command(), "replay", str(clip), "--sink", "stdout", "--model", str(model),
                           "--device-id", "reference"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    events = [EmotionEvent.from_json(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return [e.end_s - e.start_s for e in events]


def _assert_offline_retained(mqtt_subscriber: Callable, host: str, port: int, device_id: str) -> None:
    """A new subscriber receives the retained ``offline`` on the status topic."""
    topic = status_topic(PREFIX, device_id)
    late = mqtt_subscriber(host, port, topic)
    (status,) = late.wait_for(1, BROKER_TIMEOUT_S, topic=topic)
    assert status.payload.decode() == STATUS_OFFLINE
    assert status.retain, "expected the offline status to be retained"


def test_devices_lists_the_alsa_file_microphone(alsa_mic) -> None:
    env, mic = alsa_mic
    done = subprocess.run([*ser_edge_command(), "devices"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert re.search(rf"^\s*\d+\s+{PCM_NAME}\s+\(\d+ ch, default \d+ Hz\)$", done.stdout, re.MULTILINE), done.stdout
    assert mic.readers >= 1, "PortAudio's enumeration should have opened the PCM (and so the FIFO)"


def test_run_publishes_events_heard_through_alsa(alsa_mic, model_path: Path, mosquitto, mqtt_subscriber,
                                                 tmp_path: Path) -> None:
    env, mic = alsa_mic
    device_id = "alsa-mic-test"
    labels = load_manifest(model_path).labels
    expected_s = _replayed_durations_s(model_path, CLIP)
    assert len(expected_s) == 1, f"expected the clip to replay as one utterance, got {expected_s}"
    config = tmp_path / "ser-edge.toml"
    config.write_text(f"[audio]\nsample_rate_hz = {MIC_RATE_HZ}\nblock_ms = {BLOCK_MS}\n")
    subscriber = mqtt_subscriber(mosquitto.host, mosquitto.port, f"{PREFIX}/{device_id}/#")
    events_topic = emotion_topic(PREFIX, device_id)

    started_at = time.time()
    daemon = Daemon(["--config", str(config), "--device", PCM_NAME, "--model", str(model_path),
                     "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port), "--device-id", device_id],
                    env, cwd=tmp_path)
    try:
        daemon.wait_for_lines(rf"microphone '{PCM_NAME}' open at {MIC_RATE_HZ} Hz", 1, LOG_TIMEOUT_S)
        received = subscriber.wait_for(1, EVENT_TIMEOUT_S, topic=events_topic)
        received_at = time.time()
        status = daemon.terminate()
    finally:
        daemon.kill()
    assert status == 0, daemon.log()

    events = [EmotionEvent.from_json(m.payload) for m in subscriber.messages(events_topic)]
    assert len(events) >= len(received) >= 1
    first = events[0]
    assert (first.device_id, first.seq) == (device_id, 0)
    assert first.label in labels and set(first.scores) == set(labels)
    # The same speech at the right rate: as long as when the file is replayed.
    assert abs((first.end_s - first.start_s) - expected_s[0]) <= DURATION_TOLERANCE_S, (first, expected_s)
    assert first.start_s >= LEAD_SILENCE_S - DURATION_TOLERANCE_S, first
    # capture-clock times: the utterance was heard between the start and the event's arrival
    start_wall, end_wall = (datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
                            for t in (first.start_time, first.end_time))
    assert started_at <= start_wall < end_wall <= received_at, (started_at, first, received_at)
    assert [e.seq for e in events] == list(range(len(events)))
    statuses = [m.payload.decode() for m in subscriber.messages(status_topic(PREFIX, device_id))]
    assert statuses[0] == STATUS_ONLINE and statuses[-1] == STATUS_OFFLINE, statuses
    assert not any("Traceback" in line for line in daemon.lines), daemon.log()
    _assert_offline_retained(mqtt_subscriber, mosquitto.host, mosquitto.port, device_id)


def test_run_survives_a_microphone_that_cannot_be_opened(model_path: Path, mosquitto, mqtt_subscriber,
                                                         tmp_path: Path) -> None:
    require_portaudio()
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}  # no .asoundrc: only the system's PCMs, none of them this one
    device_id = "missing-mic-test"
    config = tmp_path / "ser-edge.toml"
    config.write_text("[audio]\nreopen_min_s = 0.2\nreopen_max_s = 0.4\n")
    subscriber = mqtt_subscriber(mosquitto.host, mosquitto.port,
                                 [status_topic(PREFIX, device_id), stats_topic(PREFIX, device_id)])

    daemon = Daemon(["--config", str(config), "--device", "nonexistent-device-xyz", "--model", str(model_path),
                     "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port), "--device-id", device_id],
                    env, cwd=tmp_path)
    try:
        failures = daemon.wait_for_lines(r"microphone unavailable \(", 3, LOG_TIMEOUT_S)
        subscriber.wait_for(1, BROKER_TIMEOUT_S, topic=status_topic(PREFIX, device_id))
        assert daemon.proc.poll() is None, "the daemon should keep running and retrying"
        status = daemon.terminate()
    finally:
        daemon.kill()
    assert status == 0, daemon.log()
    for line in failures:  # one line each, naming the device; no traceback
        assert "nonexistent-device-xyz" in line, line
    assert not any("Traceback" in line for line in daemon.lines), daemon.log()
    statuses = [m.payload.decode() for m in subscriber.messages(status_topic(PREFIX, device_id))]
    assert statuses[0] == STATUS_ONLINE and statuses[-1] == STATUS_OFFLINE, statuses
    _assert_offline_retained(mqtt_subscriber, mosquitto.host, mosquitto.port, device_id)
    # the operator sees why in the retained stats message, not only in the journal
    stats = [json.loads(m.payload) for m in subscriber.messages(stats_topic(PREFIX, device_id))]
    reported = [s for s in stats if s["source"] != "starting"]  # (a stats message follows the connect at once)
    assert reported and reported[0]["source"].startswith("unavailable: No input device matching"), stats


def test_fifo_microphone_delivers_the_clip_exactly_through_portaudio(alsa_mic, clip_48k: np.ndarray) -> None:
    """The fake device is faithful: PortAudio at 48 kHz float32 mono returns the clip bit for bit (its pacing is
    the ALSA period; how fast it delivers is a benchmark's question, not a test's)."""
    env, _ = alsa_mic
    script = (
        "import sys, time, numpy as np, sounddevice as sd\n"
        f"sd.check_input_settings(device={PCM_NAME!r}, channels=1, samplerate={MIC_RATE_HZ}, dtype='float32')\n"
        "blocks = []\n"
        f"stream = sd.InputStream(device={PCM_NAME!r}, channels=1, samplerate={MIC_RATE_HZ}, dtype='float32',\n"
        f"                        blocksize={PERIOD_FRAMES}, callback=lambda d, f, t, s: blocks.append(d[:, 0].copy()))\n"
        "stream.start(); time.sleep(float(sys.argv[2])); stream.close()\n"
        "np.concatenate(blocks).astype('<f4').tofile(sys.argv[1])\n"
    )
    out = Path(env["HOME"]).parent / "captured.f32le"
    listen_s = LEAD_SILENCE_S + clip_48k.size / MIC_RATE_HZ + 0.5
    done = subprocess.run([sys.executable, "-c", script, str(out), str(listen_s)], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    captured = np.fromfile(out, dtype="<f4")
    lead = round(LEAD_SILENCE_S * MIC_RATE_HZ)
    assert captured.size >= lead + clip_48k.size, captured.size
    # The writer may have lost up to a pipe's worth of the lead to an earlier reader; find the clip's onset.
    start = int(np.flatnonzero(captured)[0]) - int(np.flatnonzero(clip_48k)[0])
    np.testing.assert_array_equal(captured[start:start + clip_48k.size], clip_48k)


def test_run_reopens_a_microphone_that_stalls(alsa_mic, model_path: Path, mosquitto, mqtt_subscriber,
                                              tmp_path: Path) -> None:
    """The stall/reopen path: the FIFO microphone stops delivering (a hung USB device); the daemon
    notices within its stall timeout, reports it in the stats, reopens the device after the backoff,
    and goes on publishing events from the same microphone."""
    env, mic = alsa_mic
    device_id = "stalling-mic-test"
    config = tmp_path / "ser-edge.toml"
    config.write_text(f"[audio]\nsample_rate_hz = {MIC_RATE_HZ}\nblock_ms = {BLOCK_MS}\nreopen_min_s = 0.5\n"
                      "reopen_max_s = 0.5\n[mqtt]\nstats_interval_s = 3600.0\n")
    subscriber = mqtt_subscriber(mosquitto.host, mosquitto.port, f"{PREFIX}/{device_id}/#")
    events_topic = emotion_topic(PREFIX, device_id)
    daemon = Daemon(["--config", str(config), "--device", PCM_NAME, "--model", str(model_path),
                     "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port), "--device-id", device_id],
                    env, cwd=tmp_path)
    try:
        opened = rf"microphone '{PCM_NAME}' open at {MIC_RATE_HZ} Hz"
        daemon.wait_for_lines(opened, 1, LOG_TIMEOUT_S)
        subscriber.wait_for(1, EVENT_TIMEOUT_S, topic=events_topic)
        mic.pause()
        daemon.wait_for_lines(r"microphone stalled: no audio for 2\.0 s, reopening", 1, LOG_TIMEOUT_S)
        mic.resume()
        daemon.wait_for_lines(opened, 2, LOG_TIMEOUT_S)
        before = len(subscriber.messages(events_topic))
        subscriber.wait_for(before + 1, EVENT_TIMEOUT_S, topic=events_topic)  # events again after the reopen
        status = daemon.terminate()
    finally:
        mic.resume()
        daemon.kill()
    assert status == 0, daemon.log()
    assert not any("Traceback" in line for line in daemon.lines), daemon.log()
    sources = [json.loads(m.payload)["source"] for m in subscriber.messages(stats_topic(PREFIX, device_id))]
    assert "lost, reopening" in sources and sources[-1] == "ok", sources
    seqs = [EmotionEvent.from_json(m.payload).seq for m in subscriber.messages(events_topic)]
    assert seqs == list(range(len(seqs))), seqs


def test_run_killed_with_the_broker_down_delivers_its_events_at_the_next_start(
        alsa_mic, model_path: Path, mosquitto_factory, mqtt_subscriber, tmp_path: Path) -> None:
    """Issue 10: SIGKILL of ``ser-edge run`` with the broker down lost 7 of 8 queued events. Now the
    events heard through the microphone wait in the outbox ($STATE_DIRECTORY) and the next start
    (here a replay sharing the state directory) delivers them."""
    env, _ = alsa_mic
    device_id = "killed-mic-test"
    broker = mosquitto_factory(persistence=True)
    topic = emotion_topic(PREFIX, device_id)
    mqtt_subscriber(broker.host, broker.port, topic, client_id="sub-killed-mic", clean_session=False).close()
    broker.stop()
    env = {**env, "STATE_DIRECTORY": str(tmp_path / "state")}
    config = tmp_path / "ser-edge.toml"
    config.write_text(f"[audio]\nsample_rate_hz = {MIC_RATE_HZ}\nblock_ms = {BLOCK_MS}\n")
    address = ["--model", str(model_path), "--mqtt-host", broker.host, "--mqtt-port", str(broker.port)]
    daemon = Daemon(["--config", str(config), "--device", PCM_NAME, "--device-id", device_id, *address],
                    env, cwd=tmp_path)
    try:
        daemon.wait_for_lines(r"edge\.service\.daemon: event #1 ", 1, 2 * EVENT_TIMEOUT_S)
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(EXIT_TIMEOUT_S)
    finally:
        daemon.kill()
    produced = len([line for line in daemon.lines if re.search(r"edge\.service\.daemon: event #\d+ ", line)])
    broker.start()
    done = subprocess.run([*ser_edge_command(), "replay", str(CLIP), "--device-id", "next-start", *address], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    subscriber = mqtt_subscriber(broker.host, broker.port, topic, client_id="sub-killed-mic", clean_session=False)
    received = subscriber.wait_for(produced, BROKER_TIMEOUT_S, topic=topic)
    seqs = list(dict.fromkeys(EmotionEvent.from_json(m.payload).seq for m in received))
    assert seqs[:produced] == list(range(produced)), seqs
    print(f"\nrun SIGKILLed with the broker down: {produced} events made, {len(seqs)} delivered at the next start")


def test_run_keeps_the_adapted_normalisation_across_a_restart(alsa_mic, model_path: Path, mosquitto,
                                                               tmp_path: Path) -> None:
    """Issue 8: the adaptation warms up over minutes of speech, so the live daemon keeps its statistics
    in $STATE_DIRECTORY (written every 20 utterances and at shutdown) and the next start restores them."""
    env, _ = alsa_mic
    env = {**env, "STATE_DIRECTORY": str(tmp_path / "state")}
    config = tmp_path / "ser-edge.toml"
    config.write_text(f"[audio]\nsample_rate_hz = {MIC_RATE_HZ}\nblock_ms = {BLOCK_MS}\n")
    args = ["--config", str(config), "--device", PCM_NAME, "--device-id", "adapt-test", "--model", str(model_path),
            "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port)]
    state = tmp_path / "state" / "adaptation.json"
    for start in range(2):
        daemon = Daemon(args, env, cwd=tmp_path)
        try:
            if start == 1:
                daemon.wait_for_lines(r"adaptation state restored from .*adaptation\.json", 1, EVENT_TIMEOUT_S)
            daemon.wait_for_lines(r"edge\.service\.daemon: event #0 ", 1, 2 * EVENT_TIMEOUT_S)
            daemon.proc.send_signal(signal.SIGTERM)
            assert daemon.proc.wait(EXIT_TIMEOUT_S) == 0
        finally:
            daemon.kill()
        saved = json.loads(state.read_text())
        assert saved["model"].startswith(model_path.stem + "@") and saved["speech_frames"] > 0
    assert saved["speech_frames"] > 0
