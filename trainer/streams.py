"""How one device hears a stream of clips: its VAD's utterances, where its analysis windows end, the
order it hears a corpus in, and the adaptive normalisation carried from clip to clip.

Shared by training (:mod:`trainer.train`: statistics, normalised inputs, window ends) and scoring
(:mod:`trainer.evaluate`: the stream order), so the two see the same stream.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge.dsp.features import FeatureParams
from edge.dsp.normalize import AdaptiveNormalizer
from edge.dsp.vad import EnergyVAD, Segment
from edge.postprocess import DecisionParams, WindowPlacement
from trainer.featurize import ClipFeatures, statistics


def speech_segments(log_energy: np.ndarray, features: FeatureParams, frames: int,
                    decision: DecisionParams | None = None) -> list[Segment]:
    """The utterances :class:`edge.pipeline.Pipeline` finds in a clip's frame log energies (its VAD)."""
    decision = decision or DecisionParams()
    placement = WindowPlacement.of(features, frames, decision)
    vad = EnergyVAD(decision.vad, features, max_utterance_frames=placement.max_utterance_frames)
    return vad.process(log_energy) + vad.flush()


def speech_frames(mfcc: np.ndarray, log_energy: np.ndarray, features: FeatureParams, frames: int,
                  decision: DecisionParams | None = None) -> np.ndarray:
    """The frames inside the VAD's utterances (all frames if it finds none). float32 ``(k, n_mfcc)``."""
    parts = [mfcc[s.start:s.end] for s in speech_segments(log_energy, features, frames, decision)]
    return np.concatenate(parts) if parts else mfcc


def with_statistics(params: FeatureParams, clips: list[ClipFeatures], frames: int = 300,
                    adapt_time_constant_s: float = 0.0, adapt_prior_s: float = 10.0) -> FeatureParams:
    """``params`` with the training statistics over the clips' *speech* frames (what the adaptive
    normaliser tracks on the device) and the adaptation constants."""
    mean, std = statistics([ClipFeatures(c.clip, speech_frames(c.mfcc, c.log_energy, params, frames), c.log_energy)
                            for c in clips])
    return dataclasses.replace(params, mean=mean, std=std, adapt_time_constant_s=adapt_time_constant_s,
                               adapt_prior_s=adapt_prior_s)


def stream_order(clips: list[ClipFeatures], seed: int) -> list[int]:
    """The order in which one device hears ``clips``: corpus by corpus (one place each), clips in a
    random order fixed by ``seed`` within each corpus (acted corpora are sorted by speaker and emotion;
    a device hears them mixed). Indices into ``clips``."""
    rng = np.random.default_rng(seed)
    order = []
    for corpus in sorted({c.clip.corpus for c in clips}):
        mine = [i for i, c in enumerate(clips) if c.clip.corpus == corpus]
        order += [mine[j] for j in rng.permutation(len(mine))]
    return order


def stream_normalized(versions: list[tuple[np.ndarray, np.ndarray]], clips: list[ClipFeatures], fitted: FeatureParams,
                      frames: int, seed: int, decision: DecisionParams | None = None) -> list[np.ndarray]:
    """Each clip's MFCCs (``versions[i]``: ``(mfcc, log_energy)`` of ``clips[i]`` or of a perturbed
    version) normalised as the device would: :class:`edge.dsp.normalize.AdaptiveNormalizer` carried from
    clip to clip in :func:`stream_order`, each clip normalised with the state before it, then its
    utterances' speech frames update it. float32, same shapes."""
    out: list[np.ndarray | None] = [None] * len(clips)
    normalizers: dict[str, AdaptiveNormalizer] = {}
    for i in stream_order(clips, seed):
        normalizer = normalizers.setdefault(clips[i].clip.corpus, AdaptiveNormalizer(fitted))
        mfcc, log_energy = versions[i]
        out[i] = normalizer.apply(mfcc)
        for segment in speech_segments(log_energy, fitted, frames, decision):
            normalizer.update(mfcc[segment.start:segment.end])
    return out


def daemon_window_ends(clip: ClipFeatures, features: FeatureParams, frames: int,
                       decision: DecisionParams | None = None) -> np.ndarray:
    """Frames where :class:`edge.pipeline.Pipeline` ends its analysis windows over ``clip``
    (:class:`edge.pipeline.WindowPlacement`, clipped to the clip's length), or the clip's last
    frame if the VAD finds no utterance. int64 ``(k,)``."""
    placement = WindowPlacement.of(features, frames, decision or DecisionParams())
    n = clip.mfcc.shape[0]
    ends = [min(e, n) for segment in speech_segments(clip.log_energy, features, frames, decision)
            for e in placement.ends(segment)]
    return np.asarray(ends or [n], dtype=np.int64)
