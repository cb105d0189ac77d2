"""``ser-train calibrate``: the temperature and unsure threshold of a leave-one-corpus-out run fitted again
from its held-out int8 scores (``fold_scores.npz``), without retraining, optionally into its manifest."""

from __future__ import annotations

import json

import numpy as np

from trainer.config import UsageError
from trainer.recipes.runs import json_default, loco_run_config, manifest_metrics, utc_now
from trainer.report import CV


def calibrate(args) -> int:
    """``ser-train calibrate RUN_DIR [--model NAME.json]``: the calibration refit from the run's kept scores,
    printed (``--json``: the manifest's summary) and with ``--model`` written into that manifest (atomically,
    after the device's checks). Returns 0.

    :raises UsageError: for a folder that is not a LOCO run, or a manifest unreadable or of another run.
    """
    from edge.manifest import ModelManifest
    from trainer.export import git_commit
    from trainer.folds import corpus_of
    from trainer.generalization import CALIBRATION_RULE, calibration_from_parts

    config = loco_run_config(args.run_dir, CV, "fold_scores.npz")
    folds = json.loads((args.run_dir / CV).read_text())["int8"]["folds"]
    parts = []
    with np.load(args.run_dir / "fold_scores.npz") as scores:
        for row in folds:
            corpus = ",".join(sorted({corpus_of(speaker) for speaker in row["test_actors"]}))
            for condition in ("int8_scores", "far_int8_scores"):
                key = f"fold{row['fold']}_{condition}"
                if key in scores.files:
                    parts.append((scores[key], scores[f"fold{row['fold']}_y_true"], corpus))
    cal = calibration_from_parts(parts)
    summary = manifest_metrics({"loco": {"calibration": cal}})["loco"]["calibration"]  # without the reliability bins
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"temperature {cal['temperature']:.3f}, unsure below {cal['unsure_below']:.3f} "
              f"({cal['unsure_share']:.0%} of held-out decisions); ECE before -> after, cross-fitted:")
        for row in cal["per_corpus"]:
            print(f"  {row['corpus']:<12} {row['ece_before']:.3f} -> {row['ece_after']:.3f}")
        print(f"  {'mean':<12} {cal['ece_before_mean']:.3f} -> {cal['ece_after_cross_fitted_mean']:.3f}")
    if args.model is None:
        return 0
    try:
        manifest = json.loads(args.model.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--model {args.model}: cannot read the manifest ({exc})") from None
    if manifest.get("training", {}).get("command") != config.get("command"):
        raise UsageError(f"--model {args.model}: not the final model of {args.run_dir} (the manifest's "
                         "training.command differs from the run's)")
    manifest["calibration"] = {"temperature": cal["temperature"], "unsure_below": cal["unsure_below"]}
    if "loco" in manifest.get("metrics", {}):
        manifest["metrics"]["loco"]["calibration"] = summary
    manifest["training"]["calibration_rule"] = CALIBRATION_RULE
    manifest["training"]["calibration_refit"] = {
        "date": utc_now(),
        "git_commit": git_commit(), "run": args.run_dir.name}
    text = json.dumps(manifest, indent=2, default=json_default) + "\n"
    ModelManifest.from_dict(json.loads(text), str(args.model))  # the device's checks, before anything is replaced
    tmp = args.model.with_name(args.model.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(args.model)
    print(f"wrote the calibration into {args.model}")
    return 0
