"""The fake microphone of the tests: a FIFO behind ALSA's ``file`` plugin, read by the real
sounddevice -> PortAudio -> ALSA stack (see tests/test_microphone.py), its fixtures and the daemon process.
The fixtures are registered in conftest.py."""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
from helpers import ser_edge_command, skip_or_fail
from paths import RAVDESS_48K, SHIPPED_MODEL
from processes import LoggedProcess

REPO_ROOT = Path(__file__).resolve().parents[1]
CLIP = RAVDESS_48K / "03-01-05-02-01-01-03.wav"
"""A real RAVDESS recording at 48 kHz; read at test time, never copied into the repository."""

PCM_NAME = "ser_test_mic"
"""The ALSA PCM (and so the PortAudio device name) defined by the test's .asoundrc."""
PREFIX = "ser"
MIC_RATE_HZ = 48000
LEAD_SILENCE_S = 1.0
"""Silence before the first utterance, so the VAD has a floor and a reader that opens late misses none of it."""
GAP_SILENCE_S = 1.5
"""Silence after each repetition of the clip; longer than the VAD hangover, so each one is an utterance."""
BLOCK_MS = 100
"""``audio.block_ms`` of the daemon under test; PortAudio reads the PCM in periods of this length."""
PERIOD_FRAMES = MIC_RATE_HZ * BLOCK_MS // 1000
"""Frames per write to the pipe: exactly one period of the reader (see the module docstring)."""
OPEN_POLL_S = 0.02

EVENT_TIMEOUT_S = 25.0
"""Upper bound for the first event: model load + 1 s lead + 4.4 s clip + hangover, with slack."""
LOG_TIMEOUT_S = 15.0
EXIT_TIMEOUT_S = 15.0
BROKER_TIMEOUT_S = 10.0
DURATION_TOLERANCE_S = 0.3
"""How far the utterance heard through ALSA may differ in length from the clip's replayed one."""


@pytest.fixture
def model_path() -> Path:
    """The model under test: ``paths.SHIPPED_MODEL`` (the repository's, or ``$SER_EDGE_TEST_MODEL``); skips if absent."""
    if SHIPPED_MODEL.is_file():
        return SHIPPED_MODEL
    skip_or_fail(f"no model: {SHIPPED_MODEL} is absent (set SER_EDGE_TEST_MODEL)")


@pytest.fixture(scope="module")
def clip_48k() -> np.ndarray:
    """The RAVDESS clip as mono float32 at 48 kHz, shape (frames,)."""
    if not CLIP.is_file():
        skip_or_fail(f"corpus clip not available: {CLIP}")
    samples, rate_hz = soundfile.read(str(CLIP), dtype="float32", always_2d=True)
    assert rate_hz == MIC_RATE_HZ, f"expected a {MIC_RATE_HZ} Hz clip, got {rate_hz} Hz"
    return samples.mean(axis=1).astype("<f4")


def require_portaudio() -> None:
    probe = subprocess.run([sys.executable, "-c", "import sounddevice"], capture_output=True, text=True,
                           timeout=30)
    if probe.returncode != 0:
        skip_or_fail(f"PortAudio not loadable (apt-get install libportaudio2 libasound2): "
                    f"{probe.stderr.strip().splitlines()[-1:]}")


class FifoMicrophone:
    """Plays a programme of float32 samples into a FIFO at real-time pace, as a microphone would.

    Each time a reader opens the FIFO the programme starts again: ``LEAD_SILENCE_S`` of silence,
    then the clip followed by ``GAP_SILENCE_S`` of silence, repeated. Every wait is bounded, so
    :meth:`stop` returns promptly whatever the reader does.
    """

    def __init__(self, fifo: Path, clip: np.ndarray, rate_hz: int, period_frames: int) -> None:
        self.fifo = fifo
        self.rate_hz = rate_hz
        self.period_frames = period_frames
        gap = np.zeros(round(GAP_SILENCE_S * rate_hz), dtype="<f4")
        self._lead = np.zeros(round(LEAD_SILENCE_S * rate_hz), dtype="<f4")
        self._cycle = np.concatenate([clip.astype("<f4"), gap])
        self.readers = 0
        self._stop = threading.Event()
        self._paused = threading.Event()
        os.mkfifo(fifo)
        self._thread = threading.Thread(target=self._main, name="fifo-microphone", daemon=True)
        self._thread.start()

    def _programme(self) -> Iterator[bytes]:
        position = 0
        lead_frames = self._lead.size
        while True:
            if position < lead_frames:
                chunk = self._lead[position:position + self.period_frames]
            else:
                offset = (position - lead_frames) % self._cycle.size
                chunk = self._cycle[offset:offset + self.period_frames]
            if chunk.size < self.period_frames:  # the end of the lead or of a repetition: fill from the cycle
                chunk = np.concatenate([chunk, self._cycle[:self.period_frames - chunk.size]])
            position += self.period_frames
            yield chunk.tobytes()

    def _open_for_writing(self) -> int | None:
        while not self._stop.is_set():
            try:
                return os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
                self._stop.wait(OPEN_POLL_S)
        return None

    def _wait_for_room(self, fd: int, nbytes: int) -> bool:
        """Wait (bounded by :meth:`stop`) until the pipe can take ``nbytes`` in one write; False if stopped."""
        capacity = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
        while not self._stop.is_set():
            queued = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
            if capacity - queued >= nbytes:
                return True
            self._stop.wait(OPEN_POLL_S)
        return False

    def _main(self) -> None:
        while not self._stop.is_set():
            fd = self._open_for_writing()
            if fd is None:
                return
            self.readers += 1
            started = time.monotonic()
            written_frames = 0
            try:
                for chunk in self._programme():
                    while self._paused.is_set():  # a hung microphone: the reader gets nothing
                        if self._stop.wait(OPEN_POLL_S):
                            return
                        started = time.monotonic() - written_frames / self.rate_hz  # resume at real time
                    if not self._wait_for_room(fd, len(chunk)):
                        return
                    os.write(fd, chunk)  # fits: the whole period lands at once
                    written_frames += self.period_frames
                    ahead_s = started + written_frames / self.rate_hz - time.monotonic()
                    if ahead_s > 0 and self._stop.wait(ahead_s):
                        return
            except BrokenPipeError:
                pass  # the reader closed the PCM; wait for the next one
            finally:
                os.close(fd)

    def pause(self) -> None:
        """Stop delivering (the reader's read blocks), as a hung USB microphone does."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        assert not self._thread.is_alive(), "FIFO writer did not stop"


def asoundrc(infile: Path) -> str:
    return (
        f"pcm.{PCM_NAME} {{\n"
        f"    type file\n"
        f"    slave.pcm \"null\"\n"
        f"    file \"/dev/null\"\n"
        f"    infile \"{infile}\"\n"
        f"    format \"raw\"\n"
        f"    hint.description \"ser-edge test microphone (ALSA file plugin)\"\n"
        f"}}\n"
    )


@pytest.fixture
def alsa_mic(tmp_path: Path, clip_48k: np.ndarray) -> Iterator[tuple[dict[str, str], FifoMicrophone]]:
    """``(env, microphone)``: an environment whose HOME holds the .asoundrc, and the running FIFO writer."""
    require_portaudio()
    home = tmp_path / "home"
    home.mkdir()
    mic = FifoMicrophone(tmp_path / "mic.f32le", clip_48k, MIC_RATE_HZ, PERIOD_FRAMES)
    (home / ".asoundrc").write_text(asoundrc(mic.fifo))
    env = {**os.environ, "HOME": str(home)}
    try:
        yield env, mic
    finally:
        mic.stop()


class Daemon(LoggedProcess):
    """``ser-edge run`` as a subprocess whose stderr lines are collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        super().__init__([*ser_edge_command(), "run", *args], env=env, cwd=cwd, timeout_s=EXIT_TIMEOUT_S)
