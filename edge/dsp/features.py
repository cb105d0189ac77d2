"""MFCC features in the python_speech_features convention, vectorised with numpy/scipy.

The pipeline, per frame (python_speech_features 0.6, ``base.mfcc``; Davis & Mermelstein 1980):

0. with ``remove_dc_offset``, each frame's mean is subtracted from it before pre-emphasis and the
   window (Kaldi's ``--remove-dc-offset``, ``ProcessWindow`` in ``src/feat/feature-window.cc``;
   see :attr:`FeatureParams.remove_dc_offset` for how it meets the stream's pre-emphasis);
1. pre-emphasis ``y[n] = x[n] - a * x[n-1]`` on the whole stream (``a`` = ``preemphasis``;
   the sample before the first is taken as 0, so ``y[0] = x[0]`` as in ``sigproc.preemphasis``);
2. framing: frames of ``frame_length`` samples every ``hop_length`` samples. Unlike
   python_speech_features, only *complete* frames are produced (it zero-pads a last partial
   frame); a stream therefore yields ``1 + (n - frame_length) // hop_length`` frames;
3. window: ``scipy.signal.get_window(window, frame_length, fftbins=True)`` (periodic Hamming by
   default, the DFT-even form used for spectral analysis; python_speech_features defaults to a
   rectangular window and takes any ``winfunc``);
4. power spectrum ``|rfft(frame, n_fft)|**2 / n_fft`` (``sigproc.powspec``);
5. mel filterbank: ``n_mels`` triangular filters between ``low_hz`` and ``high_hz``, centres
   equally spaced on the mel scale ``2595 * log10(1 + f / 700)`` (O'Shaughnessy 1987) and
   rounded down to FFT bins as ``floor((n_fft + 1) * f / sample_rate_hz)``
   (``base.get_filterbanks``);
6. natural log, with exact zeros (digital silence) replaced by float64 machine epsilon;
7. DCT-II, orthonormal, first ``n_mfcc`` coefficients (the matrix of ``scipy.fft.dct(type=2,
   norm="ortho")``, as ``base.mfcc`` uses it);
8. sinusoidal liftering ``1 + (L / 2) * sin(pi * n / L)`` with ``L = lifter``
   (``base.lifter``; Juang, Rabiner & Wilpon 1987);
9. with ``append_energy``, coefficient 0 is replaced by the log of the frame's total power
   (sum of the power spectrum), as python_speech_features' ``appendEnergy=True``;
10. with ``pitch``, two prosodic columns follow the MFCCs (:func:`pitch_features`): the frame's
    fundamental frequency as ``log2(F0 / 100 Hz)`` and its clarity (the peak of the normalised
    squared difference function, McLeod & Wyvill 2005), both from the same pre-emphasised frame.

Everything is computed in float32 (spectra in complex64); agreement with python_speech_features
(float64) is within 1e-3 absolute on speech, see ``tests/test_features.py``.

Streaming: :class:`StreamingMFCC` keeps the unconsumed tail of the signal and the sample before it
(for pre-emphasis), so audio fed in chunks of any size gives the same frames as the whole signal at
once, and every frame is computed exactly once.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, fields

import numpy as np

# numpy's symmetric windows of length N + 1 without the last sample are the periodic (DFT-even)
# windows of scipy.signal.get_window(name, N, fftbins=True); other names go to scipy.signal,
# imported only then (it takes ~0.5 s to import on a Raspberry Pi, which would delay READY=1).
_NUMPY_WINDOWS = {"hamming": np.hamming, "hann": np.hanning, "hanning": np.hanning, "blackman": np.blackman,
                  "boxcar": np.ones, "rectangular": np.ones, "ones": np.ones}

#: Long signals are processed this many frames at a time (numpy's FFT slows down ~3x per frame
#: on batches that do not fit in cache).
BLOCK_FRAMES = 128

#: The columns ``pitch=True`` appends after the MFCCs, in order.
PITCH_FEATURES = ("log2_f0_re_100hz", "clarity")

#: A peak of the normalised squared difference function within this fraction of the highest one
#: is taken when it comes first (a shorter period): McLeod & Wyvill's ``k`` (2005, section 5), against
#: octave errors.
PITCH_PEAK_RATIO = 0.9

#: Replaces exact zeros before the log (python_speech_features uses ``numpy.finfo(float).eps``).
LOG_FLOOR = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class FeatureParams:
    """Every parameter of the MFCC front end; travels in the model manifest under ``features``.

    Sample counts are derived from these (``frame_length``, ``hop_length``), never hard-coded.
    ``mean`` and ``std`` (one value per coefficient, in the units of the MFCCs) are the
    normalisation statistics of the training set, applied before the model; empty until a
    trainer fills them.
    """

    sample_rate_hz: int = 16000
    window_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    n_mels: int = 40
    n_mfcc: int = 40
    low_hz: float = 0.0
    high_hz: float = 8000.0
    preemphasis: float = 0.97
    lifter: int = 22
    window: str = "hamming"
    append_energy: bool = True
    mean: tuple[float, ...] = field(default=(), repr=False)
    std: tuple[float, ...] = field(default=(), repr=False)
    adapt_time_constant_s: float = 0.0
    """Time constant, in seconds of *speech*, of the normalisation statistics that adapt on the device
    (:class:`AdaptiveNormalizer`); 0 = the fixed training ``mean``/``std`` only."""
    adapt_prior_s: float = 10.0
    """Weight, in seconds of speech, of the training statistics at start-up (the warm-up: after
    ``adapt_prior_s`` of speech the device's own speech weighs as much as the prior)."""
    pitch: bool = False
    """Append :data:`PITCH_FEATURES` (``log2(F0 / 100 Hz)`` and clarity) to every frame's MFCCs."""
    pitch_min_hz: float = 80.0
    """Lowest fundamental frequency searched; two of its periods must fit in a frame."""
    pitch_max_hz: float = 500.0
    """Highest fundamental frequency searched."""
    remove_dc_offset: bool = False
    """Subtract each frame's mean (over its ``frame_length`` raw samples) before pre-emphasis and the
    window, as Kaldi's ``--remove-dc-offset`` (on by default in Kaldi; ``ProcessWindow`` in
    ``src/feat/feature-window.cc``, Povey et al. 2011), so a microphone's DC offset reaches neither the
    spectrum nor the log energy (coefficient 0). As without it, the sample before a frame in pre-emphasis
    is the stream's previous sample (Kaldi takes the frame's first), with the frame's mean subtracted too;
    the stream's first sample is its own predecessor (Kaldi's convention), so a constant offset is removed
    from every frame exactly (:func:`dc_removed_frames`). Per frame, so chunk-invariant. False (the default,
    and a manifest without the field) keeps the front end the models before it were trained with;
    ``ser-train fit`` turns it on."""

    def __post_init__(self) -> None:
        problems = []
        if self.sample_rate_hz <= 0:
            problems.append(f"sample_rate_hz: expected > 0, got {self.sample_rate_hz}")
        if not 0 < self.hop_ms <= self.window_ms:
            problems.append(f"hop_ms: expected 0 < hop_ms <= window_ms ({self.window_ms}), got {self.hop_ms}")
        if self.frame_length > self.n_fft:
            problems.append(f"n_fft: expected >= frame length {self.frame_length} samples, got {self.n_fft}")
        if not 0 < self.n_mfcc <= self.n_mels:
            problems.append(f"n_mfcc: expected 1..n_mels ({self.n_mels}), got {self.n_mfcc}")
        if not 0 <= self.low_hz < self.high_hz <= self.sample_rate_hz / 2:
            problems.append(
                f"low_hz/high_hz: expected 0 <= low < high <= {self.sample_rate_hz / 2}, "
                f"got {self.low_hz}/{self.high_hz}"
            )
        if not 0 <= self.preemphasis < 1:
            problems.append(f"preemphasis: expected 0 <= a < 1, got {self.preemphasis}")
        if self.lifter < 0:
            problems.append(f"lifter: expected >= 0, got {self.lifter}")
        if self.pitch and not (0 < self.pitch_min_hz < self.pitch_max_hz < self.sample_rate_hz / 4
                               and 2 * self.sample_rate_hz / self.pitch_min_hz <= self.frame_length):
            problems.append(
                f"pitch_min_hz/pitch_max_hz: expected 2 / pitch_min_hz <= window ({self.window_ms:g} ms) and "
                f"pitch_min_hz < pitch_max_hz < {self.sample_rate_hz / 4:g}, got {self.pitch_min_hz}/{self.pitch_max_hz}"
            )
        if len(self.mean) != len(self.std) or len(self.mean) not in (0, self.n_features):
            problems.append(
                f"mean/std: expected {self.n_features} values each, got {len(self.mean)}/{len(self.std)}"
            )
        elif any(s <= 0 or not math.isfinite(s) for s in self.std):
            problems.append("std: expected finite values > 0")
        elif not all(math.isfinite(m) for m in self.mean):
            problems.append("mean: expected finite values")
        if not (math.isfinite(self.adapt_time_constant_s) and 0 <= self.adapt_time_constant_s <= 86400):
            problems.append(f"adapt_time_constant_s: expected 0..86400 s, got {self.adapt_time_constant_s}")
        if not (math.isfinite(self.adapt_prior_s) and 0 < self.adapt_prior_s <= 86400):
            problems.append(f"adapt_prior_s: expected 0 < s <= 86400, got {self.adapt_prior_s}")
        try:
            analysis_window(self.window, 8)
        except ValueError as exc:
            problems.append(f"window: expected a scipy.signal.get_window name, got {self.window!r} ({exc})")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def n_features(self) -> int:
        """Columns per frame: ``n_mfcc``, plus the two :data:`PITCH_FEATURES` with ``pitch``."""
        return self.n_mfcc + (len(PITCH_FEATURES) if self.pitch else 0)

    @property
    def frame_length(self) -> int:
        """Samples per frame (``window_ms`` at ``sample_rate_hz``, rounded half up)."""
        return int(math.floor(self.window_ms * self.sample_rate_hz / 1000 + 0.5))

    @property
    def hop_length(self) -> int:
        """Samples between the starts of consecutive frames."""
        return int(math.floor(self.hop_ms * self.sample_rate_hz / 1000 + 0.5))

    @property
    def hop_s(self) -> float:
        return self.hop_length / self.sample_rate_hz

    def n_frames(self, n_samples: int) -> int:
        """Complete frames in a signal of ``n_samples`` samples (0 if shorter than one frame)."""
        if n_samples < self.frame_length:
            return 0
        return 1 + (n_samples - self.frame_length) // self.hop_length

    def frame_time_s(self, index: int) -> float:
        """Start of frame ``index``, in seconds from the start of the stream."""
        return index * self.hop_length / self.sample_rate_hz

    def frame_end_s(self, index: int) -> float:
        """End (exclusive) of frame ``index``, in seconds from the start of the stream."""
        return (index * self.hop_length + self.frame_length) / self.sample_rate_hz

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["mean"] = list(self.mean)
        out["std"] = list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> FeatureParams:
        """Build from a manifest's ``features`` object; raises ``ValueError`` on unknown or bad keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown feature parameter(s): {', '.join(unknown)}")
        kwargs = dict(data)
        for key in ("mean", "std"):
            if key in kwargs:
                kwargs[key] = tuple(float(v) for v in kwargs[key])
        return cls(**kwargs)


def hz_to_mel(hz):
    """Mel scale of O'Shaughnessy (1987), as python_speech_features: ``2595 log10(1 + f/700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def filter_edges(n_mels: int, n_fft: int, sample_rate_hz: int, low_hz: float, high_hz: float) -> np.ndarray:
    """FFT bins of the ``n_mels + 2`` triangle edges: ``floor((n_fft + 1) * f / sample_rate_hz)`` for
    ``f`` equally spaced on the mel scale from ``low_hz`` to ``high_hz`` (``base.get_filterbanks``)."""
    mel_points = np.linspace(hz_to_mel(low_hz), hz_to_mel(high_hz), n_mels + 2)
    return np.floor((n_fft + 1) * mel_to_hz(mel_points) / sample_rate_hz).astype(int)


@functools.lru_cache(maxsize=16)
def mel_filterbank(n_mels: int, n_fft: int, sample_rate_hz: int, low_hz: float, high_hz: float) -> np.ndarray:
    """Triangular mel filterbank, python_speech_features' ``get_filterbanks`` convention.

    Returns a read-only float32 array of shape ``(n_fft // 2 + 1, n_mels)`` (transposed, ready for
    ``power_spectrum @ filterbank``).
    """
    bins = filter_edges(n_mels, n_fft, sample_rate_hz, low_hz, high_hz)
    bank = np.zeros((n_mels, n_fft // 2 + 1), dtype=np.float64)
    for j in range(n_mels):
        left, centre, right = bins[j], bins[j + 1], bins[j + 2]
        for i in range(left, centre):
            bank[j, i] = (i - left) / (centre - left)
        for i in range(centre, right):
            bank[j, i] = (right - i) / (right - centre)
    out = np.ascontiguousarray(bank.T, dtype=np.float32)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=16)
def _triangle_halves(n_mels: int, n_fft: int, sample_rate_hz: int, low_hz: float, high_hz: float):
    """The filterbank of :func:`mel_filterbank` as two sets of contiguous bin runs.

    The rising halves of the triangles tile the FFT bins ``[bins[0], bins[n_mels])``, one run per
    filter, and so do the falling halves over ``[bins[1], bins[n_mels + 1])``. Returns, for each
    half, ``(lo, hi, weights (hi - lo, 1) float32, run starts relative to lo, filter of each run)``,
    empty runs left out. :func:`mel_energies` sums each run with ``np.add.reduceat``.
    """
    bank = mel_filterbank(n_mels, n_fft, sample_rate_hz, low_hz, high_hz).T.astype(np.float64)  # (n_mels, bins)
    edges = filter_edges(n_mels, n_fft, sample_rate_hz, low_hz, high_hz)
    halves = []
    for offset in (0, 1):  # rising: [edges[j], edges[j+1]); falling: [edges[j+1], edges[j+2])
        lo, hi = int(edges[offset]), int(edges[n_mels + offset])
        weights = np.zeros(hi - lo, dtype=np.float32)
        starts, filters = [], []
        for j in range(n_mels):
            a, b = int(edges[j + offset]), int(edges[j + offset + 1])
            if b > a:
                weights[a - lo : b - lo] = bank[j, a:b]
                starts.append(a - lo)
                filters.append(j)
        halves.append((lo, hi, weights[:, None], np.array(starts), np.array(filters)))
    return tuple(halves)


def mel_energies(power_t: np.ndarray, params: FeatureParams) -> np.ndarray:
    """Mel filterbank energies of power spectra laid out one frame per *column*.

    ``power_t``: float32 ``(n_fft // 2 + 1, n_frames)``. Returns float32 ``(n_mels, n_frames)``,
    equal to ``(power_t.T @ mel_filterbank(...)).T`` up to float rounding. Each frame's sums are
    computed the same way whatever the number of frames (``reduceat`` adds rows in a fixed order),
    unlike BLAS, whose kernels depend on the batch size; that is what makes streaming features
    bit-identical for any chunking. Using only the non-zero weights it is also ~2x faster.
    """
    out = np.zeros((params.n_mels, power_t.shape[1]), dtype=np.float32)
    for lo, hi, weights, starts, filters in _triangle_halves(
        params.n_mels, params.n_fft, params.sample_rate_hz, params.low_hz, params.high_hz
    ):
        out[filters] += np.add.reduceat(power_t[lo:hi] * weights, starts, axis=0)
    return out


@functools.lru_cache(maxsize=16)
def lifted_dct_matrix(n_mels: int, n_mfcc: int, lifter: int) -> np.ndarray:
    """Orthonormal DCT-II (the first ``n_mfcc`` rows) with the lifter folded in, as a matrix.

    Returns read-only float32 ``(n_mels, n_mfcc)`` with ``log_mel @ matrix`` equal to
    ``lifter(scipy.fft.dct(log_mel, type=2, norm="ortho")[:, :n_mfcc])``:
    ``D[n, k] = s_k cos(pi k (2n + 1) / (2 N))``, ``s_0 = sqrt(1/N)``, ``s_k = sqrt(2/N)``.
    """
    n = np.arange(n_mels)[:, None]
    k = np.arange(n_mfcc)[None, :]
    matrix = np.sqrt(2.0 / n_mels) * np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels))
    matrix[:, 0] = np.sqrt(1.0 / n_mels)
    out = (matrix * lifter_weights(n_mfcc, lifter)).astype(np.float32)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=16)
def lifter_weights(n_mfcc: int, lifter: int) -> np.ndarray:
    """Sinusoidal lifter ``1 + (L/2) sin(pi n / L)``, n = 0..n_mfcc-1 (ones if ``lifter`` is 0).

    Returns a read-only float32 array of shape ``(n_mfcc,)``.
    """
    n = np.arange(n_mfcc)
    weights = 1.0 + (lifter / 2.0) * np.sin(np.pi * n / lifter) if lifter > 0 else np.ones(n_mfcc)
    out = weights.astype(np.float32)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=16)
def analysis_window(name: str, frame_length: int) -> np.ndarray:
    """``scipy.signal.get_window(name, frame_length, fftbins=True)`` as read-only float32.

    Raises ``ValueError`` for a name scipy does not know.
    """
    if name in _NUMPY_WINDOWS:
        window = _NUMPY_WINDOWS[name](frame_length + 1)[:-1]
    else:
        import scipy.signal

        window = scipy.signal.get_window(name, frame_length, fftbins=True)
    out = np.asarray(window).astype(np.float32)
    out.flags.writeable = False
    return out


def preemphasize(signal: np.ndarray, coefficient: float, previous: float = 0.0) -> np.ndarray:
    """Pre-emphasis ``y[n] = x[n] - a x[n-1]``, with ``x[-1] = previous``.

    ``signal``: 1-D float array. Returns float32 of the same length.
    """
    x = np.asarray(signal, dtype=np.float32)
    out = np.empty_like(x)
    if x.size:
        a = np.float32(coefficient)
        out[0] = x[0] - a * np.float32(previous)
        np.subtract(x[1:], a * x[:-1], out=out[1:])
    return out


def _framed(samples: np.ndarray, params: FeatureParams, n_frames: int, length: int | None = None) -> np.ndarray:
    """A read-only strided view of contiguous ``samples``, row i = ``samples[i*hop : i*hop + length]``
    (``length`` defaults to ``frame_length``; no copy): ``(n_frames, length)``."""
    step = samples.strides[0]
    return np.lib.stride_tricks.as_strided(samples, shape=(n_frames, length or params.frame_length),
                                           strides=(params.hop_length * step, step), writeable=False)


def dc_removed_frames(samples: np.ndarray, params: FeatureParams, previous: float) -> np.ndarray:
    """Every complete frame of raw ``samples`` with its mean removed, then pre-emphasised: float32
    ``(params.n_frames(len(samples)), frame_length)``.

    Frame ``i`` is ``x = samples[i*hop : i*hop + frame_length]``, ``m`` its mean and ``p`` the sample
    before it (``previous`` for the first frame of ``samples``); the result is
    ``y[j] = (x[j] - m) - a (x[j-1] - m)`` with ``x[-1] = p`` (Kaldi's ``ProcessWindow`` order: DC offset,
    then pre-emphasis, then the window). Computed in float64 one frame per row, so a constant offset
    leaves no float32 rounding behind and every frame's value is the same for any chunking; cast to float32
    once small.
    """
    x = np.asarray(samples, dtype=np.float64)
    n_frames = params.n_frames(x.shape[0])
    with_previous = np.concatenate([[float(previous)], x])
    rows = np.array(_framed(with_previous, params, n_frames, params.frame_length + 1))  # (n, 1 + frame_length), a copy
    rows -= (rows[:, 1:].sum(axis=1) / params.frame_length)[:, None]
    return (rows[:, 1:] - params.preemphasis * rows[:, :-1]).astype(np.float32)


def mfcc_from_samples(samples: np.ndarray, params: FeatureParams, previous: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """MFCCs and log energy of every complete frame of raw ``samples``; ``previous`` is the sample
    before the first (pre-emphasis: 0 at a stream's start, see :func:`stream_start_previous`).

    ``samples``: 1-D float, at ``params.sample_rate_hz``. Returns ``(mfcc, log_energy)``:
    float32 of shapes ``(n, params.n_features)`` (the MFCCs, then :data:`PITCH_FEATURES` with
    ``pitch``) and ``(n,)`` with ``n = params.n_frames(len(samples))``.
    ``log_energy`` is the natural log of the frame's total power (python_speech_features'
    energy term), used by the VAD whatever ``append_energy`` says.
    """
    x = np.asarray(samples, dtype=np.float32)
    n_frames = params.n_frames(x.shape[0])
    if n_frames == 0:
        return np.zeros((0, params.n_features), dtype=np.float32), np.zeros(0, dtype=np.float32)
    if n_frames > BLOCK_FRAMES:  # blocks that stay in cache; every frame's value is the same either way
        parts = []
        for first in range(0, n_frames, BLOCK_FRAMES):
            start = first * params.hop_length
            block = x[start : (first + BLOCK_FRAMES - 1) * params.hop_length + params.frame_length]
            parts.append(mfcc_from_samples(block, params, float(x[start - 1]) if start else previous))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    if params.remove_dc_offset:
        frames = dc_removed_frames(x, params, previous)
    else:
        # a read-only strided view of the pre-emphasised samples, frame i = emphasized[i*hop : i*hop + frame_length]
        frames = _framed(preemphasize(x, params.preemphasis, previous), params, n_frames)
    # window into a zero-padded (n, n_fft) buffer: pocketfft is ~2x faster than with rfft(n=n_fft)
    padded = np.zeros((n_frames, params.n_fft), dtype=np.float32)
    np.multiply(frames, analysis_window(params.window, params.frame_length),
                out=padded[:, : params.frame_length])
    # numpy's pocketfft, not scipy.fft: importing scipy.fft costs ~30 MB of resident memory on the device
    spectrum = np.fft.rfft(padded, axis=1)  # complex64
    power = spectrum.real**2
    power += spectrum.imag**2
    power *= np.float32(1.0 / params.n_fft)
    power_t = np.ascontiguousarray(power.T)  # (bins, frames): the mel sums below add whole rows
    mel = mel_energies(power_t, params)
    np.maximum(mel, LOG_FLOOR, out=mel, where=mel == 0)
    np.log(mel, out=mel)
    # einsum, not ``@``: BLAS kernels depend on the batch size, einsum's loop does not (chunk invariance)
    coefficients = np.einsum("kf,km->fm", mel, lifted_dct_matrix(params.n_mels, params.n_mfcc, params.lifter))
    # reduceat adds rows in order for any number of frames; sum(axis=0) would switch to pairwise
    # summation for a single frame and break chunk invariance in the last bit
    energy = np.add.reduceat(power_t, [0], axis=0)[0]
    energy[energy == 0] = LOG_FLOOR
    log_energy = np.log(energy)
    if params.append_energy:
        coefficients[:, 0] = log_energy
    if params.pitch:
        coefficients = np.concatenate([coefficients, pitch_features(frames, params)], axis=1)
    return coefficients, log_energy


def _fft_size(n: int) -> int:
    """The smallest ``m 2^k >= n`` with ``m`` in 1, 3, 5: sizes pocketfft transforms fast (640 points
    cost a quarter of 1024 here, and less than 625 = 5^4)."""
    return min(m << max(math.ceil(math.log2(max(n, 1) / m)), 0) for m in (1, 3, 5))


def pitch_features(frames: np.ndarray, params: FeatureParams) -> np.ndarray:
    """Fundamental frequency and clarity of each frame, by the McLeod pitch method (McLeod & Wyvill
    2005, "A smarter way to find pitch", ICMC), which suits frames as short as two periods.

    The normalised squared difference function of a frame ``x`` of ``N`` samples,
    ``n(t) = 2 r(t) / m(t)`` with ``r(t) = sum_j x[j] x[j+t]`` and ``m(t) = sum_j x[j]^2 + x[j+t]^2``
    (``j`` over the ``N - t`` overlapping samples), lies in [-1, 1] and is 1 at the period of a
    periodic frame. Over lags ``sample_rate / pitch_max_hz .. sample_rate / pitch_min_hz``, the first
    local maximum within :data:`PITCH_PEAK_RATIO` of the highest is the period (the highest when
    there is no local maximum), refined by a parabola through it and its neighbours.
    ``r`` comes from one zero-padded FFT per frame (numpy), ``m`` from cumulative sums; every frame is
    computed on its own, so streaming chunks give the same values.

    ``frames``: float ``(n, frame_length)`` pre-emphasised samples. Returns float32 ``(n, 2)``:
    ``log2(F0 / 100 Hz)`` and the clarity ``n`` at the peak (near 1 voiced, near 0 for noise,
    0 for digital silence, where F0 reads as ``pitch_max_hz``).
    """
    x = np.asarray(frames, dtype=np.float32)
    n, length = x.shape
    rate = params.sample_rate_hz
    low = max(int(math.floor(rate / params.pitch_max_hz)), 2)
    high = int(math.ceil(rate / params.pitch_min_hz))
    size = _fft_size(length + high + 2)  # no circular wrap up to lag high + 1
    padded = np.zeros((n, size), dtype=np.float32)
    padded[:, :length] = x
    spectrum = np.fft.rfft(padded, axis=1)
    power = spectrum.real**2
    power += spectrum.imag**2
    lags = np.arange(low - 1, high + 2)
    r = np.fft.irfft(power, n=size, axis=1)[:, low - 1 : high + 2]
    squares = np.zeros((n, length + 1), dtype=np.float64)
    np.cumsum(np.square(x, dtype=np.float64), axis=1, out=squares[:, 1:])
    m = squares[:, length - lags] + (squares[:, length : length + 1] - squares[:, lags])
    nsdf = np.divide(2.0 * r, m, out=np.zeros(r.shape, dtype=np.float64), where=m > 1e-12)
    inner = nsdf[:, 1:-1]  # lags low..high
    peaks = (inner > nsdf[:, :-2]) & (inner >= nsdf[:, 2:]) & (inner > 0)
    best = np.where(peaks, inner, -np.inf).max(axis=1)
    chosen = peaks & (inner >= PITCH_PEAK_RATIO * best[:, None])
    index = np.where(chosen.any(axis=1), chosen.argmax(axis=1), inner.argmax(axis=1))
    rows = np.arange(n)
    a, b, c = nsdf[rows, index], nsdf[rows, index + 1], nsdf[rows, index + 2]
    curvature = a - 2.0 * b + c
    shift = np.divide(0.5 * (a - c), curvature, out=np.zeros(n), where=curvature < 0)
    shift = np.clip(shift, -0.5, 0.5)
    period = (low + index + shift).astype(np.float64)
    clarity = np.clip(b - 0.25 * (a - c) * shift, -1.0, 1.0)
    out = np.empty((n, 2), dtype=np.float32)
    out[:, 0] = np.log2(rate / period / 100.0)
    out[:, 1] = clarity
    return out


def mfcc(signal: np.ndarray, params: FeatureParams) -> np.ndarray:
    """MFCCs of a whole signal.

    ``signal``: 1-D float array of samples in [-1, 1] at ``params.sample_rate_hz`` (resample
    first with :mod:`edge.audio.resample`). Returns float32 of shape ``(n_frames, params.n_features)`` with
    ``n_frames = params.n_frames(len(signal))`` (complete frames only).
    Raises ``ValueError`` if ``signal`` is not 1-D.
    """
    return mfcc_with_energy(signal, params)[0]


def mfcc_with_energy(signal: np.ndarray, params: FeatureParams) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mfcc` plus each frame's log energy (natural log of total power), as the VAD uses it.

    Returns float32 ``(n_frames, n_features)`` and ``(n_frames,)``. Raises ``ValueError`` if not 1-D.
    """
    x = np.asarray(signal)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D signal, got shape {x.shape}")
    return mfcc_from_samples(x, params, stream_start_previous(x, params))


def stream_start_previous(signal: np.ndarray, params: FeatureParams) -> float:
    """The sample taken to precede a stream's first in pre-emphasis: 0 (python_speech_features), or with
    ``remove_dc_offset`` the first sample itself (Kaldi's convention), so that a constant offset is
    removed from the first frame too."""
    return float(signal[0]) if params.remove_dc_offset and len(signal) else 0.0


class StreamingMFCC:
    """MFCCs of a stream fed in chunks of any size; each frame is computed once.

    ``process(chunk)`` takes 1-D float samples in [-1, 1] at ``params.sample_rate_hz`` and returns
    ``(mfcc, log_energy)``, float32 ``(k, n_features)`` and ``(k,)``, for the ``k`` frames completed by
    this chunk (possibly 0). The concatenation of all outputs equals :func:`mfcc` of the
    concatenated input.
    ``frames_emitted`` counts frames so far; frame ``i`` starts at sample ``i * hop_length``.
    """

    def __init__(self, params: FeatureParams) -> None:
        self.params = params
        self.reset()

    def reset(self) -> None:
        """Forget all state: the next sample is sample 0 of a new stream."""
        self._previous: float | None = None  # the sample before the pending ones; None before the stream starts
        self._pending = np.zeros(0, dtype=np.float32)  # samples of frames not yet complete
        self.frames_emitted = 0

    def process(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(chunk, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"expected a 1-D chunk, got shape {x.shape}")
        if x.size:
            if self._previous is None:
                self._previous = stream_start_previous(x, self.params)
            self._pending = np.concatenate([self._pending, x]) if self._pending.size else x.copy()
        coefficients, log_energy = mfcc_from_samples(self._pending, self.params, self._previous or 0.0)
        if coefficients.shape[0]:
            consumed = coefficients.shape[0] * self.params.hop_length
            self._previous = float(self._pending[consumed - 1])
            self._pending = self._pending[consumed:].copy()
            self.frames_emitted += coefficients.shape[0]
        return coefficients, log_energy
