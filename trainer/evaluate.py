"""Scoring clips through the device's own code path (``edge.pipeline.classify_features``).

UA (unweighted accuracy, mean per-class recall, = balanced accuracy) and WA (weighted accuracy,
= plain accuracy) as in the speech emotion recognition literature (e.g. Schuller et al. 2011).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)
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
    """Metrics of label indices ``y_true``/``y_pred`` (int arrays, same length) over ``labels``.

    ``ua``: mean recall over the classes present in ``y_true`` (sklearn ``balanced_accuracy_score``);
    ``wa``: accuracy; ``macro_f1``: mean F1 over the same present classes (sklearn ``f1_score``);
    ``recall``: ``{label: recall}``; ``per_class``: ``{label: {recall, precision, f1, support}}``;
    ``confusion``: rows = true, columns = predicted, in ``labels`` order (sklearn ``confusion_matrix``).
    """
    index = list(range(len(labels)))
    recall, precision, f1 = (
        metric(y_true, y_pred, labels=index, average=None, zero_division=0)
        for metric in (recall_score, precision_score, f1_score)
    )
    support = np.bincount(np.asarray(y_true, dtype=np.int64), minlength=len(labels))
    present = sorted(set(int(v) for v in y_true))
    return {
        "ua": float(balanced_accuracy_score(y_true, y_pred)) if len(present) > 1 else float(recall[present].mean()),
        "wa": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1[present].mean()) if present else 0.0,
        "recall": {label: float(recall[k]) for k, label in enumerate(labels)},
        "per_class": {label: {"recall": float(recall[k]), "precision": float(precision[k]), "f1": float(f1[k]),
                              "support": int(support[k])} for k, label in enumerate(labels)},
        "confusion": confusion_matrix(y_true, y_pred, labels=index).tolist(),
    }


def restricted_argmax(scores: np.ndarray, columns: list[int]) -> np.ndarray:
    """Per row of ``scores`` ``(n, n_labels)``, the index (into ``columns``) of the largest score
    among ``columns`` only: the decision of a model limited to a subset of its labels."""
    return np.asarray(scores)[:, columns].argmax(axis=1)


def format_confusion(confusion: list[list[int]], labels: tuple[str, ...]) -> str:
    """Confusion matrix as text, rows = true label, columns = predicted (4-letter heads)."""
    head = "true\\pred  " + " ".join(f"{label[:4]:>5}" for label in labels)
    lines = [head] + [f"{label:<10} " + " ".join(f"{v:>5d}" for v in row) for label, row in zip(labels, confusion, strict=True)]
    return "\n".join(lines)
