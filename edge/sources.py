"""More audio sources: standard input, raw PCM, and a command's output (the live source beside the
microphone), all as mono float32 blocks like :mod:`edge.audio`'s files.

* ``ser-edge replay -``: a WAV or FLAC stream on standard input (``arecord -t wav | ser-edge replay -``).
  A WAV stream is read as it arrives (libsndfile's pipe mode; arecord's "unknown length" header is
  fine); other formats from a pipe (FLAC needs to seek) are spooled to a temporary file first, so
  they are read when the stream ends. A regular file redirected to standard input is read directly.
* Raw PCM (no header), from a file or standard input: :class:`RawFormat` (``--raw-format s16le
  --rate 16000 --channels 1``), read block by block with numpy.
* :class:`CommandSource` (``ser-edge run --input-command 'arecord ... -t raw'``): the convention of
  wyoming-satellite's ``--mic-command`` and Rhasspy's ``--record-command``. A reader thread reads the
  command's standard output in blocks of ``audio.block_ms`` and queues them with their capture time
  (the read time of the pipe minus the block's duration). It has the microphone's interface
  (``open``/``alive``/``read``/``close``), so the daemon supervises it the same way: a command that
  exits, stalls or sends non-finite samples is stopped and started again with backoff, and its
  state is reported in the stats message and the systemd status.
"""

from __future__ import annotations

import logging
import os
import queue
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile

from edge.audio import (
    FILE_BLOCK_S,
    AudioError,
    MicSource,
    MicUnavailable,
    StreamingResampler,
    check_samples,
    file_blocks,
    to_mono,
)

logger = logging.getLogger(__name__)

STDIN = "-"
"""The file name that means standard input."""

RAW_FORMATS: dict[str, tuple[str, float, float]] = {
    "s16le": ("<i2", 32768.0, 0.0),
    "s32le": ("<i4", 2147483648.0, 0.0),
    "f32le": ("<f4", 1.0, 0.0),
    "u8": ("u1", 128.0, 128.0),
}
"""Raw sample format -> (numpy dtype, scale, offset): ``float = (int - offset) / scale``; names as
arecord's ``-f`` and ffmpeg's ``-f`` spell them (S16_LE / s16le)."""

STREAM_MAGIC = (b"RIFF", b"RF64")
"""WAV headers libsndfile can read from a pipe as the audio arrives."""

COMMAND_STOP_TIMEOUT_S = 2.0
"""After SIGTERM, a command gets this long to exit before SIGKILL."""
COMMAND_QUEUE_BLOCKS = 200
STDERR_LINES_LOGGED = 20
"""The first lines a command writes to stderr (per start) are logged; the rest at debug level."""


@dataclass(frozen=True)
class RawFormat:
    """Headerless PCM: ``sample_format`` (a key of :data:`RAW_FORMATS`), ``rate_hz``, ``channels``
    (interleaved). Raises ``ValueError("expected ..., got ...")`` when constructed with bad values."""

    sample_format: str = "s16le"
    rate_hz: int = 16000
    channels: int = 1

    def __post_init__(self) -> None:
        if self.sample_format not in RAW_FORMATS:
            raise ValueError(f"expected a raw format in {sorted(RAW_FORMATS)}, got {self.sample_format!r}")
        if isinstance(self.rate_hz, bool) or not isinstance(self.rate_hz, int) or not 1 <= self.rate_hz <= 384000:
            raise ValueError(f"expected a rate in 1..384000 Hz, got {self.rate_hz!r}")
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or not 1 <= self.channels <= 32:
            raise ValueError(f"expected 1..32 channels, got {self.channels!r}")

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame (one sample of every channel)."""
        return np.dtype(RAW_FORMATS[self.sample_format][0]).itemsize * self.channels

    def decode(self, data: bytes) -> np.ndarray:
        """Whole frames of ``data`` -> mono float32 ``(frames,)`` in [-1, 1] (channels averaged)."""
        dtype, scale, offset = RAW_FORMATS[self.sample_format]
        usable = len(data) - len(data) % self.frame_bytes
        samples = np.frombuffer(data[:usable], dtype=dtype).astype(np.float32)
        if offset:
            samples -= offset
        samples /= scale
        return to_mono(samples.reshape(-1, self.channels))


def _read_exactly(stream: BinaryIO, nbytes: int) -> bytes:
    """Up to ``nbytes`` bytes: fewer only at the end of the stream (a pipe returns short reads)."""
    chunks, remaining = [], nbytes
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def raw_blocks(stream: BinaryIO, raw: RawFormat, target_rate_hz: int, name: str,
               block_s: float = FILE_BLOCK_S) -> Iterator[np.ndarray]:
    """Mono float32 blocks of headerless PCM from ``stream``, resampled to ``target_rate_hz``.

    :raises AudioError: for a rate below ``target_rate_hz`` or non-finite samples (``f32le``),
        naming ``name``; a trailing partial frame is ignored.
    """
    if raw.rate_hz < target_rate_hz:
        raise AudioError(f"{name}: expected a sample rate of at least {target_rate_hz} Hz, got {raw.rate_hz} Hz")
    resampler = StreamingResampler(raw.rate_hz, target_rate_hz)
    nbytes = max(1, round(block_s * raw.rate_hz)) * raw.frame_bytes
    while data := _read_exactly(stream, nbytes):
        samples = raw.decode(data)
        check_samples(samples, name)
        yield resampler.process(samples)
    yield resampler.flush()


def _relay(head: bytes, source: BinaryIO) -> int:
    """A pipe's read end that yields ``head`` then the rest of ``source`` (a thread copies), so
    libsndfile can read a stream whose first bytes were already taken to recognise it."""
    read_fd, write_fd = os.pipe()

    def copy() -> None:
        try:
            with os.fdopen(write_fd, "wb") as out:
                out.write(head)
                while chunk := source.read1(1 << 16) if hasattr(source, "read1") else source.read(1 << 16):
                    out.write(chunk)
        except (BrokenPipeError, OSError):  # the reader stopped (a stop signal, a bad stream)
            pass

    threading.Thread(target=copy, name="stdin-relay", daemon=True).start()
    return read_fd


def _soundfile_blocks(handle: soundfile.SoundFile, target_rate_hz: int, name: str,
                      block_s: float = FILE_BLOCK_S) -> Iterator[np.ndarray]:
    with handle:
        if handle.samplerate < target_rate_hz:
            raise AudioError(f"{name}: expected a sample rate of at least {target_rate_hz} Hz, "
                             f"got {handle.samplerate} Hz")
        resampler = StreamingResampler(handle.samplerate, target_rate_hz)
        frames = max(1, round(block_s * handle.samplerate))
        while True:
            try:
                block = handle.read(frames, dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as exc:
                raise AudioError(f"{name}: truncated or corrupt audio ({exc})") from None
            if block.shape[0] == 0:
                break
            samples = to_mono(block)
            check_samples(samples, name)
            yield resampler.process(samples)
        yield resampler.flush()


def stdin_blocks(target_rate_hz: int, stream: BinaryIO | None = None,
                 name: str = "standard input") -> Iterator[np.ndarray]:
    """Mono float32 blocks of a WAV/FLAC (any format libsndfile reads) on standard input, or on
    another stream (a FIFO, a character device).

    :param stream: the binary stream (default ``sys.stdin.buffer``).
    :raises AudioError: for an empty or unreadable stream, or as :func:`edge.audio.file_blocks`.
    """
    stream = stream if stream is not None else sys.stdin.buffer
    try:
        regular = stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        regular = False
    if regular:  # `< file.flac`: seekable, libsndfile reads it like a file
        try:
            handle = soundfile.SoundFile(stream.fileno(), closefd=False)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{name}: not a readable audio stream ({str(exc).splitlines()[0]})") from None
        yield from _soundfile_blocks(handle, target_rate_hz, name)
        return
    head = _read_exactly(stream, 12)
    if not head:
        raise AudioError(f"{name}: expected a WAV or FLAC stream, got nothing")
    if head[:4] in STREAM_MAGIC:
        fd = _relay(head, stream)
        try:
            handle = soundfile.SoundFile(fd, closefd=True)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            os.close(fd)
            raise AudioError(f"{name}: not a readable WAV stream ({str(exc).splitlines()[0]})") from None
        yield from _soundfile_blocks(handle, target_rate_hz, name)
        return
    with tempfile.TemporaryFile(prefix="ser-edge-stdin-") as spool:  # FLAC & co. need to seek
        spool.write(head)
        shutil.copyfileobj(stream, spool, 1 << 16)
        spool.seek(0)
        try:
            handle = soundfile.SoundFile(spool)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{name}: expected a WAV or FLAC stream ({str(exc).splitlines()[0]}); "
                             f"for headerless PCM give --raw-format, --rate and --channels") from None
        yield from _soundfile_blocks(handle, target_rate_hz, name)


RAW_SUFFIXES = (".raw", ".pcm")


def input_blocks(source: str | Path, target_rate_hz: int, raw: RawFormat | None = None) -> Iterator[np.ndarray]:
    """Blocks of one replay input: ``"-"`` (standard input) or a path; raw PCM when ``raw`` is given.

    :raises AudioError: one line, e.g. for a headerless ``.raw``/``.pcm`` file without ``raw``.
    """
    if raw is not None:
        if str(source) == STDIN:
            yield from raw_blocks(sys.stdin.buffer, raw, target_rate_hz, "standard input")
            return
        path = Path(source)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below, the generator may stop early
        except OSError as exc:
            raise AudioError(f"{path}: {exc.strerror.lower() if exc.strerror else exc}") from None
        with handle:
            yield from raw_blocks(handle, raw, target_rate_hz, str(path))
        return
    if str(source) == STDIN:
        yield from stdin_blocks(target_rate_hz)
        return
    path = Path(source)
    if path.suffix.lower() in RAW_SUFFIXES:
        raise AudioError(f"{source}: headerless PCM: give its format, e.g. --raw-format s16le --rate 16000 "
                         f"--channels 1")
    if path.exists() and not path.is_file():  # a FIFO, /dev/stdin on a pipe: a stream, not a file
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise AudioError(f"{path}: {exc.strerror or exc}") from None
        with handle:
            yield from stdin_blocks(target_rate_hz, handle, str(path))
        return
    yield from file_blocks(source, target_rate_hz)


class CommandSource:
    """A command whose standard output is raw PCM (``raw``), as a live source with the
    microphone's interface (see the module docstring).

    :param command: a shell-like command line, split with :func:`shlex.split` (no shell).
    :param block_ms: audio per block read from the pipe, milliseconds.
    """

    kind = "input command"

    def __init__(self, command: str, raw: RawFormat, block_ms: float) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise ValueError("expected a command, got an empty string")
        self.raw = raw
        self.rate_hz = raw.rate_hz
        self.block_frames = max(1, round(block_ms * raw.rate_hz / 1000))
        self.block_ms = block_ms
        self.queue: queue.Queue[tuple[np.ndarray, float]] = queue.Queue(maxsize=COMMAND_QUEUE_BLOCKS)
        self.stream: subprocess.Popen | None = None
        """The running process (named like the microphone's stream: ``None`` when not open)."""
        self.overflows = 0
        self.dropped_blocks = 0
        self.blocks = 0
        self.captured_at = 0.0
        """Unix time of the first sample of the block :meth:`read` returned last."""
        self.last_block_at = 0.0
        self.failure: str | None = None
        self._reader: threading.Thread | None = None

    def open(self) -> None:
        """Start the command and its reader thread.

        :raises MicUnavailable: if the command cannot be started (not found, not executable); the
            daemon retries it like a missing microphone.
        """
        while not self.queue.empty():
            self.queue.get_nowait()
        self.failure = None
        self.blocks = 0
        try:
            self.stream = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise MicUnavailable(f"cannot start {self.argv[0]!r}: {exc.strerror or exc}") from exc
        self.last_block_at = time.monotonic()
        process = self.stream
        self._reader = threading.Thread(target=self._read_main, args=(process,), name="input-command", daemon=True)
        self._reader.start()
        threading.Thread(target=self._stderr_main, args=(process,), name="input-command-stderr", daemon=True).start()
        logger.info("input command started (pid %d): %s; %s %d Hz %d ch", process.pid, shlex.join(self.argv),
                    self.raw.sample_format, self.raw.rate_hz, self.raw.channels)

    def _read_main(self, process: subprocess.Popen) -> None:
        nbytes = self.block_frames * self.raw.frame_bytes
        assert process.stdout is not None
        while True:
            data = _read_exactly(process.stdout, nbytes)
            read_at = time.time()
            if len(data) < self.raw.frame_bytes:
                code = process.wait()
                self.failure = self.failure or f"the command exited with status {code}"
                return
            samples = self.raw.decode(data)
            try:
                check_samples(samples, "input command")
            except AudioError as exc:
                self.failure = str(exc)
                return
            self.last_block_at = time.monotonic()
            try:  # capture time of the block's first sample: the read returned when its last arrived
                self.queue.put_nowait((samples, read_at - samples.size / self.rate_hz))
            except queue.Full:
                self.dropped_blocks += 1
            if len(data) < nbytes:
                code = process.wait()
                self.failure = self.failure or f"the command exited with status {code}"
                return

    def _stderr_main(self, process: subprocess.Popen) -> None:
        assert process.stderr is not None
        for number, line in enumerate(process.stderr):
            text = line.decode("utf-8", errors="replace").rstrip()
            logger.log(logging.INFO if number < STDERR_LINES_LOGGED else logging.DEBUG, "input command: %s", text)

    def read(self, timeout_s: float) -> np.ndarray | None:
        """The next block (float32 mono at ``rate_hz``), or ``None`` after ``timeout_s``; sets :attr:`captured_at`."""
        try:
            samples, self.captured_at = self.queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        self.blocks += 1
        return samples

    @property
    def stall_timeout_s(self) -> float:
        return max(2.0, 10 * self.block_ms / 1000)

    @property
    def alive(self) -> bool:
        """Running and delivering; queued blocks are still read after the command ended."""
        if self.stream is None:
            return False
        if self.failure is not None and self.queue.empty():
            logger.error("input command stopped: %s", self.failure)
            return False
        if self.failure is None and time.monotonic() - self.last_block_at > self.stall_timeout_s:
            logger.error("input command stalled: no audio for %.1f s, restarting", self.stall_timeout_s)
            return False
        return True

    def close(self) -> None:
        """Stop the command (SIGTERM to its process group, SIGKILL after :data:`COMMAND_STOP_TIMEOUT_S`)."""
        process, self.stream = self.stream, None
        if process is None:
            return
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(COMMAND_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
        if self._reader is not None:  # the pipe is at its end now: the reader returns
            self._reader.join(COMMAND_STOP_TIMEOUT_S)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def live_source(audio, model_rate_hz: int):
    """The daemon's live source for ``[audio]`` settings: a :class:`CommandSource` when
    ``audio.input_command`` is set (raw PCM in ``audio.input_format`` at ``audio.sample_rate_hz``,
    0 = the model's rate, with ``audio.channels``), else the microphone."""
    if audio.input_command:
        raw = RawFormat(audio.input_format, audio.sample_rate_hz or model_rate_hz, audio.channels)
        return CommandSource(audio.input_command, raw, audio.block_ms)
    return MicSource(audio, model_rate_hz)
