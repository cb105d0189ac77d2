"""Scoring clips through the device's own code path (``edge.pipeline.classify_features``), int8 or float.

The figures computed from the scores are in :mod:`trainer.metrics`.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from edge.calibration import softmax
from edge.dsp.features import FeatureParams
from edge.dsp.normalize import AdaptiveNormalizer
from edge.pipeline import Score, classify_features
from edge.postprocess import DecisionParams
from trainer.featurize import ClipFeatures
from trainer.streams import stream_order


def keras_score(model) -> Score:
    """A :data:`edge.pipeline.Score` for a float Keras model: normalised windows ``(n, frames, coeffs)`` ->
    softmax probabilities ``(n, n_labels)`` float32 and dimensions ``(n, n_dims)`` or None (a model with
    one softmax output has none)."""

    import tensorflow as tf

    # one traced graph for any batch size: eager Keras calls cost ~10x more per utterance
    call = tf.function(lambda x: model(x, training=False), reduce_retracing=True,
                       input_signature=[tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)])

    def score(windows: np.ndarray):
        out = call(tf.constant(windows, dtype=tf.float32))
        if isinstance(out, dict):
            return softmax(np.asarray(out["scores"])), np.clip(np.asarray(out["dimensions"], dtype=np.float32), -1, 1)
        return np.asarray(out, dtype=np.float32), None

    return score


def score_clips(
    clips: list[ClipFeatures],
    score: Score,
    features: FeatureParams,
    input_frames: int,
    decision: DecisionParams | None = None,
    progress: bool = False,
    desc: str = "score",
    seed: int = 0,
    temperature: float = 1.0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Every clip through :func:`edge.pipeline.classify_features`, as one device hears them: in
    :func:`trainer.streams.stream_order` (corpus by corpus, a fixed random order within each), with one
    :class:`edge.dsp.normalize.AdaptiveNormalizer` per corpus carried from clip to clip, exactly the
    adaptation the daemon applies (and its calibration ``temperature``). Returns float32 ``(n_clips, n_labels)`` scores and
    ``(n_clips, n_dims)`` dimensions (or None), in the order of ``clips``.
    """
    scores: list[np.ndarray | None] = [None] * len(clips)
    dims: list[np.ndarray | None] = [None] * len(clips)
    normalizers: dict[str, AdaptiveNormalizer] = {}
    for i in tqdm(stream_order(clips, seed), desc=desc, unit="clip", disable=not progress, leave=False):
        c = clips[i]
        normalizer = normalizers.setdefault(c.clip.corpus, AdaptiveNormalizer(features))
        result = classify_features(c.mfcc, c.log_energy, score, features, input_frames, decision or DecisionParams(),
                                   normalizer, temperature)
        scores[i], dims[i] = result.scores, result.dims
    return np.stack(scores).astype(np.float32), (None if dims[0] is None else np.stack(dims).astype(np.float32))
