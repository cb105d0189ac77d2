"""Speech gating: a frame-energy VAD with an adaptive noise floor, onset, hangover, a DC blocker
and a stationarity check.

Method: a frame is *active* when its energy exceeds both an absolute floor
(``min_energy_dbfs``) and the running noise-floor estimate by ``threshold_db``. The noise floor
follows the minimum of the frame energy at once and rises slowly with time constant
``noise_floor_rise_s`` (the minimum-statistics idea of R. Martin, "Noise power spectral density
estimation based on optimal smoothing and minimum statistics", IEEE TSAP 9(5), 2001, reduced to
one band). Speech starts after ``onset_ms`` of consecutive active frames and ends after
``hangover_ms`` without one (the hangover scheme of energy VADs such as ITU-T G.729 Annex B),
so the short pauses between words stay inside one utterance.

Two guards against what a plain energy VAD gets wrong:

* **DC offset.** The energy the VAD gates on (:class:`GatingEnergy`) is computed from the audio
  after a one-pole DC blocker ``y[n] = x[n] - x[n-1] + R y[n-1]`` (cut-off :data:`DC_BLOCKER_HZ`;
  J. O. Smith III, *Introduction to Digital Filters with Audio Applications*, "DC Blocker";
  R. Yates and R. Lyons, "DC Blocker Algorithms", IEEE Signal Processing Magazine 25(2), 2008),
  then the features' pre-emphasis, window and framing. A cheap USB microphone's DC offset would
  otherwise sit in every frame's energy as a floor that speech no longer clears by
  ``threshold_db``. The blocker touches only the gating; the MFCCs remove the offset per frame when
  the manifest's ``remove_dc_offset`` says so (:mod:`edge.dsp.features`), and then the blocker starts
  at rest on the stream's first sample (:meth:`GatingEnergy.initial_state`).
* **Stationary noise onsets.** The noise floor rises slowly (``noise_floor_rise_s``), so a fan or
  white noise that starts after silence would be "speech" for seconds. Speech energy is
  modulated at the syllable rate (about 4 Hz, e.g. T. Houtgast and H. J. M. Steeneken's modulation
  transfer function work, JASA 77(3), 1985): over half a second its frame energy varies by several
  dB (at least 1.9 dB standard deviation in the RAVDESS clips of ../shared/data), while stationary
  noise varies by well under 1 dB (0.6 dB for white noise with 25 ms frames). So when the last
  ``stationary_ms`` of an open utterance have a frame-energy standard deviation below
  ``stationary_db``, that stretch is noise: the utterance ends where it began (or is dropped when
  less than ``onset_ms`` came before it) and the noise floor jumps to its mean level. This is the
  long-term-variability idea of P. K. Ghosh, A. Tsiartas and S. Narayanan, "Robust voice activity
  detection using long-term signal variability", IEEE TASLP 19(3), 2011, reduced to one band.

Everything runs on frame indices (audio time), never the wall clock, so replaying the same
audio gives the same segments.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from edge.dsp.features import LOG_FLOOR, FeatureParams, analysis_window, preemphasize

DC_BLOCKER_HZ = 20.0
"""Cut-off of the DC blocker in front of the gating energy (below speech's lowest fundamental)."""


@dataclass(frozen=True)
class VadParams:
    threshold_db: float = 12.0
    """A frame is active when its energy exceeds the noise floor by this much (dB)."""
    min_energy_dbfs: float = -65.0
    """Frames quieter than this are never speech (dB relative to a full-scale sine)."""
    onset_ms: float = 50.0
    """Consecutive active audio needed to start an utterance."""
    hangover_ms: float = 400.0
    """Inactive audio that ends an utterance (pauses shorter than this stay inside it)."""
    noise_floor_rise_s: float = 5.0
    """Time constant with which the noise-floor estimate rises (it falls at once)."""
    stationary_ms: float = 500.0
    """Length of the stationarity check: the last this-many ms of an open utterance."""
    stationary_db: float = 1.0
    """An open utterance whose last ``stationary_ms`` vary less than this (standard deviation of the
    frame energy, dB) is stationary noise, not speech; 0 turns the check off."""

    def __post_init__(self) -> None:
        for name in ("threshold_db", "onset_ms", "hangover_ms", "noise_floor_rise_s", "stationary_ms"):
            if not getattr(self, name) > 0:
                raise ValueError(f"vad.{name}: expected > 0, got {getattr(self, name)}")
        if not self.stationary_db >= 0:
            raise ValueError(f"vad.stationary_db: expected >= 0 (0 = off), got {self.stationary_db}")


@functools.lru_cache(maxsize=8)
def full_scale_log_energy(params: FeatureParams) -> float:
    """Natural-log frame energy (as :func:`edge.dsp.features.mfcc_with_energy`) of a full-scale sine.

    Power spectrum ``|X|^2 / n_fft`` summed over the ``n_fft/2 + 1`` bins is, by Parseval, half
    the windowed frame's energy; a full-scale sine has mean square 1/2, so the reference is
    ``0.25 * sum(window**2)``. Pre-emphasis is ignored (it scales a tone by its frequency).
    """
    window = analysis_window(params.window, params.frame_length).astype(np.float64)
    return math.log(0.25 * float(np.sum(window**2)))


def log_energy_to_dbfs(log_energy: np.ndarray, params: FeatureParams) -> np.ndarray:
    """Frame log energies (natural log) to dB relative to a full-scale sine; float32."""
    return ((np.asarray(log_energy, dtype=np.float64) - full_scale_log_energy(params)) * (10 / math.log(10))).astype(
        np.float32
    )


class DCBlocker:
    """The one-pole DC blocker ``y[n] = x[n] - x[n-1] + pole * y[n-1]`` (``y[-1] = 0``; ``x[-1]`` as given
    to :meth:`reset`, 0 by default), streaming, in numpy alone.

    ``process(x)`` takes float ``(n,)`` samples and returns float64 ``(n,)``: the same values as
    ``scipy.signal.lfilter([1, -1], [1, -pole], x, zi=...)`` carried across calls (to ~1e-15 relative;
    the tests check 1e-12), without importing ``scipy.signal``, which costs ~80 MB of resident memory
    (scipy 1.17) on a device whose budget for the whole daemon is 60 MB.

    Method: the recursion is solved in closed form over blocks of :attr:`block` samples aligned on the
    stream's sample index: inside a block starting at ``b`` with ``y[b-1] = a``,
    ``y[b+j] = pole**(j+1) * (a + sum_{i<=j} pole**-(i+1) * d[b+i])`` with ``d[n] = x[n] - x[n-1]``; the
    block is short enough (``pole**-block <= e**4``) that the scaled sum loses no precision, and the
    running sum of a block a chunk ends in is carried into the next chunk. The sums are sequential
    (``numpy.cumsum``) and the blocks aligned on the stream, so the output is bit-identical for any
    chunking of the same stream.
    """

    def __init__(self, pole: float) -> None:
        if not 0 < pole < 1:
            raise ValueError(f"DC blocker pole: expected 0 < pole < 1, got {pole}")
        self.pole = pole
        self.block = max(16, int(4.0 / -math.log(pole)))
        exponents = np.arange(1, self.block + 1, dtype=np.float64)
        self._decay = pole**exponents  # pole**(j+1)
        self._gain = pole**-exponents  # pole**-(j+1)
        self.reset()

    def reset(self, x_previous: float = 0.0) -> None:
        """Start a new stream at rest (``y[-1] = 0``) with the input taken as ``x_previous`` before it."""
        self._x_previous = float(x_previous)  # x[n-1]
        self._anchor = 0.0  # y just before the current block
        self._sum = 0.0  # running scaled sum of the current block so far
        self._position = 0  # samples of the current block already processed

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        n = x.size
        if n == 0:
            return np.zeros(0)
        block, position = self.block, self._position
        d = np.empty(n)
        d[0] = x[0] - self._x_previous
        np.subtract(x[1:], x[:-1], out=d[1:])
        rows = -(-(position + n) // block)
        scaled = np.zeros(rows * block)
        scaled[position:position + n] = d * np.resize(np.roll(self._gain, -position), n)
        scaled[0] += self._sum  # position > 0: the slot is padding (0); else the sum is 0
        sums = np.cumsum(scaled.reshape(rows, block), axis=1)
        anchors = np.empty(rows)
        anchor, last = self._anchor, block - 1
        for row in range(rows):  # the block-to-block recursion: one scalar step per block
            anchors[row] = anchor
            anchor = float(self._decay[last] * (anchor + sums[row, last]))
        y = (self._decay * (anchors[:, None] + sums)).reshape(-1)[position:position + n]
        end = (position + n) % block
        self._position = end
        self._x_previous = float(x[-1])
        if end:
            self._anchor, self._sum = float(anchors[-1]), float(sums[-1, end - 1])
        else:
            self._anchor, self._sum = anchor, 0.0
        return y


class GatingEnergy:
    """Per-frame log energy for the VAD, from DC-blocked audio, in the features' framing.

    ``process(chunk)`` takes 1-D float samples at ``features.sample_rate_hz`` and returns float64
    ``(k,)``: the natural log of ``0.5 * sum((window * frame)**2)`` for the ``k`` frames completed
    by the chunk, where the frames are those of :class:`edge.dsp.features.StreamingMFCC` (same
    pre-emphasis, window, length and hop; so ``k`` equals its frame count for the same chunks) but
    of the signal after the DC blocker (:data:`DC_BLOCKER_HZ`, see the module docstring). Without
    a DC offset the values match the features' ``log_energy`` (Parseval: the one-sided power
    spectrum sums to half the frame's energy) to within the blocker's effect below 20 Hz.
    Chunk-invariant: any chunking of the same stream gives the same values.
    """

    def __init__(self, features: FeatureParams) -> None:
        self.features = features
        self.pole = math.exp(-2 * math.pi * DC_BLOCKER_HZ / features.sample_rate_hz)
        self._window = analysis_window(features.window, features.frame_length).astype(np.float64)
        self.dc_blocker = DCBlocker(self.pole)
        self.reset()

    def reset(self) -> None:
        self.dc_blocker.reset()
        self._fresh = True  # before the stream's first sample: the blocker's rest state is set from it
        self._previous = 0.0  # last blocked sample, for the pre-emphasis
        self._pending = np.zeros(0, dtype=np.float32)

    def rest_input(self, first: float) -> float:
        """The input the DC blocker takes as having preceded the stream: 0, or, with the features'
        ``remove_dc_offset``, the ``first`` sample (at rest on it, as the MFCCs' pre-emphasis takes it),
        so that a DC offset present from the start makes no step, and no burst of energy for the VAD,
        at the first sample."""
        return first if self.features.remove_dc_offset else 0.0

    def process(self, chunk: np.ndarray) -> np.ndarray:
        x = np.asarray(chunk, dtype=np.float64)
        if x.size:
            if self._fresh:
                self.dc_blocker.reset(x_previous=self.rest_input(float(x[0])))
                self._fresh = False
            blocked = self.dc_blocker.process(x)
            emphasized = preemphasize(blocked, self.features.preemphasis, self._previous)
            self._previous = float(np.float32(blocked[-1]))
            self._pending = np.concatenate([self._pending, emphasized]) if self._pending.size else emphasized
        n_frames = self.features.n_frames(self._pending.size)
        if n_frames == 0:
            return np.zeros(0)
        hop, length = self.features.hop_length, self.features.frame_length
        frames = np.lib.stride_tricks.as_strided(self._pending, shape=(n_frames, length),
                                                 strides=(hop * self._pending.strides[0], self._pending.strides[0]),
                                                 writeable=False)
        windowed = frames * self._window
        energy = 0.5 * np.einsum("ij,ij->i", windowed, windowed)  # einsum: the same per row for any batch
        self._pending = self._pending[n_frames * hop:].copy()
        return np.log(np.maximum(energy, LOG_FLOOR))


@dataclass(frozen=True)
class Segment:
    """Speech between frame ``start`` (inclusive) and ``end`` (exclusive), detected at frame ``decided_at``.

    ``final`` is False for a cut made inside continuing speech (``max_utterance_s``).
    """

    start: int
    end: int
    decided_at: int
    final: bool = True


class EnergyVAD:
    """Frame-level speech gating with hangover; feed log energies in order, get closed segments.

    ``process(log_energy)`` takes float ``(k,)`` log energies of the next ``k`` frames and returns
    the segments closed by them. ``flush()`` closes an open utterance at the end of the stream.
    ``max_utterance_frames`` (0 = never) cuts long speech into pieces of that many frames.

    :meth:`frame_energy` gives the DC-blocked gating energy (:class:`GatingEnergy`) of samples,
    for callers that have them (``Pipeline.process``); ``noise_onsets`` counts the stretches the
    stationarity check rejected.
    """

    def __init__(self, vad: VadParams, features: FeatureParams, max_utterance_frames: int = 0) -> None:
        self.params = vad
        self.features = features
        hop_ms = features.hop_length * 1000 / features.sample_rate_hz
        self.onset_frames = max(1, math.ceil(vad.onset_ms / hop_ms))
        self.hangover_frames = max(1, math.ceil(vad.hangover_ms / hop_ms))
        self.max_utterance_frames = max_utterance_frames
        self._rise = hop_ms / 1000 / vad.noise_floor_rise_s
        self.stationary_frames = max(2, math.ceil(vad.stationary_ms / hop_ms))
        self.gating = GatingEnergy(features)
        self.reset()

    def frame_energy(self, samples: np.ndarray) -> np.ndarray:
        """Gating log energies of the frames ``samples`` complete (see :class:`GatingEnergy`)."""
        return self.gating.process(samples)

    def reset(self) -> None:
        self.gating.reset()
        self.noise_onsets = 0
        self._recent: list[float] = []  # dB of the last stationary_frames frames (a ring)
        self._sum = 0.0
        self._sum_sq = 0.0
        self.frame = 0  # index of the next frame
        self.noise_floor_db: float | None = None
        self.in_speech = False
        self._run_start = -1  # first frame of the current run of active frames
        self._run_length = 0
        self._segment_start = -1
        self._last_active = -1

    def process(self, log_energy: np.ndarray) -> list[Segment]:
        # The per-frame recursion (noise floor, onset, hangover) is inherently sequential; it runs
        # on plain Python floats held in locals, which is ~3x faster than on attributes.
        closed: list[Segment] = []
        threshold_db, min_energy_dbfs = self.params.threshold_db, self.params.min_energy_dbfs
        rise_silence, rise_speech = self._rise, self._rise / 10
        onset, hangover, max_frames = self.onset_frames, self.hangover_frames, self.max_utterance_frames
        index, floor, in_speech = self.frame, self.noise_floor_db, self.in_speech
        run_start, run_length = self._run_start, self._run_length
        segment_start, last_active = self._segment_start, self._last_active
        recent, window, stationary_db = self._recent, self.stationary_frames, self.params.stationary_db
        total, total_sq = self._sum, self._sum_sq
        for energy_db in log_energy_to_dbfs(log_energy, self.features).tolist():
            # running sums over the last `window` frames' dB, for the stationarity check
            position = index % window
            if len(recent) < window:
                recent.append(energy_db)
            else:
                old = recent[position]
                recent[position] = energy_db
                total -= old
                total_sq -= old * old
            total += energy_db
            total_sq += energy_db * energy_db
            if position == window - 1 and len(recent) == window:  # exact again: no drift over a year
                total = math.fsum(recent)
                total_sq = math.fsum(v * v for v in recent)
            if floor is None or energy_db < floor:
                floor = energy_db
            else:
                floor += (rise_speech if in_speech else rise_silence) * (energy_db - floor)
            if energy_db > floor + threshold_db and energy_db > min_energy_dbfs:
                if run_length == 0:
                    run_start = index
                run_length += 1
                last_active = index
            else:
                run_length = 0
            if not in_speech:
                if run_length >= onset:
                    in_speech = True
                    segment_start = run_start
            elif index - last_active >= hangover:
                in_speech = False
                if last_active + 1 > segment_start:  # else it ended right at a max-length cut
                    closed.append(Segment(segment_start, last_active + 1, index + 1))
            elif max_frames and index + 1 - segment_start >= max_frames:
                closed.append(Segment(segment_start, index + 1, index + 1, final=False))
                segment_start = index + 1
            elif (stationary_db > 0 and index + 1 - segment_start >= window and len(recent) == window
                  and total_sq / window - (total / window) ** 2 < stationary_db * stationary_db):
                # the last `window` frames are stationary noise: end the utterance where they began
                noise_start = index + 1 - window
                if noise_start - segment_start >= onset:  # speech before the noise: keep it
                    closed.append(Segment(segment_start, noise_start, index + 1))
                in_speech = False
                run_length = 0
                floor = total / window
                self.noise_onsets += 1
            index += 1
        self.frame, self.noise_floor_db, self.in_speech = index, floor, in_speech
        self._run_start, self._run_length = run_start, run_length
        self._segment_start, self._last_active = segment_start, last_active
        self._sum, self._sum_sq = total, total_sq
        return closed

    def flush(self) -> list[Segment]:
        """Close an open utterance at the end of the stream (the input ended mid-speech)."""
        if not self.in_speech:
            return []
        self.in_speech = False
        self._run_length = 0
        end = max(self._last_active + 1, self._segment_start + 1)
        return [Segment(self._segment_start, end, self.frame)]
