"""Sample-rate conversion: ``scipy.signal.resample_poly`` (polyphase FIR, Kaiser window, zero-padded
at the ends), for a whole signal (:func:`resample`) or a stream fed block by block
(:class:`StreamingResampler`, whose output equals ``resample_poly`` of the whole signal to float
rounding). The ratio is kept to terms of at most :data:`MAX_RATIO_TERM`, so the filter stays bounded.
"""

from __future__ import annotations

import logging
import math
from fractions import Fraction

import numpy as np

logger = logging.getLogger(__name__)

MAX_RATIO_TERM = 20000
"""Largest ``up`` or ``down`` of a resampling ratio. ``resample_poly``'s filter has
``20 * max(up, down) + 1`` taps (at most 400001 here: 3 MB), so an awkward rate (e.g. 383999 Hz
to 16 kHz: 16000/383999) would need millions; such ratios are replaced by the nearest fraction
with terms <= this (:meth:`fractions.Fraction.limit_denominator`), a rate error below 0.001 %.
Every usual rate (8, 11.025, 16, 22.05, 32, 44.1, 48, 88.2, 96, 176.4, 192, 384 kHz) and TESS's
24414 Hz (8000/12207) to 16 kHz is exact, so the features of the training corpora do not change."""


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
