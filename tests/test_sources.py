"""Audio from standard input, FIFOs, raw PCM and an input command: the same events as the file,
real clips (../shared/data), the installed ``ser-edge`` as a subprocess, a real mosquitto."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile
from helpers import ser_edge_command, skip_or_fail
from paths import RAVDESS_48K, SHIPPED_MODEL, ravdess_mini_clips
from processes import LoggedProcess

from edge.audio.formats import RawFormat
from edge.events import EmotionEvent
from edge.mqtt.topics import emotion_topic, stats_topic

CLIP_48K = sorted(RAVDESS_48K.glob("*.wav"))[0] if RAVDESS_48K.is_dir() else None
WAIT_S = 30.0
VOLATILE = ("session", "time", "start_time", "end_time")
"""Fields that differ between two runs over the same audio."""


def _replay(*args: str, stdin: bytes | None = None, stdin_file: Path | None = None) -> subprocess.CompletedProcess:
    handle = open(stdin_file, "rb") if stdin_file else None  # noqa: SIM115
    try:
        return subprocess.run([*ser_edge_command(), "replay", *args, "--sink", "stdout", "--model", str(SHIPPED_MODEL)],
                              input=stdin, stdin=handle, capture_output=True, timeout=120, check=False)
    finally:
        if handle:
            handle.close()


def _stable(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr.decode()
    events = [json.loads(EmotionEvent.from_json(line).to_json()) for line in result.stdout.decode().splitlines()]
    assert events, result.stderr.decode()
    return [{k: v for k, v in e.items() if k not in VOLATILE} for e in events]


@pytest.fixture(scope="module")
def clip() -> Path:
    if CLIP_48K is None:
        skip_or_fail(f"no clips in {RAVDESS_48K}")
    return CLIP_48K


def _unknown_length_wav(path: Path) -> bytes:
    """The audio of ``path`` as ``arecord -t wav`` writes it to a pipe: a plain 16-bit PCM WAV (no
    trailing chunks) whose RIFF and data sizes say "unknown" (0x7fffffff-ish)."""
    import io

    samples, rate = soundfile.read(str(path), dtype="int16")
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, subtype="PCM_16", format="WAV")
    data = buffer.getvalue()
    index = data.index(b"data")
    header = bytearray(data[: index + 8])
    header[4:8] = struct.pack("<I", 0x7FFFFFFF)
    header[index + 4 : index + 8] = struct.pack("<I", 0x7FFFFFFF - index)
    return bytes(header) + data[index + 8 :]


@pytest.mark.slow
def test_stdin_wav_flac_fifo_and_dev_stdin_give_the_file_events(clip: Path, tmp_path: Path) -> None:
    expected = _stable(_replay(str(clip)))
    assert _stable(_replay("-", stdin=clip.read_bytes())) == expected  # cat clip.wav | ser-edge replay -
    assert _stable(_replay("-", stdin=_unknown_length_wav(clip))) == expected  # arecord -t wav | ...
    assert _stable(_replay("-", stdin_file=clip)) == expected  # ser-edge replay - < clip.wav
    assert _stable(_replay("/dev/stdin", stdin=clip.read_bytes())) == expected
    fifo = tmp_path / "audio.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(clip.read_bytes()), daemon=True)
    writer.start()
    assert _stable(_replay(str(fifo))) == expected
    writer.join(5)
    flac = ravdess_mini_clips()[0]
    assert _stable(_replay("-", stdin=flac.read_bytes())) == _stable(_replay(str(flac)))  # FLAC, spooled


@pytest.mark.slow
def test_raw_pcm_with_format_flags_and_a_clear_error_without(clip: Path, tmp_path: Path) -> None:
    samples, rate = soundfile.read(str(clip), dtype="int16")
    raw = tmp_path / "clip.raw"
    raw.write_bytes(samples.astype("<i2").tobytes())
    expected = _stable(_replay(str(clip)))
    flags = ["--raw-format", "s16le", "--rate", str(rate), "--channels", "1"]
    assert _stable(_replay(str(raw), *flags)) == expected
    assert _stable(_replay("-", *flags, stdin=raw.read_bytes())) == expected
    stereo = tmp_path / "stereo.raw"
    stereo.write_bytes(np.repeat(samples[:, None], 2, axis=1).astype("<i2").tobytes())
    assert _stable(_replay(str(stereo), "--raw-format", "s16le", "--rate", str(rate), "--channels", "2")) == expected

    bare = _replay(str(raw))
    assert bare.returncode == 1 and b"Traceback" not in bare.stderr
    assert b"headerless PCM: give its format, e.g. --raw-format s16le" in bare.stderr
    garbage = _replay("-", stdin=b"not audio at all" * 100)
    assert garbage.returncode == 1 and b"Traceback" not in garbage.stderr
    assert b"standard input: expected a WAV, AIFF or FLAC stream, got another format; for headerless PCM give" in garbage.stderr
    bad = _replay(str(raw), "--raw-format", "s16le", "--rate", "0")
    assert bad.returncode == 2 and b"expected a rate in 1..384000 Hz" in bad.stderr


def test_raw_format_decodes_every_sample_format() -> None:
    assert RawFormat("s16le").decode(struct.pack("<3h", -32768, 0, 16384)).tolist() == [-1.0, 0.0, 0.5]
    assert RawFormat("u8").decode(bytes([0, 128, 192])).tolist() == [-1.0, 0.0, 0.5]
    assert RawFormat("s32le", channels=2).decode(struct.pack("<4i", -2**31, 0, 2**30, 2**30)).tolist() == [-0.5, 0.5]
    assert RawFormat("f32le").decode(struct.pack("<2f", 0.25, -0.5) + b"\x00").tolist() == [0.25, -0.5]
    with pytest.raises(ValueError, match="expected a raw format in"):
        RawFormat("mp3")


# ----------------------------------------------------------------------------------------- input command


class Daemon(LoggedProcess):
    """``ser-edge run`` as a subprocess; stderr lines collected by a thread."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        super().__init__([*ser_edge_command(), "run", "--model", str(SHIPPED_MODEL), *args], cwd=cwd, timeout_s=WAIT_S)


def _sox() -> str:
    sox = shutil.which("sox")
    if sox is None:
        pytest.skip("sox not installed (apt-get install sox)")
    return sox


@pytest.mark.slow
def test_input_command_is_supervised_like_the_microphone(clip: Path, tmp_path: Path, mosquitto, mqtt_subscriber) -> None:
    """The command writes the clip (plus silence) as raw PCM and exits: its events arrive, it is
    restarted with backoff, the stream time goes on; SIGTERM stops the daemon (status 0)."""
    sox = _sox()
    wrapped = f"{sox} -q {clip} -t raw -r 16000 -e signed -b 16 -c 1 - gain -1 pad 0.5 1.5"
    device_id = "cmd-test"
    events = mqtt_subscriber(mosquitto.host, mosquitto.port, emotion_topic("ser", device_id))
    daemon = Daemon(["--input-command", wrapped, "--device-id", device_id, "--mqtt-host", mosquitto.host,
                     "--mqtt-port", str(mosquitto.port)], tmp_path)
    try:
        started = daemon.wait_for_lines(r"input command started \(pid (\d+)\)", 2)  # restarted after it exited
        daemon.wait_for_lines(r"input command stopped: the command exited with status 0")
        received = events.wait_for(2, WAIT_S)
        first, second = (EmotionEvent.from_json(m.payload) for m in received[:2])
        assert (first.seq, second.seq) == (0, 1) and first.session == second.session
        assert second.start_s > first.end_s  # one stream time across restarts
        pid = int(re.search(r"pid (\d+)", started[-1]).group(1))
    finally:
        status = daemon.terminate()
    assert status == 0, "\n".join(daemon.lines[-40:])
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert not any("Traceback" in line for line in daemon.lines)


@pytest.mark.slow
def test_a_failing_or_non_finite_input_command_is_reported_and_retried(tmp_path: Path, mosquitto,
                                                                       mqtt_subscriber) -> None:
    device_id = "cmd-fail"
    stats = mqtt_subscriber(mosquitto.host, mosquitto.port, stats_topic("ser", device_id))
    daemon = Daemon(["--input-command", "/nonexistent/recorder -t raw", "--device-id", device_id,
                     "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port)], tmp_path)
    try:
        daemon.wait_for_lines(r"input command unavailable \(.*No such file or directory.*\); retrying in", 2)
        states = [json.loads(m.payload)["source"] for m in stats.wait_for(1, WAIT_S)]
        assert any(s.startswith("unavailable: ") for s in states), states
    finally:
        assert daemon.terminate() == 0

    nan = f"{sys.executable} -c \"import sys,struct; sys.stdout.buffer.write(struct.pack('<4000f', *[float('nan')]*4000))\""
    daemon = Daemon(["--input-command", nan, "--raw-format", "f32le", "--device-id", "cmd-nan",
                     "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port)], tmp_path)
    try:
        daemon.wait_for_lines(r"input command: expected finite samples, got \d+ NaN/inf; reopening in")
        daemon.wait_for_lines(r"input command started", 2)
    finally:
        assert daemon.terminate() == 0


@pytest.mark.slow
def test_a_command_that_delivers_a_little_audio_and_exits_is_restarted_with_growing_delays(
        tmp_path: Path, mosquitto) -> None:
    """Issue 18 item 7: ``head -c 9600 /dev/zero`` (0.3 s of audio, then exit 0) was restarted every
    second forever. Now each restart is logged with its delay, and the delays double from
    ``reopen_min_s`` up to ``reopen_max_s`` (the run is never healthy for HEALTHY_AFTER_S)."""
    min_s, max_s, restarts = 0.1, 0.8, 6
    config = tmp_path / "ser-edge.toml"
    config.write_text(f"[audio]\nreopen_min_s = {min_s}\nreopen_max_s = {max_s}\n")
    daemon = Daemon(["--config", str(config), "--input-command", "head -c 9600 /dev/zero", "--device-id",
                     "cmd-short", "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port)], tmp_path)
    try:
        lines = daemon.wait_for_lines(r"input command lost; reopening in [\d.]+ s", restarts)
    finally:
        assert daemon.terminate() == 0
    delays = [float(re.search(r"reopening in ([\d.]+) s", line).group(1)) for line in lines[:restarts]]
    assert delays == [min(min_s * 2 ** i, max_s) for i in range(restarts)], "\n".join(daemon.lines[-40:])
    assert len(daemon.wait_for_lines("input command started")) >= restarts


@pytest.mark.slow
def test_a_clipping_input_command_gives_one_warning_line_then_counts(tmp_path: Path, mosquitto) -> None:
    """Issue 18 item 8 (``cat /dev/urandom`` as input: 194,874 lines in 20 s): loud random noise from
    an input command, restarted when it ends, gives one clipping warning in all, then counts of the
    clipped blocks (at most one line a minute, and the rest at the stop)."""
    noise = np.clip(np.random.default_rng(8).normal(0, 4, 16000 * 3), -1, 1)
    raw = tmp_path / "noise.raw"
    raw.write_bytes((noise * 32767).astype("<i2").tobytes())
    daemon = Daemon(["--input-command", f"cat {raw}", "--device-id", "cmd-clip", "--mqtt-host", mosquitto.host,
                     "--mqtt-port", str(mosquitto.port)], tmp_path)
    try:
        daemon.wait_for_lines(r"input command started", 3)  # the noise was read (and clipped) twice at least
    finally:
        assert daemon.terminate() == 0
    warnings = [line for line in daemon.lines if "clipping (" in line]
    counts = [int(m.group(1)) for line in daemon.lines if (m := re.search(r"(\d+) more clipped blocks", line))]
    assert len(warnings) == 1 and counts and sum(counts) >= 2 * 30 - 1, "\n".join(daemon.lines[-40:])
