"""``ser-train rescore``: a leave-one-corpus-out run's held-out corpora scored again by their folds' int8
models under other settings of the device's adaptive normalisation, without retraining."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from edge.dsp.features import FeatureParams
from edge.postprocess import DecisionParams
from trainer.config import FEATURES, UsageError, parse_corpus, parse_scheme, parse_seconds, speaker_set
from trainer.recipes.data import drop_silent, load_clips, without_speakers
from trainer.recipes.runs import loco_run_config


def rescore(args) -> int:
    """``ser-train rescore RUN_DIR``: every fold's kept int8 model (``RUN_DIR/folds/``) scores its held-out
    corpus again under each ``--prior`` x ``--time-constant`` of the adaptive normalisation; prints int8 UA
    and the accuracy over the first ``--warm-up`` clips per corpus and their means (``--json``). Returns 0.

    :raises UsageError: for a folder that is not a LOCO run or has no fold models, or bad seconds.
    """
    from sklearn.metrics import balanced_accuracy_score

    from edge.model import load_model
    from trainer.crossval import FAR_FIELD_EVAL
    from trainer.evaluate import score_clips
    from trainer.featurize import featurize, report_clipping
    from trainer.folds import corpus_folds
    from trainer.labels import apply_scheme
    from trainer.streams import stream_order

    config = loco_run_config(args.run_dir)
    models = sorted((args.run_dir / "folds").glob("fold*.tflite"), key=lambda p: int(p.stem[4:]))
    if not models:
        raise UsageError(f"{args.run_dir / 'folds'}: no fold models (this run is older than kept fold models)")
    priors = parse_seconds(args.prior, "--prior")
    constants = parse_seconds(args.time_constant, "--time-constant")
    progress = not args.no_progress
    seed = config["train_params"]["seed"]
    loaded = without_speakers(load_clips([parse_corpus(c) for c in config["args"]["corpus"]]),
                              speaker_set(config["args"]["hold_out_speakers"] or ""))
    clips, _, _ = apply_scheme(loaded, parse_scheme(config["args"]["labels"]))
    features = FeatureParams.from_dict(config["features"]) if "features" in config else FEATURES
    feats = drop_silent(featurize(clips, features, cache_dir=args.cache_dir, progress=progress))
    report_clipping(feats)
    folds = corpus_folds(f.clip.speaker for f in feats)
    rows = []
    for path in models:
        model = load_model(path)
        fold = folds[int(path.stem[4:])]
        test = [f for f in feats if f.clip.speaker in set(fold.test)]
        if args.far_field:
            test = featurize([f.clip for f in test], features, cache_dir=args.cache_dir, progress=progress,
                             perturbation=FAR_FIELD_EVAL)
        y = np.array([model.labels.index(f.clip.label) for f in test])
        first = np.asarray(stream_order(test, seed))[: args.warm_up]
        for prior in priors:
            for constant in constants:
                params = dataclasses.replace(model.manifest.features, adapt_prior_s=prior,
                                             adapt_time_constant_s=constant)
                scores, _ = score_clips(test, model.score, params, model.manifest.input.frames, DecisionParams(),
                                        progress, f"{test[0].clip.corpus} {prior:g}/{constant:g} s", seed)
                pred = scores.argmax(axis=1)
                rows.append({"corpus": test[0].clip.corpus, "clips": len(test), "prior_s": prior,
                             "time_constant_s": constant, "ua": float(balanced_accuracy_score(y, pred)),
                             "first_accuracy": float(np.mean(pred[first] == y[first]))})
    means = []
    for p in priors:
        for t in constants:
            setting = [r for r in rows if (r["prior_s"], r["time_constant_s"]) == (p, t)]
            means.append({"prior_s": p, "time_constant_s": t, "ua": float(np.mean([r["ua"] for r in setting])),
                          "first_accuracy": float(np.mean([r["first_accuracy"] for r in setting]))})
    if args.json:
        print(json.dumps({"condition": "far" if args.far_field else "clean", "warm_up": args.warm_up, "rows": rows,
                          "mean": means}, indent=2))
        return 0
    print(f"{'far-field' if args.far_field else 'clean'}, int8; first {args.warm_up}: accuracy over the first "
          f"{args.warm_up} clips of each stream")
    print(f"{'prior':>7} {'time constant':>14}  {'corpus':<10} {'clips':>6} {'int8 UA':>8} {'first ' + str(args.warm_up):>9}")
    for r in rows + [dict(m, corpus="mean", clips="") for m in means]:
        print(f"{r['prior_s']:>6g}s {r['time_constant_s']:>13g}s  {r['corpus']:<10} {r['clips']:>6} {r['ua']:>8.3f} "
              f"{r['first_accuracy']:>9.3f}")
    return 0
