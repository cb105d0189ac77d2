"""From audio samples to utterance decisions: features → speech gating → model → aggregation.

How windows become decisions (the event semantics):

* MFCC frames are computed once each (:class:`edge.dsp.frontend.FrontEnd`) and kept in a ring
  buffer long enough for the longest utterance piece plus one model window.
* :class:`edge.dsp.vad.EnergyVAD` marks utterances: speech starts after ``vad.onset_ms`` of active
  frames and ends after ``vad.hangover_ms`` of inactive ones.
* When an utterance closes (at frame ``decided_at`` = last active frame + hangover), the model
  scores analysis windows of ``input.frames`` frames (3 s) over it: one ending at
  ``decided_at`` and, for longer speech, one every ``window_stride_s`` from
  ``start + input.frames`` on. Window probabilities are averaged into the utterance's scores.
  Frames before the start of the stream are zeros once normalised, as the trainer pads short clips.
* Normalisation adapts to the device (:class:`edge.dsp.normalize.AdaptiveNormalizer`): an utterance's
  windows are normalised with the statistics of the speech heard *before* it, then its speech
  frames ``[start, end)`` update them. The trainer's scoring runs this same class over its clips
  in order, state carried from clip to clip, as one device in one place would hear them.
* The model gives label probabilities and, if it has them, arousal and valence; both are averaged
  over the windows, and the averaged probabilities are calibrated with the manifest's temperature
  (:func:`edge.calibration.temperature_scale`). A decision whose confidence is
  below the manifest's ``unsure_below`` is flagged ``unsure`` (still published).
* Speech longer than ``max_utterance_s`` is cut into pieces of that length, each a decision
  (``final=False`` for all but the last), so a subscriber hears about long speech periodically.
* Utterances shorter than ``min_utterance_s`` are dropped (counted in ``short_utterances``).
  A decision below ``confidence_threshold`` is returned with ``publish=False``: counted as an
  utterance, not published as an event.

Everything is indexed by frame (audio time), so the same audio always yields the same decisions,
whatever the chunking and however fast it is fed. A decision is produced while processing the
frame at which the utterance closes, i.e. within one hop of the end of the utterance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge.calibration import temperature_scale
from edge.dsp.features import FeatureParams, mfcc_with_energy
from edge.dsp.frontend import FrontEnd
from edge.dsp.normalize import AdaptiveNormalizer
from edge.dsp.vad import EnergyVAD, Segment
from edge.events import SCORE_DECIMALS
from edge.postprocess import Decision, DecisionParams, WindowPlacement

Score = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]
"""Normalised MFCC windows float32 ``(n, frames, coefficients)`` -> calibrated probabilities
``(n, n_labels)`` and dimensions ``(n, n_dimensions)`` or ``None`` (``EmotionModel.score``)."""


class FrameRing:
    """The last ``capacity`` frames of a stream, addressed by absolute frame index.

    ``append`` is amortised O(frames); ``window(end, length)`` copies frames ``[end-length, end)``,
    filling indices below 0 with ``pad`` (float32 ``(coefficients,)``). Raises ``IndexError`` for
    frames already dropped or not yet seen.
    """

    def __init__(self, capacity: int, coefficients: int, pad: np.ndarray) -> None:
        self.capacity = capacity
        self.pad = np.asarray(pad, dtype=np.float32)
        self._data = np.zeros((2 * capacity, coefficients), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self._used = 0  # rows of _data in use
        self.first = 0  # absolute index of _data[0]

    @property
    def end(self) -> int:
        """Absolute index one past the newest frame."""
        return self.first + self._used

    def append(self, frames: np.ndarray) -> None:
        n = frames.shape[0]
        if n >= self.capacity:
            self._data[: self.capacity] = frames[-self.capacity :]
            self.first += self._used + n - self.capacity
            self._used = self.capacity
            return
        if self._used + n > self._data.shape[0]:
            keep = self.capacity - n
            self._data[:keep] = self._data[self._used - keep : self._used]
            self.first += self._used - keep
            self._used = keep
        self._data[self._used : self._used + n] = frames
        self._used += n

    def window(self, end: int, length: int) -> np.ndarray:
        start = end - length
        if end > self.end or max(start, 0) < self.first:
            raise IndexError(f"expected frames within [{self.first}, {self.end}), got [{start}, {end})")
        if start >= 0:
            return self._data[start - self.first : end - self.first].copy()
        out = np.empty((length, self._data.shape[1]), dtype=np.float32)
        out[:-start] = self.pad
        out[-start:] = self._data[: end - self.first]
        return out


class Pipeline:
    """Streaming features, speech gating, adaptive normalisation, model windows and utterance aggregation.

    ``score``: see :data:`Score` (e.g. ``EmotionModel.score``). ``features`` must carry the
    manifest's mean/std (the normalisation prior). ``input_frames``: the model's window length in
    frames. ``unsure_below``: the manifest's threshold for ``Decision.unsure`` (confidence and threshold
    compared rounded to the payload's :data:`edge.events.SCORE_DECIMALS`); ``dimensions``: the
    names of the model's continuous outputs (``("arousal", "valence")`` or empty); ``temperature``: the
    manifest's calibration, applied to each utterance's averaged probabilities. Feed 1-D float32
    chunks at ``features.sample_rate_hz`` with :meth:`process`; call :meth:`flush` at the end.
    ``normalizer``: a state to carry over (from another clip), else a fresh one.
    """

    def __init__(self, score: Score, features: FeatureParams, input_frames: int,
                 decision: DecisionParams | None = None, unsure_below: float = 0.0,
                 dimensions: tuple[str, ...] = (), normalizer: AdaptiveNormalizer | None = None,
                 temperature: float = 1.0) -> None:
        self.score = score
        self.temperature = temperature
        self.features = features
        self.input_frames = input_frames
        self.unsure_below = unsure_below
        self.dimensions = tuple(dimensions)
        self.decision = decision or DecisionParams()
        self.placement = WindowPlacement.of(features, input_frames, self.decision)
        max_frames = self.placement.max_utterance_frames
        self.vad = EnergyVAD(self.decision.vad, features, max_utterance_frames=max_frames)
        # the longest piece, its hangover, one window before it, and one batch of new frames
        self._batch_frames = input_frames
        capacity = max_frames + self.vad.hangover_frames + input_frames + self._batch_frames + 1
        self.ring = FrameRing(capacity, features.n_features, np.zeros(features.n_features, np.float32))
        self.frontend = FrontEnd(features)
        self.normalizer = normalizer or AdaptiveNormalizer(features)
        self.reset(keep_normalizer=normalizer is not None)

    @classmethod
    def for_model(cls, model, decision: DecisionParams | None = None) -> Pipeline:
        """A pipeline around an :class:`edge.model.EmotionModel` and its manifest."""
        manifest = model.manifest
        return cls(model.score, manifest.features, manifest.input.frames, decision, manifest.unsure_below,
                   manifest.dimensions, temperature=manifest.temperature)

    def reset(self, keep_normalizer: bool = False) -> None:
        """A new stream; the adapted normalisation statistics survive with ``keep_normalizer``."""
        self.frontend.reset()
        self.vad.reset()
        self.ring.reset()
        if not keep_normalizer:
            self.normalizer.reset()
        self.utterances = 0
        self.short_utterances = 0

    @property
    def frames_seen(self) -> int:
        return self.ring.end

    def process(self, chunk: np.ndarray) -> list[Decision]:
        """Samples (1-D float32 in [-1, 1] at the manifest's rate) -> decisions they completed."""
        return self.process_frames(*self.frontend.process(chunk))  # MFCC + gating energy (DC-blocked audio)

    def process_frames(self, coefficients: np.ndarray, log_energy: np.ndarray) -> list[Decision]:
        """Like :meth:`process`, from frames already computed (``(k, n_mfcc)`` and ``(k,)``)."""
        decisions = []
        for start in range(0, coefficients.shape[0], self._batch_frames):  # bounded, so the ring keeps what windows need
            stop = start + self._batch_frames
            self.ring.append(coefficients[start:stop])
            decisions += self._decide(self.vad.process(log_energy[start:stop]))
        return decisions

    def flush(self) -> list[Decision]:
        """End of input: close an utterance still open."""
        return self._decide(self.vad.flush())

    def normalized_window(self, end: int) -> np.ndarray:
        """The ``input_frames`` frames ending (exclusively) at frame ``end``, normalised with the current
        statistics; frames before the stream start are 0. float32 ``(input_frames, n_mfcc)``."""
        window = self.normalizer.apply(self.ring.window(end, self.input_frames))
        pad = self.input_frames - end
        if pad > 0:
            window[:pad] = 0.0
        return window

    def _decide(self, segments: list[Segment]) -> list[Decision]:
        decisions = []
        for segment in segments:
            ends = self.placement.ends(segment)
            if not ends:
                self.short_utterances += 1
                continue
            probabilities, dims = self.score(np.stack([self.normalized_window(end) for end in ends]))
            scores = temperature_scale(probabilities.mean(axis=0), self.temperature)
            mean_dims = None if dims is None else dims.mean(axis=0)
            self.normalizer.update(self.ring.window(segment.end, segment.end - segment.start))
            self.utterances += 1
            values = dict(zip(self.dimensions, (float(v) for v in mean_dims), strict=True)) if mean_dims is not None and self.dimensions else {}
            decisions.append(Decision(
                start_frame=segment.start,
                end_frame=segment.end,
                start_s=self.features.frame_time_s(segment.start),
                end_s=self.features.frame_end_s(segment.end - 1),
                scores=scores,
                windows=len(ends),
                final=segment.final,
                publish=float(scores.max()) >= self.decision.confidence_threshold,
                # compared as published (SCORE_DECIMALS), so a subscriber or `ser-edge info` reading the
                # payload's confidence against the threshold printed with as many digits agrees with `unsure`
                unsure=round(float(scores.max()), SCORE_DECIMALS) < round(self.unsure_below, SCORE_DECIMALS),
                arousal=values.get("arousal"),
                valence=values.get("valence"),
                dims=None if mean_dims is None else mean_dims.astype(np.float32),
                decided_s=max(self.features.frame_end_s(segment.end - 1),
                              self.features.frame_end_s(segment.decided_at - 1)),
            ))
        return decisions


@dataclass(frozen=True)
class ClipScore:
    """One clip's decision: ``scores`` float32 ``(n_labels,)``, ``dims`` float32 ``(n_dimensions,)`` or None."""

    scores: np.ndarray
    dims: np.ndarray | None


def classify_features(coefficients: np.ndarray, log_energy: np.ndarray, score: Score, features: FeatureParams,
                      input_frames: int, decision: DecisionParams | None = None,
                      normalizer: AdaptiveNormalizer | None = None, temperature: float = 1.0) -> ClipScore:
    """One decision for a whole clip, through the daemon's own code path.

    ``coefficients``/``log_energy``: the clip's frames, float32 ``(n, n_mfcc)`` and ``(n,)`` from
    :func:`edge.dsp.features.mfcc_with_energy`. Runs :class:`Pipeline` over them and averages the
    utterances' scores (and dimensions) weighted by their number of windows. If no utterance is
    found (silence or too short), one window ending at the clip's last frame decides.
    ``normalizer``: the adaptive normalisation state to use and update (carried from clip to clip
    as one device hears them); a fresh one (the training prior) if None. ``temperature``: the
    calibration applied to each utterance's probabilities (and to the fallback window's).
    """
    pipeline = Pipeline(score, features, input_frames, decision, normalizer=normalizer, temperature=temperature)
    # the ring must hold the whole clip for the fallback window
    pipeline.ring = FrameRing(max(pipeline.ring.capacity, coefficients.shape[0] + 1), features.n_features, pipeline.ring.pad)
    decisions = pipeline.process_frames(coefficients, log_energy) + pipeline.flush()
    if not decisions:
        probabilities, dims = score(pipeline.normalized_window(pipeline.ring.end)[None])
        return ClipScore(temperature_scale(probabilities[0], temperature), None if dims is None else dims[0].astype(np.float32))
    weights = np.array([d.windows for d in decisions], dtype=np.float32)[:, None]
    scores = (np.stack([d.scores for d in decisions]) * weights).sum(axis=0) / weights.sum()
    dims = None
    if decisions[0].dims is not None:
        dims = ((np.stack([d.dims for d in decisions]) * weights).sum(axis=0) / weights.sum()).astype(np.float32)
    return ClipScore(scores.astype(np.float32), dims)


def classify_clip(samples: np.ndarray, sample_rate_hz: int, model, decision: DecisionParams | None = None) -> np.ndarray:
    """:func:`classify_features` for samples (1-D float32) at the model's rate; returns ``(n_labels,)``.

    Raises ``ValueError`` if ``sample_rate_hz`` is not the manifest's (resample with
    :func:`edge.audio.resample.resample` first).
    """
    features = model.manifest.features
    if sample_rate_hz != features.sample_rate_hz:
        raise ValueError(f"expected samples at {features.sample_rate_hz} Hz, got {sample_rate_hz} Hz")
    coefficients, log_energy = mfcc_with_energy(samples, features)
    return classify_features(coefficients, log_energy, model.score, features, model.manifest.input.frames,
                             decision, temperature=model.manifest.temperature).scores
