"""Post-processing: where analysis windows are placed over an utterance, and the decision an
utterance becomes. Driven by audio time (frames), never the wall clock. The semantics are written
out in :mod:`edge.pipeline`'s docstring; the numbers that steer them are :class:`DecisionParams`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edge.dsp.features import FeatureParams
from edge.dsp.vad import Segment, VadParams


@dataclass(frozen=True)
class DecisionParams:
    """How speech becomes decisions; all times in seconds of audio."""

    vad: VadParams = field(default_factory=VadParams)
    window_stride_s: float = 1.0
    """Spacing of analysis windows inside an utterance longer than one window."""
    min_utterance_s: float = 0.3
    """Shorter speech (clicks, coughs) makes no decision."""
    max_utterance_s: float = 10.0
    """Longer speech is cut into pieces of this length, one decision each."""
    confidence_threshold: float = 0.0
    """Decisions whose top probability is below this are not published (0: every utterance is;
    the model's own ``unsure_below`` flags unsure ones instead)."""

    def __post_init__(self) -> None:
        if self.window_stride_s <= 0:
            raise ValueError(f"window_stride_s: expected > 0, got {self.window_stride_s}")
        if not 0 <= self.min_utterance_s < self.max_utterance_s:
            raise ValueError(
                f"min_utterance_s/max_utterance_s: expected 0 <= min < max, got {self.min_utterance_s}/{self.max_utterance_s}"
            )
        if not 0 <= self.confidence_threshold <= 1:
            raise ValueError(f"confidence_threshold: expected 0..1, got {self.confidence_threshold}")


@dataclass(frozen=True)
class WindowPlacement:
    """Where the pipeline ends the analysis windows that score an utterance, in frames.

    The one definition of the placement described in the module docstring, shared by
    :class:`Pipeline` and the trainer (which crops its training windows to end there).
    """

    input_frames: int
    stride_frames: int
    min_frames: int
    max_utterance_frames: int

    @classmethod
    def of(cls, features: FeatureParams, input_frames: int, decision: DecisionParams) -> WindowPlacement:
        """``decision``'s times (seconds) in frames of ``features``' hop: stride rounded (at least 1),
        the minimum utterance rounded up, the maximum rounded."""
        hop_s = features.hop_s
        return cls(input_frames, max(1, round(decision.window_stride_s / hop_s)),
                   math.ceil(decision.min_utterance_s / hop_s), round(decision.max_utterance_s / hop_s))

    def ends(self, segment: Segment) -> list[int]:
        """Exclusive end frames of the windows scoring ``segment``: every ``stride_frames`` from
        ``start + input_frames`` before ``decided_at``, then ``decided_at``; empty for an utterance
        shorter than ``min_frames``."""
        if segment.end - segment.start < self.min_frames:
            return []
        return list(range(segment.start + self.input_frames, segment.decided_at, self.stride_frames)) + [
            segment.decided_at]


@dataclass(frozen=True)
class Decision:
    """One utterance (or piece of one): frames ``[start_frame, end_frame)``, times in seconds from stream start."""

    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    scores: np.ndarray  # float32 (n_labels,), sums to ~1, in the manifest's label order
    windows: int
    final: bool
    publish: bool
    unsure: bool = False
    """The calibrated confidence is below the model's documented threshold: still an utterance that
    happened (published), but subscribers should not act on its label."""
    arousal: float | None = None
    """Arousal in [-1, 1] (Russell's circumplex; calm -1 .. excited +1), None if the model has no such head."""
    valence: float | None = None
    """Valence in [-1, 1] (unpleasant -1 .. pleasant +1), None if the model has no such head."""
    dims: np.ndarray | None = None
    """float32 ``(n_dimensions,)``: every continuous output in the manifest's ``dimensions`` order, or None."""
    decided_s: float | None = None
    """Seconds of audio since stream start at which the utterance was decided (its last active frame plus
    the VAD's hangover, or a max-length cut): the audio the decision waited for; None = ``end_s``."""

    @property
    def top(self) -> int:
        return int(np.argmax(self.scores))

    @property
    def confidence(self) -> float:
        return float(self.scores[self.top])
