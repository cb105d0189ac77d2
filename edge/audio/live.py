"""Live audio: sources that do not end (the microphone, an input command), the one supervisor that
keeps them open.

* :class:`LiveSource` is the interface both sources implement (written down here, so the daemon and
  the tester depend on it, not on a class).
* :class:`MicSource`: a sounddevice input stream whose callback only copies each block into a queue.
* :class:`CommandSource` (``ser-edge run --input-command 'arecord ... -t raw'``): the convention of
  wyoming-satellite's ``--mic-command`` and Rhasspy's ``--record-command``. A reader thread reads the
  command's standard output in blocks of ``audio.block_ms`` and queues them with their capture time
  (the read time of the pipe minus the block's duration).
* :class:`Supervisor`: open, read, back off, reopen, written once and used by ``ser-edge run``
  (:func:`edge.service.daemon.run_microphone`) and ``ser-edge try`` (:func:`edge.service.tester.run_tester`).
* The capture clock the sources anchor is :class:`edge.audio.clock.CaptureClock`.
"""

from __future__ import annotations

import logging
import os
import queue
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from edge.audio.formats import RawFormat
from edge.audio.io import AudioError, ClippingMonitor, MicUnavailable, _read_exactly, check_rate, check_samples

logger = logging.getLogger(__name__)

COMMAND_STOP_TIMEOUT_S = 2.0
"""After SIGTERM, a command gets this long to exit before SIGKILL."""
COMMAND_QUEUE_BLOCKS = 200
HEALTHY_AFTER_S = 30.0
"""A live source that has delivered audio for this long since it was (re)opened counts as healthy: the
:class:`Supervisor`'s backoff returns to its minimum (30 s: the default ``audio.reopen_max_s``, so a
source that keeps dying within the longest backoff never resets it)."""
STDERR_LINES_LOGGED = 20
"""The first lines a command writes to stderr (per start) are logged; the rest at debug level."""


class LiveSource(Protocol):
    """What the :class:`Supervisor` needs from a live source (:class:`MicSource`, :class:`CommandSource`).

    A source starts closed (``stream is None``). :meth:`open` starts it or raises
    :class:`~edge.audio.io.MicUnavailable`; :meth:`read` returns the next mono float32 block at
    :attr:`rate_hz` or ``None`` after ``timeout_s``, and sets :attr:`captured_at`; :attr:`alive` turns
    false when the source died (closed by the device, stalled, exited) and must be reopened.
    """

    kind: str
    """What it is, for messages: ``"microphone"``, ``"input command"``."""
    rate_hz: int
    """Sample rate of the blocks (set by :meth:`open`)."""
    stream: object | None
    """The open stream or process; ``None`` when closed (never opened, or closed after a failure)."""
    blocks: int
    """Blocks delivered since the last :meth:`open`."""
    captured_at: float
    """Unix time of the first sample of the block :meth:`read` returned last."""
    overflows: int
    """Input overflows reported by the device."""
    dropped_blocks: int
    """Blocks lost because the queue between the capture thread and the reader was full."""

    @property
    def alive(self) -> bool: ...
    def open(self) -> None: ...
    def read(self, timeout_s: float) -> np.ndarray | None: ...
    def close(self) -> None: ...


class MicSource:
    """A sounddevice input stream whose callback only copies each block into a queue.

    The device is opened at ``audio.sample_rate_hz`` if set, else at the model's rate if the
    device supports it, else at its default rate (most USB microphones: 44.1/48 kHz).
    ``audio`` is an ``edge.settings.AudioSettings`` (``device``, ``sample_rate_hz``, ``block_ms``).

    :raises OSError: from the constructor if PortAudio cannot be loaded (an installation problem).
    """

    kind = "microphone"

    QUEUE_BLOCKS = 200
    """Blocks buffered between the audio thread and the daemon (20 s at 100 ms); more are dropped."""

    def __init__(self, audio, model_rate_hz: int) -> None:
        import sounddevice  # PortAudio is loaded only when a microphone is used

        self.sd = sounddevice
        self.audio = audio
        self.model_rate_hz = model_rate_hz
        self.queue: queue.Queue[tuple[np.ndarray, float]] = queue.Queue(maxsize=self.QUEUE_BLOCKS)
        self.overflows = 0
        self.dropped_blocks = 0
        self.stream = None
        self.rate_hz = 0
        self.last_block_at = 0.0
        self.blocks = 0
        self.captured_at = 0.0
        """Unix time of the first sample of the block :meth:`read` returned last (PortAudio's ADC time)."""

    def device(self) -> int | str | None:
        value = self.audio.device.strip()
        if not value:
            return None
        return int(value) if value.isdigit() else value

    def open(self) -> None:
        """Open and start the stream.

        With ``sample_rate_hz = 0`` the device's default rate is used when it is at least the
        model's (our resample_poly then does the conversion, not ALSA's linear ``plug``
        resampler, which aliases); otherwise the model's rate if the device accepts it.

        :raises MicUnavailable: the device is missing, busy or refuses the settings (PortAudio's
            ``PortAudioError``, or sounddevice's ``ValueError`` for a name that matches no input
            device), or it reports a rate outside 8..384 kHz. Nothing else is caught.
        """
        while not self.queue.empty():  # blocks of an earlier stream, maybe at another rate
            self.queue.get_nowait()
        device = self.device()
        try:
            rate = self.audio.sample_rate_hz
            if not rate:
                rate = int(self.sd.query_devices(device, "input")["default_samplerate"])
                if rate < self.model_rate_hz:
                    self.sd.check_input_settings(device=device, channels=1, samplerate=self.model_rate_hz)
                    rate = self.model_rate_hz
            check_rate(int(rate), f"microphone {device if device is not None else '(default)'}")
            self.rate_hz = int(rate)
            self.stream = self.sd.InputStream(
                device=device, channels=1, samplerate=self.rate_hz, dtype="float32",
                blocksize=max(1, round(self.audio.block_ms * self.rate_hz / 1000)), callback=self._callback,
            )
            self.blocks = 0
            self.last_block_at = time.monotonic()
            self.stream.start()
            info = self.sd.query_devices(self.stream.device, "input")
        except (self.sd.PortAudioError, ValueError) as exc:
            self.close()
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise MicUnavailable(message) from exc
        logger.info("microphone %r open at %d Hz", info["name"], self.rate_hz)

    def _callback(self, indata, frames, time_info, status) -> None:  # audio thread: copy and return
        self.last_block_at = time.monotonic()
        self.blocks += 1
        if status.input_overflow:
            self.overflows += 1
        # wall time of the first sample: now minus how long ago PortAudio's ADC captured it (0 = unknown)
        adc_age_s = time_info.currentTime - time_info.inputBufferAdcTime if time_info.inputBufferAdcTime else 0.0
        if not 0.0 < adc_age_s < 10.0:
            adc_age_s = frames / self.rate_hz
        try:
            self.queue.put_nowait((indata[:, 0].copy(), time.time() - adc_age_s))
        except queue.Full:
            self.dropped_blocks += 1

    def read(self, timeout_s: float) -> np.ndarray | None:
        """The next block (float32 ``(n,)`` at :attr:`rate_hz`), or ``None`` after ``timeout_s``;
        sets :attr:`captured_at`."""
        try:
            block, self.captured_at = self.queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        return block

    @property
    def stall_timeout_s(self) -> float:
        """Seconds without a block after which a stream counts as dead: 10 blocks, at least 2 s."""
        return max(2.0, 10 * self.audio.block_ms / 1000)

    @property
    def alive(self) -> bool:
        """Open, active, and delivering: a stream silent for ``stall_timeout_s`` (a hung USB mic) is dead."""
        if self.stream is None or not self.stream.active:
            return False
        if time.monotonic() - self.last_block_at > self.stall_timeout_s:
            logger.error("microphone stalled: no audio for %.1f s, reopening", self.stall_timeout_s)
            return False
        return True

    def close(self) -> None:
        if self.stream is not None:
            try:
                self.stream.close(ignore_errors=True)
            finally:
                self.stream = None


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
            samples = self.raw.decode(data)  # checked once, by the Supervisor that reads it
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


def live_source(audio, model_rate_hz: int) -> LiveSource:
    """The daemon's live source for ``[audio]`` settings: a :class:`CommandSource` when
    ``audio.input_command`` is set (raw PCM in ``audio.input_format`` at ``audio.sample_rate_hz``,
    0 = the model's rate, with ``audio.channels``), else the microphone."""
    if audio.input_command:
        raw = RawFormat(audio.input_format, audio.sample_rate_hz or model_rate_hz, audio.channels)
        return CommandSource(audio.input_command, raw, audio.block_ms)
    return MicSource(audio, model_rate_hz)


class SupervisorListener(Protocol):
    """What a :class:`Supervisor` reports; the daemon logs, notifies systemd and publishes stats, the
    tester writes lines to the terminal."""

    def opening(self) -> None:
        """About to call ``open()`` (it may take a second: PortAudio scans the devices)."""

    def opened(self, source: LiveSource) -> None:
        """The source is open and about to deliver blocks at ``source.rate_hz``."""

    def failed(self, what: str, error: Exception | None, retry_in_s: float) -> None:
        """The source failed and is retried in ``retry_in_s``: ``what`` is ``"lost"`` (it was open and
        died; ``error`` is None), ``"unavailable"`` (``open()`` raised ``error``) or ``"bad samples"``
        (a block failed :func:`~edge.audio.io.check_samples` with ``error``; the source was closed)."""

    def idle(self) -> None:
        """No block this step (a backoff wait or a read timeout ended): time for periodic work."""


class Supervisor:
    """Open, read, back off, reopen: the one supervision of a live source.

    Each :meth:`read` opens the source if it is closed, waits out the backoff after a failure, and
    returns the next checked block (or ``None``). The backoff starts at ``reopen_min_s`` and doubles
    up to ``reopen_max_s`` with each failure (exponential backoff with a cap); it returns to the
    minimum only once a source has run healthily, delivering blocks, for ``healthy_after_s``
    (:data:`HEALTHY_AFTER_S`, 30 s) since it was opened. So a command that writes a little audio and
    exits (``head -c 9600 /dev/zero``) is restarted after 1, 2, 4, ... up to ``reopen_max_s`` seconds,
    not every second forever; a microphone unplugged after an hour of use is retried at once.

    Exception policy (the daemon's and the tester's, the same): only
    :class:`~edge.audio.io.MicUnavailable` from ``open()`` (a device that cannot be opened, a command
    that cannot be started: :class:`MicSource` turns PortAudio's errors into it) and
    :class:`~edge.audio.io.AudioError` from the samples (NaN/inf) are failures to retry. Any other
    exception propagates: it is a bug, and under systemd the service restarts.

    :param wait: ``wait(seconds)`` blocks for a backoff (returning early when stopping is fine); the
        daemon's feeds the systemd watchdog meanwhile.
    :param clock: monotonic seconds (the backoff's time base).
    """

    def __init__(self, source: LiveSource, listener: SupervisorListener, reopen_min_s: float, reopen_max_s: float,
                 wait: Callable[[float], object], clock: Callable[[], float] = time.monotonic,
                 healthy_after_s: float | None = None) -> None:
        self.source = source
        self.listener = listener
        self.reopen_min_s = reopen_min_s
        self.reopen_max_s = reopen_max_s
        self.healthy_after_s = HEALTHY_AFTER_S if healthy_after_s is None else healthy_after_s
        """Seconds a source must run, delivering, before the backoff returns to ``reopen_min_s``."""
        self.delay_s = reopen_min_s
        """The wait before the next attempt after a failure, seconds."""
        self._wait = wait
        self._clock = clock
        self._retry_at = 0.0  # clock time of the next open attempt
        self._opened_at = 0.0  # clock time of the last successful open()
        self.clipping = ClippingMonitor(source.kind)
        """The source's clipping warnings: one line, then a count at most once a minute (across reopens)."""

    @property
    def kind(self) -> str:
        return self.source.kind

    def _failed(self, what: str, error: Exception | None) -> None:
        self._retry_at = self._clock() + self.delay_s
        self.listener.failed(what, error, self.delay_s)
        self.delay_s = min(self.delay_s * 2, self.reopen_max_s)

    def read(self, timeout_s: float) -> np.ndarray | None:
        """One step: the next block (float32 mono at ``source.rate_hz``, ``source.captured_at`` set), or
        ``None`` when this step opened, failed, waited or timed out."""
        source = self.source
        if not source.alive:
            if source.stream is not None:  # it was open and died: the next attempt after the backoff
                source.close()
                self._failed("lost", None)
            wait_s = self._retry_at - self._clock()
            if wait_s > 0:
                self._wait(wait_s)
                self.listener.idle()
                return None
            self.listener.opening()
            try:
                source.open()
            except MicUnavailable as exc:
                self._failed("unavailable", exc)
                return None
            self._opened_at = self._clock()
            self.listener.opened(source)
        block = source.read(timeout_s)
        if block is None:
            self.listener.idle()
            return None
        try:
            check_samples(block, source.kind, self.clipping)  # as for files: NaN/inf refused, clipping a warning
        except AudioError as exc:  # a source that sends NaN is broken: reopen it with backoff
            source.close()
            self._failed("bad samples", exc)
            return None
        if self.delay_s != self.reopen_min_s and self._clock() - self._opened_at >= self.healthy_after_s:
            self.delay_s = self.reopen_min_s  # healthy for a while: the next failure starts the backoff anew
        return block

    def drain(self) -> list[np.ndarray]:
        """After ``source.close()``: the blocks captured before the stop, still queued (checked like
        every block; the first non-finite one ends the list, logged)."""
        left = []
        while (block := self.source.read(0)) is not None:
            try:
                check_samples(block, self.source.kind, self.clipping)
            except AudioError as exc:
                logger.error("%s; the rest of the audio queued at the stop is dropped", exc)
                break
            left.append(block)
        self.clipping.flush()
        return left
