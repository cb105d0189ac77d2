"""Scoring clips through the device's own code path (``edge.pipeline.classify_features``).

UA (unweighted accuracy, mean per-class recall, = balanced accuracy) and WA (weighted accuracy,
= plain accuracy) as in the speech emotion recognition literature (e.g. Schuller et al. 2011).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, recall_score
from tqdm import tqdm

from edge.features import FeatureParams, normalize
from edge.pipeline import DecisionParams, Predict, classify_features
from trainer.featurize import ClipFeatures


def keras_predict(model, features: FeatureParams) -> Predict:
    """A :data:`edge.pipeline.Predict` for a float Keras model: raw MFCC windows ``(n, frames, coeffs)``
    -> normalised with ``features``' mean/std -> softmax ``(n, n_labels)`` float32."""

    def predict(windows: np.ndarray) -> np.ndarray:
        return np.asarray(model(normalize(windows, features), training=False), dtype=np.float32)

    return predict


def score_clips(
    clips: list[ClipFeatures],
    predict: Predict,
    features: FeatureParams,
    input_frames: int,
    decision: DecisionParams | None = None,
    progress: bool = False,
    desc: str = "score",
) -> np.ndarray:
    """Utterance scores of every clip via :func:`edge.pipeline.classify_features`; float32 ``(n_clips, n_labels)``."""
    rows = [
        classify_features(c.mfcc, c.log_energy, predict, features, input_frames, decision or DecisionParams())
        for c in tqdm(clips, desc=desc, unit="clip", disable=not progress, leave=False)
    ]
    return np.stack(rows).astype(np.float32)


def summarize(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...]) -> dict:
    """``{"ua", "wa", "recall": {label: r}, "confusion": rows = true, columns = predicted}``; label indices."""
    index = list(range(len(labels)))
    recall = recall_score(y_true, y_pred, labels=index, average=None, zero_division=0)
    present = sorted(set(int(v) for v in y_true))
    return {
        "ua": float(balanced_accuracy_score(y_true, y_pred)) if len(present) > 1 else float(recall[present].mean()),
        "wa": float(accuracy_score(y_true, y_pred)),
        "recall": {label: float(recall[k]) for k, label in enumerate(labels)},
        "confusion": confusion_matrix(y_true, y_pred, labels=index).tolist(),
    }


def format_confusion(confusion: list[list[int]], labels: tuple[str, ...]) -> str:
    """Confusion matrix as text, rows = true label, columns = predicted (4-letter heads)."""
    head = "true\\pred  " + " ".join(f"{label[:4]:>5}" for label in labels)
    lines = [head] + [f"{label:<10} " + " ".join(f"{v:>5d}" for v in row) for label, row in zip(labels, confusion, strict=True)]
    return "\n".join(lines)
