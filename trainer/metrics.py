"""Figures of merit: UA/WA, confusion, CCC, valence AUC, arousal/valence AUC from labels, natural-neutral
figures, temperature calibration, ECE and reliability.

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

from edge.calibration import temperature_scale
from trainer.labels import NEUTRAL, NON_NEUTRAL, canonical

NOT_A_CLASS = -1
"""Label index of a clip whose label is not one of the model's: a partial label such as CORAA-SER's
``non-neutral`` (:data:`trainer.labels.NON_NEUTRAL`). :func:`summarize` leaves such clips out of UA,
WA and the confusion matrix; :func:`natural_neutral` counts them."""


def summarize(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...]) -> dict:
    """Metrics of label indices ``y_true``/``y_pred`` (int arrays, same length) over ``labels``. Clips whose
    ``y_true`` is :data:`NOT_A_CLASS` (a partial label) are left out of every figure.

    ``ua``: mean recall over the classes present in ``y_true`` (sklearn ``balanced_accuracy_score``);
    ``wa``: accuracy; ``macro_f1``: mean F1 over the same present classes (sklearn ``f1_score``);
    ``recall``: ``{label: recall}``; ``per_class``: ``{label: {recall, precision, f1, support}}``;
    ``confusion``: rows = true, columns = predicted, in ``labels`` order (sklearn ``confusion_matrix``).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    known = y_true != NOT_A_CLASS
    y_true, y_pred = y_true[known], y_pred[known]
    index = list(range(len(labels)))
    if not len(y_true):  # only partial labels: no figure, an empty confusion matrix
        nan = float("nan")
        return {"ua": nan, "wa": nan, "macro_f1": nan, "recall": {label: nan for label in labels},
                "per_class": {label: {"recall": nan, "precision": nan, "f1": nan, "support": 0} for label in labels},
                "confusion": [[0] * len(labels) for _ in labels]}
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


def ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Lin's concordance correlation coefficient (Lin 1989, Biometrics 45(1)), the AVEC challenges'
    measure for arousal/valence: ``2 cov / (var_t + var_p + (mean_t - mean_p)^2)``; NaN targets ignored.
    NaN with fewer than two targets or targets of one value: the covariance is then 0 whatever the
    predictions, so the figure measures nothing (CORAA-SER's scored clips are all neutral, arousal 0)."""
    keep = np.isfinite(y_true) & np.isfinite(y_pred)
    t, p = y_true[keep].astype(np.float64), y_pred[keep].astype(np.float64)
    if len(t) < 2 or t.min() == t.max():
        return float("nan")
    cov = np.mean((t - t.mean()) * (p - p.mean()))
    return float(2 * cov / (t.var() + p.var() + (t.mean() - p.mean()) ** 2 + 1e-12))


def valence_auc(valence_true: np.ndarray, valence_pred: np.ndarray) -> float:
    """ROC AUC of the predicted valence separating positive (target > 0) from negative (target < 0)
    utterances, neutral ones left out (sklearn ``roc_auc_score``); NaN with one side missing."""
    from sklearn.metrics import roc_auc_score

    keep = np.isfinite(valence_true) & (valence_true != 0)
    positive = valence_true[keep] > 0
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, valence_pred[keep]))


AROUSAL_HIGH = ("angry", "happy", "fearful", "surprised")
"""Emotions of high arousal for :func:`label_auc` (issue 17; the upper half of Russell's circumplex,
:data:`trainer.labels.CIRCUMPLEX`)."""
AROUSAL_LOW = ("neutral", "calm", "sad")
"""Emotions of low arousal (neutral taken as low: it is the calm end of acted speech)."""
VALENCE_POSITIVE = ("happy",)
"""Emotions of positive valence for :func:`label_auc`."""
VALENCE_NEGATIVE = ("angry", "sad", "fearful", "disgust")
"""Emotions of negative valence."""


def label_auc(labels, values: np.ndarray, positive: tuple[str, ...], negative: tuple[str, ...]) -> dict:
    """ROC AUC of the continuous ``values`` (float ``(n,)``, e.g. the model's arousal output) separating the
    clips whose label is in ``positive`` from those whose label is in ``negative`` (sklearn
    ``roc_auc_score``; 0.5 = chance, 1 = every positive clip above every negative one). ``labels``: ``n``
    label strings, compared by their canonical name (:func:`trainer.labels.canonical`: TESS ``fear`` is
    ``fearful``); clips of other labels (``non-neutral``, ``disgust`` for arousal) are left out.

    Returns ``{"auc": float | None, "positive": n_pos, "negative": n_neg, "reason": str | None}``;
    ``auc`` is None, with the reason, when either side has no clip.
    """
    from sklearn.metrics import roc_auc_score

    names = [canonical(label) for label in labels]
    is_positive = np.array([n in positive for n in names], dtype=bool)
    is_negative = np.array([n in negative for n in names], dtype=bool)
    out = {"auc": None, "positive": int(is_positive.sum()), "negative": int(is_negative.sum()), "reason": None}
    missing = [f"no clip labelled {'/'.join(side)}" for side, n in ((positive, out["positive"]),
                                                                     (negative, out["negative"])) if n == 0]
    if missing:
        out["reason"] = "; ".join(missing)
        return out
    keep = is_positive | is_negative
    out["auc"] = float(roc_auc_score(is_positive[keep], np.asarray(values, dtype=np.float64)[keep]))
    return out


def natural_neutral(labels, probabilities: np.ndarray, model_labels: tuple[str, ...]) -> dict:
    """Natural-neutral figures (issue 17, for CORAA-SER's natural speech labelled ``neutral`` or, partially,
    ``non-neutral``). ``labels``: ``n`` label strings; ``probabilities``: float ``(n, len(model_labels))``,
    columns in ``model_labels`` order, which must include ``neutral``.

    ``neutral_recall``: the share of ``neutral`` clips whose largest probability is ``neutral`` (the
    device's decision); ``neutral_auc``: ROC AUC of P(neutral) for ``neutral`` (positive) against
    ``non-neutral`` clips (:func:`label_auc`); clips of other labels are left out. Returns
    ``{"neutral_clips", "non_neutral_clips", "neutral_recall", "neutral_auc", "reason"}``, a figure None
    (with the reason) when its clips are missing.

    :raises ValueError: if ``model_labels`` has no ``neutral`` or the shapes disagree.
    """
    probabilities = np.asarray(probabilities)
    if NEUTRAL not in model_labels:
        raise ValueError(f"expected model labels with {NEUTRAL!r}, got {', '.join(model_labels)}")
    if probabilities.shape != (len(labels), len(model_labels)):
        raise ValueError(f"expected probabilities of shape ({len(labels)}, {len(model_labels)}), "
                         f"got {probabilities.shape}")
    column = model_labels.index(NEUTRAL)
    is_neutral = np.array([canonical(label) == NEUTRAL for label in labels], dtype=bool)
    auc = label_auc(labels, probabilities[:, column], (NEUTRAL,), (NON_NEUTRAL,))
    recall = float(np.mean(probabilities[is_neutral].argmax(axis=1) == column)) if is_neutral.any() else None
    return {"neutral_clips": auc["positive"], "non_neutral_clips": auc["negative"], "neutral_recall": recall,
            "neutral_auc": auc["auc"], "reason": auc["reason"]}


def group_weights(groups: np.ndarray | None, n: int) -> np.ndarray:
    """Per-sample weights, float64 ``(n,)`` summing to 1, that give every group (e.g. every held-out
    corpus) the same total weight; equal weights when ``groups`` is None."""
    if groups is None:
        return np.full(n, 1.0 / n)
    groups = np.asarray(groups)
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return 1.0 / (counts[inverse] * len(counts))


def fit_temperature(probabilities: np.ndarray, y_true: np.ndarray, groups: np.ndarray | None = None) -> float:
    """The temperature minimising the negative log-likelihood of ``y_true`` (Guo et al. 2017, ICML,
    "On calibration of modern neural networks"), by bounded scalar search over 0.05..20 (scipy).
    ``groups`` (e.g. each clip's held-out corpus): the NLL is averaged within each group, then over
    the groups, so a large corpus does not set the temperature alone; a device's speech is a domain
    none of them is, and each is one sample of how far a new domain lies."""
    from scipy.optimize import minimize_scalar

    weights = group_weights(groups, len(y_true))

    def nll(t: float) -> float:
        p = temperature_scale(probabilities, t)[np.arange(len(y_true)), y_true]
        return float(-np.sum(weights * np.log(np.maximum(p, 1e-12))))

    return float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)

ECE_BINS = 15


def expected_calibration_error(probabilities: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE (Naeini et al. 2015; Guo et al. 2017): over equal-width confidence bins, the mean of
    ``|accuracy - confidence|`` weighted by the share of decisions in the bin."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total)


def reliability(probabilities: np.ndarray, y_true: np.ndarray, bins: int = 10) -> list[dict]:
    """Per equal-width confidence bin: ``{"low", "high", "n", "confidence", "accuracy"}`` (empty bins left out)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return [{"low": float(edges[b]), "high": float(edges[b + 1]), "n": int((which == b).sum()),
             "confidence": float(confidence[which == b].mean()), "accuracy": float(correct[which == b].mean())}
            for b in range(bins) if (which == b).any()]

UNSURE_ACCURACY = 0.5
"""A decision is trusted when decisions of its confidence are right at least this often."""


def unsure_threshold(probabilities: np.ndarray, y_true: np.ndarray, groups: np.ndarray | None = None) -> float:
    """The confidence below which a calibrated decision is flagged unsure: the lowest confidence at
    which the isotonic (monotone non-decreasing) regression of correctness on confidence reaches
    :data:`UNSURE_ACCURACY` (sklearn ``IsotonicRegression``, pool-adjacent-violators; Zadrozny & Elkan
    2002 use it for calibration). Continuous, unlike a reliability-bin edge, so the threshold does
    not jump by a bin width between two runs of the same recipe. ``probabilities`` float ``(n, k)``,
    ``y_true`` int ``(n,)``; ``groups``: every group weighs the same in the regression (as in
    :func:`fit_temperature`). 0.0 if every confidence reaches it, 1.0 if none does."""
    from sklearn.isotonic import IsotonicRegression

    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == y_true).astype(np.float64)
    fitted = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(
        confidence, correct, sample_weight=group_weights(groups, len(correct)))
    order = np.argsort(confidence)
    reached = fitted.predict(confidence[order]) >= UNSURE_ACCURACY
    if not reached.any():
        return 1.0
    first = int(np.argmax(reached))
    return 0.0 if first == 0 else float(confidence[order][first])
