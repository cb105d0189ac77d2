"""``ser-train evaluate``: a corpus scored with a model through the edge runtime, as the daemon would
(``edge.pipeline.classify_features`` on the int8 model), with a warning for speakers it trained on; the
arousal/valence ROC AUCs from the clips' labels, the natural-neutral figures of partially labelled clips,
and the per-clip scores as CSV."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging

import numpy as np

from edge.postprocess import DecisionParams
from trainer.config import UsageError
from trainer.metrics import (
    AROUSAL_HIGH,
    AROUSAL_LOW,
    NOT_A_CLASS,
    VALENCE_NEGATIVE,
    VALENCE_POSITIVE,
    format_confusion,
    label_auc,
    natural_neutral,
    restricted_argmax,
    summarize,
)
from trainer.recipes.data import load_clips

logger = logging.getLogger("trainer")


def evaluate(args) -> int:
    """``ser-train evaluate``: score ``--corpus`` with ``--model`` through the device's code path and print UA,
    WA, macro-F1, per-class recall and the confusion matrix (``--json``: one JSON object); with a model that
    has arousal/valence outputs also ``arousal_auc`` and ``valence_auc`` (:func:`dimension_aucs`); with
    clips labelled ``non-neutral`` (CORAA-SER) the natural-neutral figures (``natural_neutral``); with
    ``--scores FILE`` one CSV row per scored clip (:func:`write_scores`). Returns 0.

    :raises UsageError: for a bad ``--labels``, no clip with a label among the decided ones, or a
        ``--scores`` file that cannot be written.
    """
    from edge.model import load_model
    from trainer.evaluate import score_clips
    from trainer.featurize import featurize, report_clipping
    from trainer.labels import NEUTRAL, NON_NEUTRAL, to_model_label

    if args.scores is not None and not args.scores.parent.is_dir():
        raise UsageError(f"--scores: expected a file in an existing folder, got {args.scores}")
    model = load_model(args.model)
    scheme = model.manifest.label_scheme
    decide = model.labels
    if args.labels is not None:
        decide = tuple(dict.fromkeys(v.strip() for v in args.labels.split(",") if v.strip()))
        unknown = [v for v in decide if v not in model.labels]
        if len(decide) < 2 or unknown:
            raise UsageError(f"--labels: expected at least 2 of the model's labels {','.join(model.labels)}, "
                             f"got {args.labels!r}")
    loaded = load_clips(args.corpus)
    clips, excluded = [], {}
    for clip in loaded:
        # a partial label is scored (natural-neutral figures) while a decision includes neutral, never in UA
        label = NON_NEUTRAL if clip.label == NON_NEUTRAL and NEUTRAL in decide else \
            to_model_label(clip, scheme, model.labels)
        reason = (f"{clip.corpus}:{clip.label} not in the model's {scheme} labels" if label is None
                  else f"{clip.corpus}:{clip.label} outside --labels" if label not in decide + (NON_NEUTRAL,) else None)
        if reason:
            excluded[reason] = excluded.get(reason, 0) + 1
        else:
            clips.append(dataclasses.replace(clip, label=label))
    if not any(c.label in decide for c in clips):
        raise UsageError(f"no clip has a label among {','.join(decide)} (excluded: {excluded})")
    seen = seen_in_training(clips, model.manifest.training)
    for line in seen:
        logger.warning(line)
    feats = featurize(clips, model.manifest.features, cache_dir=args.cache_dir, progress=not args.no_progress)
    report_clipping(feats)
    scores, dims = score_clips(feats, model.score, model.manifest.features, model.manifest.input.frames,
                               DecisionParams(), progress=not args.no_progress, desc="int8 eval",
                               temperature=model.manifest.temperature)
    index = {label: k for k, label in enumerate(decide)}
    labels = [c.clip.label for c in feats]
    y_true = np.array([index.get(label, NOT_A_CLASS) for label in labels])
    y_pred = restricted_argmax(scores, [model.labels.index(label) for label in decide])
    summary = summarize(y_true, y_pred, decide)
    summary["trained_on"] = seen
    summary.update({"model": model.manifest.model_id, "label_scheme": scheme, "labels": list(decide),
                    "clips": len(feats), "ua_clips": int(np.sum(y_true != NOT_A_CLASS)), "loaded": len(loaded),
                    "excluded": sum(excluded.values()), "excluded_by_reason": excluded})
    summary.update(dimension_aucs(labels, dims, model.manifest.dimensions))
    if NON_NEUTRAL in labels:
        summary["natural_neutral"] = natural_neutral(labels, scores, model.labels)
    if args.scores is not None:
        write_scores(args.scores, feats, scores, dims, model.labels, model.manifest.dimensions,
                     [decide[k] for k in y_pred], model.manifest.unsure_below)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"model {summary['model']} ({scheme}), {len(feats)} clips scored of {len(loaded)} loaded")
    for line in seen:
        print(f"  warning: {line}")
    for reason, n in excluded.items():
        print(f"  excluded {n:>5}  {reason}")
    print(f"UA {summary['ua']:.3f}  WA {summary['wa']:.3f}  macro-F1 {summary['macro_f1']:.3f}"
          f"  (over {summary['ua_clips']} clips)")
    for label, row in summary["per_class"].items():
        print(f"  recall {label:<18} {row['recall']:.3f}  (n={row['support']})")
    print(format_confusion(summary["confusion"], decide))
    for name in ("arousal", "valence"):
        if f"{name}_auc" in summary:
            auc, reason = summary[f"{name}_auc"], summary[f"{name}_auc_reason"]
            print(f"{name} ROC AUC " + (f"{auc:.3f}" if auc is not None else f"n/a ({reason})"))
    if "natural_neutral" in summary:
        nn = summary["natural_neutral"]
        print(f"natural neutral: recall {_figure(nn['neutral_recall'])} of {nn['neutral_clips']} neutral clips; "
              f"ROC AUC of P(neutral) {_figure(nn['neutral_auc'])} against {nn['non_neutral_clips']} non-neutral"
              + (f" ({nn['reason']})" if nn["reason"] else ""))
    if args.scores is not None:
        print(f"scores: {args.scores}")
    return 0


def _figure(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def dimension_aucs(labels: list[str], dims: np.ndarray | None, dimensions: tuple[str, ...]) -> dict:
    """``arousal_auc``, ``valence_auc`` and their ``*_auc_reason`` (None when the figure exists) and
    ``*_auc_clips`` (``{"positive": n, "negative": n}``) over the scored clips: the ROC AUC of the model's
    arousal output for high (:data:`trainer.metrics.AROUSAL_HIGH`) against low
    (:data:`trainer.metrics.AROUSAL_LOW`) arousal clips, and of its valence output for positive against
    negative ones (:func:`trainer.metrics.label_auc`). ``dims``: float ``(n, len(dimensions))`` or None.
    Empty (no keys) for a model without the output."""
    out = {}
    for name, positive, negative in (("arousal", AROUSAL_HIGH, AROUSAL_LOW),
                                     ("valence", VALENCE_POSITIVE, VALENCE_NEGATIVE)):
        if dims is None or name not in dimensions:
            continue
        auc = label_auc(labels, dims[:, dimensions.index(name)], positive, negative)
        out.update({f"{name}_auc": auc["auc"], f"{name}_auc_reason": auc["reason"],
                    f"{name}_auc_clips": {"positive": auc["positive"], "negative": auc["negative"]}})
    return out


def score_columns(model_labels: tuple[str, ...]) -> list[str]:
    """The header of ``--scores``: ``path, corpus, speaker, label, predicted, p_<label>`` for each of the
    model's labels in output order, ``arousal, valence, unsure``."""
    return ["path", "corpus", "speaker", "label", "predicted", *(f"p_{label}" for label in model_labels),
            "arousal", "valence", "unsure"]


def write_scores(path, feats, scores: np.ndarray, dims: np.ndarray | None, model_labels: tuple[str, ...],
                 dimensions: tuple[str, ...], predicted: list[str], unsure_below: float) -> None:
    """One CSV row per scored clip (Python's ``csv`` module, columns :func:`score_columns`), in the order the
    clips were loaded: ``label`` the clip's label in the model's scheme (or ``non-neutral``), ``predicted``
    the decision (argmax over the decided labels), ``p_<label>`` the calibrated probabilities
    ``scores`` float ``(n, n_labels)`` (9 significant digits: float32 round-trips), ``arousal``/``valence``
    in [-1, 1] (empty for a model without them), ``unsure`` 1 when the clip's top probability is below
    the manifest's ``unsure_below`` (the daemon's rule, on the clip's averaged scores), else 0.

    :raises UsageError: if the file cannot be written.
    """
    def column(name: str, k: int) -> str:
        return "" if dims is None or name not in dimensions else format(float(dims[k, dimensions.index(name)]), ".9g")

    try:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(score_columns(model_labels))
            for k, f in enumerate(feats):
                writer.writerow([str(f.clip.path), f.clip.corpus, f.clip.speaker, f.clip.label, predicted[k],
                                 *(format(float(p), ".9g") for p in scores[k]), column("arousal", k),
                                 column("valence", k), int(float(scores[k].max()) < unsure_below)])
    except OSError as exc:
        raise UsageError(f"--scores: cannot write {path}: {exc.strerror or exc}") from None


def seen_in_training(clips, training: dict) -> list[str]:
    """One line per corpus of ``clips`` whose speakers the manifest's ``training.speakers`` include:
    such figures are not held-out. Older manifests without the list are checked by corpus kind (``kind``,
    or ``name`` in manifests written before corpora had a display name)."""
    trained = set(training.get("speakers") or [])
    trained_corpora = {c.get("kind", c.get("name")) for c in training.get("corpora", []) if isinstance(c, dict)}
    lines = []
    for corpus in sorted({c.corpus for c in clips}):
        mine = {c.speaker for c in clips if c.corpus == corpus}
        overlap = mine & trained if trained else (mine if corpus in trained_corpora else set())
        if overlap:
            lines.append(f"{corpus}: {len(overlap)} of its {len(mine)} speakers were in the model's training data "
                         f"({', '.join(sorted(overlap)[:4])}{', ...' if len(overlap) > 4 else ''}): these figures are "
                         "not held-out")
    return lines
