"""Audio sources: files and the microphone, as mono float32 at the model's sample rate.

Resampling uses ``scipy.signal.resample_poly`` (polyphase FIR, Kaiser window, zero-padded at the
ends). :class:`StreamingResampler` applies it to a stream block by block with enough context that
its output equals ``resample_poly`` of the whole signal (to float rounding).

Accepted input: sample rates of :data:`MIN_RATE_HZ`..:data:`MAX_RATE_HZ` (8 to 384 kHz); files in
WAV (RIFF, RF64, Wave64) or FLAC only, recognised by their first bytes before libsndfile sees them.
MP3 and Ogg (Vorbis/Opus) are refused: the model was trained on lossless audio, and libsndfile's
MP3 decoder (libmpg123) writes its own complaints to the terminal. Memory does not grow with the
rate or the file: files are read in :data:`FILE_BLOCK_S` blocks, and the resampling ratio is kept
to terms of at most :data:`MAX_RATIO_TERM` (so the polyphase filter stays bounded).
"""

from __future__ import annotations

import logging
import math
import queue
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile

logger = logging.getLogger(__name__)

#: Samples at or above this magnitude count as clipped (a warning, not an error).
CLIPPING_LEVEL = 0.999


FILE_BLOCK_S = 0.5
"""Files are read in blocks of this much audio, so memory stays flat for hour-long recordings."""

MIN_RATE_HZ, MAX_RATE_HZ = 8000, 384000
"""Sample rates accepted from files and devices (the same range as ``audio.sample_rate_hz``)."""

MAX_RATIO_TERM = 20000
"""Largest ``up`` or ``down`` of a resampling ratio. ``resample_poly``'s filter has
``20 * max(up, down) + 1`` taps (at most 400001 here: 3 MB), so an awkward rate (e.g. 383999 Hz
to 16 kHz: 16000/383999) would need millions; such ratios are replaced by the nearest fraction
with terms <= this (:meth:`fractions.Fraction.limit_denominator`), a rate error below 0.001 %.
Every usual rate (8, 11.025, 16, 22.05, 32, 44.1, 48, 88.2, 96, 176.4, 192, 384 kHz) and TESS's
24414 Hz (8000/12207) to 16 kHz is exact, so the features of the training corpora do not change."""

FILE_MAGIC = {b"RIFF": "WAV", b"RIFX": "WAV", b"RF64": "WAV (RF64)", b"riff": "Wave64", b"fLaC": "FLAC",
              b"FORM": "AIFF"}
"""First four bytes of the accepted file formats (AIFF/AIFC: an IFF ``FORM``; some corpora ship AIFF
files named ``.wav``, e.g. TESS's ``YAF_germ_angry.wav``)."""
REFUSED_MAGIC = {b"OggS": "Ogg", b"ID3": "MP3", b"\xff\xfb": "MP3", b"\xff\xf3": "MP3", b"\xff\xf2": "MP3"}
"""Leading bytes of formats named in the refusal (anything else is "not WAV, AIFF or FLAC")."""


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty, wrong rate, non-finite samples. One line."""


class MicUnavailable(AudioError):
    """The microphone cannot be opened: no such device, busy, unplugged, unsupported settings.

    Only these errors make the daemon retry the device; any other exception is a bug (a crash
    that systemd restarts), not a reason to wait for a microphone."""


def check_rate(rate_hz: int, source: str) -> None:
    """Raise :class:`AudioError` unless ``rate_hz`` is within :data:`MIN_RATE_HZ`..:data:`MAX_RATE_HZ`."""
    if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
        raise AudioError(f"{source}: expected a sample rate of {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz, got {rate_hz} Hz")


def rate_ratio(from_hz: int, to_hz: int) -> tuple[int, int]:
    """``(up, down)`` in lowest terms with ``from_hz * up / down == to_hz``, or the nearest fraction
    with terms <= :data:`MAX_RATIO_TERM` when the exact one has larger terms."""
    ratio = Fraction(int(to_hz), int(from_hz))
    if max(ratio.numerator, ratio.denominator) > MAX_RATIO_TERM:
        approx = ratio.limit_denominator(MAX_RATIO_TERM)
        if approx.numerator > MAX_RATIO_TERM:  # upsampling by a large ratio: bound the numerator instead
            approx = 1 / (1 / ratio).limit_denominator(MAX_RATIO_TERM)
        logger.debug("resampling %d Hz to %d Hz with ratio %s instead of %s (%.4f %% off)", from_hz, to_hz,
                     approx, ratio, 100 * abs(float(approx / ratio) - 1))
        ratio = approx
    return ratio.numerator, ratio.denominator


def resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Resample 1-D float samples with ``scipy.signal.resample_poly``; float32, ``ceil(n * to / from)`` samples."""
    if from_hz == to_hz:
        return np.asarray(samples, dtype=np.float32)
    import scipy.signal  # imported on first use: it is slow to import, and 16 kHz input never needs it

    up, down = rate_ratio(from_hz, to_hz)
    return scipy.signal.resample_poly(np.asarray(samples, dtype=np.float32), up, down).astype(np.float32)


def to_mono(block: np.ndarray) -> np.ndarray:
    """``(n,)`` or ``(n, channels)`` -> float32 ``(n,)``, the mean of the channels."""
    block = np.asarray(block, dtype=np.float32)
    return block if block.ndim == 1 else block.mean(axis=1, dtype=np.float32)


def check_samples(samples: np.ndarray, source: str) -> None:
    """Raise :class:`AudioError` for NaN/inf samples; log a warning for clipping."""
    if not np.all(np.isfinite(samples)):
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise AudioError(f"{source}: expected finite samples, got {bad} NaN/inf")
    clipped = int(np.count_nonzero(np.abs(samples) >= CLIPPING_LEVEL))
    if clipped:
        logger.warning("%s: %d samples at full scale (clipping); emotion scores may suffer", source, clipped)


def sniff_format(path: Path) -> str:
    """The format of a file from its first bytes (:data:`FILE_MAGIC`), before libsndfile opens it.

    :raises AudioError: for a file that is not WAV, AIFF or FLAC (named when known: MP3, Ogg).
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise AudioError(f"{path}: cannot read ({exc.strerror})") from None
    if head in FILE_MAGIC:
        return FILE_MAGIC[head]
    known = next((name for magic, name in REFUSED_MAGIC.items() if head.startswith(magic)), None)
    raise AudioError(f"{path}: expected a WAV, AIFF or FLAC file, got {known or 'another format'}"
                     f"{' (MP3 and Ogg are not supported: convert with e.g. sox or ffmpeg)' if known else ''}")


def open_audio(path: str | Path) -> soundfile.SoundFile:
    """Open a WAV, AIFF or FLAC file with soundfile at a sample rate in 8..384 kHz.

    :raises AudioError: if missing, not WAV/AIFF/FLAC, unreadable, empty, or at a refused rate.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    sniff_format(path)
    try:
        handle = soundfile.SoundFile(str(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"{path}: not a readable audio file ({str(exc).splitlines()[0]})") from None
    if handle.frames == 0:
        handle.close()
        raise AudioError(f"{path}: expected audio samples, got an empty file")
    try:
        check_rate(handle.samplerate, str(path))
    except AudioError:
        handle.close()
        raise
    return handle


def _read_block(handle: soundfile.SoundFile, frames: int, path: Path) -> np.ndarray:
    try:
        block = handle.read(frames, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{path}: truncated or corrupt audio ({exc})") from None
    samples = to_mono(block)
    check_samples(samples, str(path))
    return samples


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a whole file as mono float32 in [-1, 1] (channels averaged) and its rate in Hz.

    Raises :class:`AudioError` for a missing, unreadable, empty or non-finite file.
    """
    with open_audio(path) as handle:
        return _read_block(handle, -1, Path(path)), int(handle.samplerate)


def _check_rate(path: Path, rate_hz: int, target_rate_hz: int) -> None:
    if rate_hz < target_rate_hz:
        raise AudioError(
            f"{path}: expected a sample rate of at least {target_rate_hz} Hz, got {rate_hz} Hz "
            f"(it lacks the band above {rate_hz // 2} Hz that the model uses)"
        )


def file_blocks(path: str | Path, target_rate_hz: int, block_s: float = FILE_BLOCK_S) -> Iterator[np.ndarray]:
    """Mono float32 blocks of a file resampled to ``target_rate_hz`` (the last from the resampler's flush).

    Reads ``block_s`` seconds at a time, so memory stays bounded. Raises :class:`AudioError` as
    :func:`load_audio` does, possibly after yielding some blocks (a truncated file).
    """
    path = Path(path)
    with open_audio(path) as handle:
        _check_rate(path, handle.samplerate, target_rate_hz)
        resampler = StreamingResampler(handle.samplerate, target_rate_hz)
        block_frames = max(1, round(block_s * handle.samplerate))
        while True:
            samples = _read_block(handle, block_frames, path)
            if samples.size == 0:
                break
            yield resampler.process(samples)
        yield resampler.flush()


def load_audio(path: str | Path, target_rate_hz: int) -> np.ndarray:
    """:func:`read_audio`, resampled to ``target_rate_hz``; float32 ``(n,)``.

    Raises :class:`AudioError` also for a file below ``target_rate_hz``: upsampling cannot put
    back the band the model listens to (an 8 kHz telephone recording has nothing above 4 kHz).
    """
    samples, rate = read_audio(path)
    _check_rate(Path(path), rate, target_rate_hz)
    return resample(samples, rate, target_rate_hz)


class StreamingResampler:
    """``resample_poly`` over a stream fed in blocks of any size.

    Input is consumed in groups of ``down`` samples (each gives ``up`` output samples); every
    ``resample_poly`` call gets ``context`` input samples on both sides (more than the filter's
    half length), so outputs equal those of the whole signal. Output lags input by ``context``
    samples (about 0.6 ms at 48 kHz). ``flush()`` returns the rest at the end of the stream.
    """

    def __init__(self, from_hz: int, to_hz: int) -> None:
        self.from_hz, self.to_hz = int(from_hz), int(to_hz)
        self.up, self.down = rate_ratio(self.from_hz, self.to_hz)
        # resample_poly's default filter has half-length 10 * max(up, down) taps at the upsampled rate
        half_input = math.ceil(10 * max(self.up, self.down) / self.up) + 1
        self.context = math.ceil(half_input / self.down) * self.down  # a multiple of down keeps the phase
        self.reset()

    def reset(self) -> None:
        self._buffer = np.zeros(self.context, dtype=np.float32)  # left context: zeros before the stream
        self._position = self.context  # index in _buffer of the first sample not yet resampled
        self._total_in = 0
        self._total_out = 0

    @property
    def passthrough(self) -> bool:
        return self.up == self.down

    def process(self, block: np.ndarray) -> np.ndarray:
        x = np.asarray(block, dtype=np.float32)
        if self.passthrough:
            return x
        self._total_in += x.size
        self._buffer = np.concatenate([self._buffer, x])
        ready = (self._buffer.size - self._position - self.context) // self.down * self.down
        if ready <= 0:
            return np.zeros(0, dtype=np.float32)
        return self._emit(ready, self._buffer.size - self._position - ready)

    def flush(self) -> np.ndarray:
        """The remaining output, as if the stream were followed by zeros (as ``resample_poly`` pads)."""
        if self.passthrough:
            return np.zeros(0, dtype=np.float32)
        remaining_out = math.ceil(self._total_in * self.up / self.down) - self._total_out
        if remaining_out <= 0:
            return np.zeros(0, dtype=np.float32)
        pending = self._buffer.size - self._position
        groups = math.ceil(pending / self.down)
        self._buffer = np.concatenate([self._buffer, np.zeros(groups * self.down - pending + self.context, np.float32)])
        out = self._emit(groups * self.down, self.context)
        return out[:remaining_out]

    def _emit(self, n_in: int, right: int) -> np.ndarray:
        start = self._position - self.context
        segment = self._buffer[start : self._position + n_in + min(right, self.context)]
        import scipy.signal  # see resample()

        y = scipy.signal.resample_poly(segment, self.up, self.down)
        first = self.context * self.up // self.down
        out = y[first : first + n_in * self.up // self.down].astype(np.float32)
        self._position += n_in
        keep_from = self._position - self.context
        self._buffer = self._buffer[keep_from:]
        self._position = self.context
        self._total_out += out.size
        return out


class MicSource:
    """A sounddevice input stream whose callback only copies each block into a queue.

    The device is opened at ``audio.sample_rate_hz`` if set, else at the model's rate if the
    device supports it, else at its default rate (most USB microphones: 44.1/48 kHz).
    ``audio`` is an ``edge.settings.AudioSettings`` (``device``, ``sample_rate_hz``, ``block_ms``).

    :raises OSError: from the constructor if PortAudio cannot be loaded (an installation problem).
    """

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
