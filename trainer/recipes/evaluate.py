"""``ser-train evaluate``: a corpus scored with a model through the edge runtime, as the daemon would
(``edge.pipeline.classify_features`` on the int8 model), with a warning for speakers it trained on."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np

from edge.postprocess import DecisionParams
from trainer.config import UsageError
from trainer.metrics import format_confusion, restricted_argmax, summarize
from trainer.recipes.data import load_clips

logger = logging.getLogger("trainer")


def evaluate(args) -> int:
    """``ser-train evaluate``: score ``--corpus`` with ``--model`` through the device's code path and print UA,
    WA, macro-F1, per-class recall and the confusion matrix (``--json``: one JSON object). Returns 0.

    :raises UsageError: for a bad ``--labels`` or no clip with a label among the decided ones.
    """
    from edge.model import load_model
    from trainer.evaluate import score_clips
    from trainer.featurize import featurize, report_clipping
    from trainer.labels import to_model_label

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
        label = to_model_label(clip, scheme, model.labels)
        reason = (f"{clip.corpus}:{clip.label} not in the model's {scheme} labels" if label is None
                  else f"{clip.corpus}:{clip.label} outside --labels" if label not in decide else None)
        if reason:
            excluded[reason] = excluded.get(reason, 0) + 1
        else:
            clips.append(dataclasses.replace(clip, label=label))
    if not clips:
        raise UsageError(f"no clip has a label among {','.join(decide)} (excluded: {excluded})")
    seen = seen_in_training(clips, model.manifest.training)
    for line in seen:
        logger.warning(line)
    feats = featurize(clips, model.manifest.features, cache_dir=args.cache_dir, progress=not args.no_progress)
    report_clipping(feats)
    scores, _ = score_clips(feats, model.score, model.manifest.features, model.manifest.input.frames,
                            DecisionParams(), progress=not args.no_progress, desc="int8 eval",
                            temperature=model.manifest.temperature)
    index = {label: k for k, label in enumerate(decide)}
    y_true = np.array([index[c.clip.label] for c in feats])
    y_pred = restricted_argmax(scores, [model.labels.index(label) for label in decide])
    summary = summarize(y_true, y_pred, decide)
    summary["trained_on"] = seen
    summary.update({"model": model.manifest.model_id, "label_scheme": scheme, "labels": list(decide),
                    "clips": len(feats), "loaded": len(loaded), "excluded": sum(excluded.values()),
                    "excluded_by_reason": excluded})
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"model {summary['model']} ({scheme}), {len(feats)} clips scored of {len(loaded)} loaded")
    for line in seen:
        print(f"  warning: {line}")
    for reason, n in excluded.items():
        print(f"  excluded {n:>5}  {reason}")
    print(f"UA {summary['ua']:.3f}  WA {summary['wa']:.3f}  macro-F1 {summary['macro_f1']:.3f}")
    for label, row in summary["per_class"].items():
        print(f"  recall {label:<18} {row['recall']:.3f}  (n={row['support']})")
    print(format_confusion(summary["confusion"], decide))
    return 0



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
