"""Audio sources: files and the microphone, as mono float32 at the model's sample rate.

Resampling uses ``scipy.signal.resample_poly`` (polyphase FIR, Kaiser window, zero-padded at the
ends). :class:`StreamingResampler` applies it to a stream block by block with enough context that
its output equals ``resample_poly`` of the whole signal (to float rounding).
"""

from __future__ import annotations

import logging
import math
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


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty, wrong rate, non-finite samples. One line."""


def rate_ratio(from_hz: int, to_hz: int) -> tuple[int, int]:
    """``(up, down)`` in lowest terms with ``from_hz * up / down == to_hz``."""
    ratio = Fraction(int(to_hz), int(from_hz))
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


def open_audio(path: str | Path) -> soundfile.SoundFile:
    """Open a WAV/FLAC/OGG file with soundfile; raises :class:`AudioError` if missing, unreadable or empty."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        handle = soundfile.SoundFile(str(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"{path}: not a readable audio file ({str(exc).splitlines()[0]})") from None
    if handle.frames == 0:
        handle.close()
        raise AudioError(f"{path}: expected audio samples, got an empty file")
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
