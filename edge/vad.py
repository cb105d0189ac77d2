"""Speech gating: a frame-energy VAD with an adaptive noise floor, onset and hangover.

Method: a frame is *active* when its energy exceeds both an absolute floor
(``min_energy_dbfs``) and the running noise-floor estimate by ``threshold_db``. The noise floor
follows the minimum of the frame energy at once and rises slowly with time constant
``noise_floor_rise_s`` (the minimum-statistics idea of R. Martin, "Noise power spectral density
estimation based on optimal smoothing and minimum statistics", IEEE TSAP 9(5), 2001, reduced to
one band). Speech starts after ``onset_ms`` of consecutive active frames and ends after
``hangover_ms`` without one (the hangover scheme of energy VADs such as ITU-T G.729 Annex B),
so the short pauses between words stay inside one utterance.

Everything runs on frame indices (audio time), never the wall clock, so replaying the same
audio gives the same segments.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from edge.features import FeatureParams, analysis_window


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

    def __post_init__(self) -> None:
        for name in ("threshold_db", "onset_ms", "hangover_ms", "noise_floor_rise_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"vad.{name}: expected > 0, got {getattr(self, name)}")


@functools.lru_cache(maxsize=8)
def full_scale_log_energy(params: FeatureParams) -> float:
    """Natural-log frame energy (as :func:`edge.features.mfcc_with_energy`) of a full-scale sine.

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
    """

    def __init__(self, vad: VadParams, features: FeatureParams, max_utterance_frames: int = 0) -> None:
        self.params = vad
        self.features = features
        hop_ms = features.hop_length * 1000 / features.sample_rate_hz
        self.onset_frames = max(1, math.ceil(vad.onset_ms / hop_ms))
        self.hangover_frames = max(1, math.ceil(vad.hangover_ms / hop_ms))
        self.max_utterance_frames = max_utterance_frames
        self._rise = hop_ms / 1000 / vad.noise_floor_rise_s
        self.reset()

    def reset(self) -> None:
        self.frame = 0  # index of the next frame
        self.noise_floor_db: float | None = None
        self.in_speech = False
        self._run_start = -1  # first frame of the current run of active frames
        self._run_length = 0
        self._segment_start = -1
        self._last_active = -1

    @property
    def segment_start(self) -> int | None:
        """First frame of the open utterance (or its current piece), None outside speech."""
        return self._segment_start if self.in_speech else None

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
        for energy_db in log_energy_to_dbfs(log_energy, self.features).tolist():
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
            index += 1
        self.frame, self.noise_floor_db, self.in_speech = index, floor, in_speech
        self._run_start, self._run_length = run_start, run_length
        self._segment_start, self._last_active = segment_start, last_active
        return closed

    def flush(self) -> list[Segment]:
        """Close an open utterance at the end of the stream (the input ended mid-speech)."""
        if not self.in_speech:
            return []
        self.in_speech = False
        self._run_length = 0
        end = max(self._last_active + 1, self._segment_start + 1)
        return [Segment(self._segment_start, end, self.frame)]
