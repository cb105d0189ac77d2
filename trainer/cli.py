"""``ser-train``: train, evaluate and export the speech emotion model.

    ser-train fit --corpus ravdess=data/ravdess --corpus crema-d=data/crema-d --corpus tess=data/tess \
        --corpus savee=data/savee --corpus turev-db=data/turev-db --labels emotion4 --out models/emotion4-conv1d
    ser-train evaluate --model models/emotion4-conv1d.tflite --corpus ravdess=../shared/data/ravdess-mini
    ser-train evaluate --model models/emotion4-conv1d.tflite --corpus csv=my-clips.csv --json

Bad arguments and missing corpora exit with status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from edge.dsp.features import FeatureParams
from trainer.labels import SCHEMES

logger = logging.getLogger("trainer")

FRAMES = 200
"""Model input: 200 frames, 2.015 s at the default 10 ms hop / 25 ms window (the daemon's window): most
clips of the corpora are 1-3 s (TurEV-DB's single words about 1 s)."""
FEATURES = FeatureParams()
"""The front end every fit uses (the manifest records it, mean/std and adaptation filled in)."""


class UsageError(Exception):
    """A bad argument or missing input: printed as one line, exit status 2."""


def parse_corpus(value: str) -> tuple[str, Path]:
    from trainer.corpora import CORPORA

    kind, sep, path = value.partition("=")
    if not sep or not kind or not path:
        raise argparse.ArgumentTypeError(f"expected KIND=PATH, got {value!r}")
    if kind not in CORPORA:
        raise argparse.ArgumentTypeError(f"unknown corpus kind: expected one of {', '.join(sorted(CORPORA))}, got {kind!r}")
    return kind, Path(path)


CORPUS_KINDS = "ravdess, ravdess-song, crema-d, crema-d-perceived, tess, savee, turev-db, dusha, csv"
LABEL_SCHEMES = tuple(SCHEMES)


def parse_scheme(value: str) -> str:
    if value not in LABEL_SCHEMES:
        raise argparse.ArgumentTypeError(f"expected a label scheme ({', '.join(LABEL_SCHEMES)}), got {value!r}")
    return value


def _int_at_least(value: str, minimum: int, expected: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
    return number


def non_negative_int(value: str) -> int:
    return _int_at_least(value, 0, "0 or a positive integer")


def positive_int(value: str) -> int:
    return _int_at_least(value, 1, "a positive integer")


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ser-train", description="Train and evaluate the speech emotion model (workstation side).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"ser-train {__import__('edge').__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    fit = sub.add_parser(
        "fit",
        help="cross-validate speaker-independently, train the final model, write NAME.tflite + NAME.json",
        description="Speaker-independent cross-validation (int8 through edge and float), then a final model on all "
        "speakers for the median best epoch count, converted to full-integer int8 TFLite with its manifest.",
    )
    fit.add_argument("--corpus", action="append", type=parse_corpus, required=True, metavar="KIND=PATH",
                     help=f"corpus to train on, repeatable (kinds: {CORPUS_KINDS})")
    fit.add_argument("--labels", default="native", metavar="SCHEME", type=parse_scheme,
                     help=f"label scheme ({', '.join(LABEL_SCHEMES)}); default native, which needs corpora with "
                     "one native label set")
    fit.add_argument("--out", type=Path, required=True, metavar="models/NAME",
                     help="output base path: writes NAME.tflite and NAME.json")
    fit.add_argument("--epochs", type=positive_int, default=None,
                     help="epochs of each fold's cosine schedule (the maximum with --early-stopping); default "
                     "25, 2 with --quick")
    fit.add_argument("--folds", default="all", metavar="all|none|0,1,...",
                     help="which folds to run: all, none (final model only, needs --final-epochs or uses --epochs), or a list")
    fit.add_argument("--n-folds", type=positive_int, default=6,
                     help="speaker groups (6: RAVDESS fold k holds out actors 4k+1..4k+4)")
    fit.add_argument("--final-epochs", type=positive_int, default=None,
                     help="epochs of the final model; default: median of the folds' best epochs")
    fit.add_argument("--seed", type=int, default=0, help="random seed (numpy, TensorFlow, Python)")
    fit.add_argument("--batch-size", type=positive_int, default=32)
    fit.add_argument("--mixup", type=float, default=None, metavar="ALPHA",
                     help="mixup Beta(alpha, alpha); 0 = off; default TrainParams.mixup_alpha (0.3)")
    fit.add_argument("--ema", type=float, default=None, metavar="DECAY",
                     help="exponential moving average of the weights, updated every step; 0 = off (default 0.995)")
    fit.add_argument("--speed", default=None, metavar="F,F,...",
                     help="speed perturbation: also train on the clips resampled to these speeds, e.g. 0.9,1.1; "
                     "'none' = off (default 0.9,1.1). 0.8,0.9,1.1,1.2 gained in a short screen but not at full "
                     "length (README)")
    fit.add_argument("--noise-variants", type=int, default=None, metavar="N",
                     help="also train on N versions of each clip with pink noise at a random SNR (see --snr) "
                     "(default 0: off)")
    fit.add_argument("--snr", default=None, metavar="LOW,HIGH",
                     help="SNR range of the noisy versions in dB (default 10,30)")
    fit.add_argument("--gain", type=float, default=None, metavar="DB",
                     help="random gain of up to +-DB dB per training window (default 0: off)")
    fit.add_argument("--early-stopping", action="store_true",
                     help="stop each fold after 15 epochs without a better UA on its validation speakers and "
                     "keep its best epoch; the final model then trains for the folds' median best epoch. "
                     "Default off: every fold runs all --epochs on all its training speakers, which scored "
                     "higher on RAVDESS (see README)")
    fit.add_argument("--validation-speakers", type=non_negative_int, default=None, metavar="N",
                     help="speakers per corpus held out of each fold's training, for --early-stopping (for "
                     "RAVDESS the next fold's actors) or just to record validation curves; default 4 with "
                     "--early-stopping, else 0")
    fit.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                     help="folds trained in parallel, in processes of one TensorFlow thread each "
                     "(default: the number of CPUs); the folds' results do not depend on it")
    fit.add_argument("--protocol", choices=("auto", "loco", "speakers"), default="auto",
                     help="held-out evaluation: loco = leave-one-corpus-out (each corpus scored whole by a model "
                     "trained on the others, clean and far-field), speakers = the speaker folds (RAVDESS: 6 folds of "
                     "4 actors); auto = loco with two or more corpora, else speakers")
    fit.add_argument("--far-field-variants", type=non_negative_int, default=None, metavar="N",
                     help="train also on N versions of each clip through simulated rooms, noise and microphones "
                     "(trainer.acoustics; default 2)")
    fit.add_argument("--windows-per-epoch", type=non_negative_int, default=None, metavar="N",
                     help="windows per epoch, clips drawn balanced across corpora and classes (0: every clip "
                     "twice per epoch, weighted by class; default 6000)")
    fit.add_argument("--balance", choices=("clips", "speakers"), default=None,
                     help="weigh each corpus in the windows drawn by the square root of its clips or of its speakers "
                     "(default clips; speakers measured no better, README)")
    fit.add_argument("--adapt", type=float, default=None, metavar="SECONDS",
                     help="time constant of the normalisation that adapts on the device, in seconds of speech "
                     "(0: fixed training statistics; default 120)")
    fit.add_argument("--width", type=positive_int, default=None, metavar="FILTERS",
                     help="filters of the first Conv1D blocks (the last two have 1.5x and 2x); parameters grow "
                     "with its square: 64 gives a 162 KB int8 model, 96 about 330 KB (default 64)")
    fit.add_argument("--dropout", type=float, default=None, metavar="P",
                     help="dropout before the heads, in [0, 1) (default 0.3)")
    fit.add_argument("--instance-norm", action="store_true",
                     help="subtract each window's mean over time from every coefficient inside the model (per-window "
                     "cepstral mean normalisation, on top of the adaptation)")
    fit.add_argument("--pitch", action="store_true",
                     help="append the frame's F0 (log2 re 100 Hz) and clarity to its MFCCs (McLeod pitch method, "
                     "edge.features.pitch_features; the device computes them too): a new front end, so the "
                     "feature cache fills anew. On the five corpora it lowered LOCO UA (README)")
    fit.add_argument("--mfcc", type=positive_int, default=None, metavar="N",
                     help="MFCCs per frame, 1..n_mels (40): fewer keep only the coarse spectral envelope (a new "
                     "front end, so the feature cache fills anew; default 40). 13 and 20 lowered LOCO UA in a screen (README)")
    fit.add_argument("--adversary", type=float, default=None, metavar="WEIGHT",
                     help="corpus-adversarial training: a corpus classifier behind gradient reversal of this final "
                     "strength (ramped up from 0; Ganin et al. 2016) pushes the features to not tell the training "
                     "corpora apart. 0 = off (default); needs two or more training corpora and the dimensions head. "
                     "0.5 lowered LOCO UA on the five corpora (README)")
    fit.add_argument("--no-dimensions", action="store_true",
                     help="no arousal/valence head (a classifier only, softmax output)")
    fit.add_argument("--no-far-field-eval", action="store_true", help="skip the far-field evaluation condition")
    fit.add_argument("--hold-out-speakers", default="", metavar="S,S,...",
                     help="speakers kept out of everything, e.g. crema-d:1001,crema-d:1002 (the demo's actors)")
    fit.add_argument("--allow-chance", action="store_true",
                     help="write the model even if its held-out UA is at chance level (smoke tests)")
    fit.add_argument("--quick", action="store_true", help="tiny budget for smoke tests: 2 epochs, 1 crop per clip")
    fit.add_argument("--cache-dir", type=Path, default=Path("cache/features"), help="feature cache folder")
    fit.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where the run's config and results go")
    fit.add_argument("--no-progress", action="store_true", help="no progress bars")
    fit.add_argument("--no-baseline", action="store_true", help="skip the MLP baseline on the same folds in the report")

    ev = sub.add_parser(
        "evaluate",
        help="score a corpus with a model through the edge runtime; print UA, WA, per-class recall, confusion",
        description="Score every clip through edge.pipeline.classify_features with the int8 model, as the daemon would.",
    )
    ev.add_argument("--model", type=Path, required=True, metavar="models/NAME.tflite")
    ev.add_argument("--corpus", action="append", type=parse_corpus, required=True, metavar="KIND=PATH",
                    help=f"corpus to score, repeatable (kinds: {CORPUS_KINDS}); labels are mapped to the model's scheme")
    ev.add_argument("--labels", default=None, metavar="a,b,...",
                    help="decide among these model labels only (argmax over their scores); clips of other labels "
                    "are excluded and counted")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ev.add_argument("--cache-dir", type=Path, default=Path("cache/features"))
    ev.add_argument("--no-progress", action="store_true")

    rs = sub.add_parser("rescore", help="re-score a leave-one-corpus-out run under other adaptation settings",
                        description="Score every held-out corpus of a leave-one-corpus-out run again with its fold's "
                        "int8 model (RUN_DIR/folds/), as the device hears it, under other settings of the adaptive "
                        "normalisation (edge.features.AdaptiveNormalizer), without retraining: int8 UA per corpus "
                        "and the accuracy over the first clips of each stream (the warm-up). Run it from the folder "
                        "the fit ran in (the run's corpus paths are relative to it).")
    rs.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder of ser-train fit, runs/NAME-<UTC>")
    rs.add_argument("--prior", default="10", metavar="S,S,...",
                    help="weight of the training statistics at start-up, seconds of speech (default: 10)")
    rs.add_argument("--time-constant", default="120", metavar="S,S,...",
                    help="the adaptation's time constant, seconds of speech; 0 = the training statistics, no "
                    "adaptation (default: 120)")
    rs.add_argument("--far-field", action="store_true", help="the far-field condition instead of the clean clips")
    rs.add_argument("--warm-up", type=positive_int, default=50, metavar="N",
                    help="accuracy over the first N clips of each held-out stream (default: 50)")
    rs.add_argument("--json", action="store_true", help="print the rows as JSON")
    rs.add_argument("--cache-dir", type=Path, default=Path("cache/features"))
    rs.add_argument("--no-progress", action="store_true")

    cb = sub.add_parser("calibrate", help="fit a leave-one-corpus-out run's calibration again from its held-out scores",
                        description="Fit the temperature and the unsure threshold again from the held-out int8 scores "
                        "a leave-one-corpus-out run kept (RUN_DIR/fold_scores.npz, clean and far-field), with the "
                        "calibration rule of this version (trainer.generalization.CALIBRATION_RULE), without "
                        "retraining, and print them with the ECE per held-out corpus. With --model, write them into "
                        "the manifest of that run's final model (the .tflite, and so the model's sha256, is "
                        "untouched; the manifest records the refit under training.calibration_refit).")
    cb.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder of ser-train fit, runs/NAME-<UTC>")
    cb.add_argument("--model", type=Path, default=None, metavar="MANIFEST",
                    help="the run's final model manifest (NAME.json) to update; it must name the run's command")
    cb.add_argument("--json", action="store_true", help="print the calibration as JSON")

    rp = sub.add_parser("report", help="regenerate a run's report.md and PNGs from its results.json",
                        description="Render runs/NAME-<UTC>/report.md and its figures from the saved results.json.")
    rp.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    return parser


def speaker_set(spec: str) -> set[str]:
    """``--hold-out-speakers``: comma-separated ``corpus:speaker``, e.g. ``crema-d:1001,crema-d:1002``."""
    return {s.strip() for s in spec.split(",") if s.strip()}


def without_speakers(loaded: list, held_out: set[str]) -> list:
    """``loaded`` clips without those of the ``held_out`` speakers (:func:`speaker_set`; empty: all of them).

    :raises UsageError: for a speaker with no clips in ``loaded``.
    """
    if not held_out:
        return loaded
    unknown = held_out - {c.speaker for c in loaded}
    if unknown:
        raise UsageError(f"--hold-out-speakers: no clips of {', '.join(sorted(unknown))} in the corpora")
    kept = [c for c in loaded if c.speaker not in held_out]
    logger.info("held out of everything: %s (%d clips)", ", ".join(sorted(held_out)), len(loaded) - len(kept))
    return kept


def parse_seconds(value: str, option: str) -> list[float]:
    """``"3,10,30"`` -> ``[3.0, 10.0, 30.0]``: seconds of speech, each finite and in 0..86400.

    :raises UsageError: naming ``option`` otherwise.
    """
    try:
        out = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        out = []
    if not out or not all(np.isfinite(v) and 0 <= v <= 86400 for v in out):
        raise UsageError(f"{option}: expected seconds in 0..86400, comma-separated, got {value!r}")
    return out


def load_clips(corpora):
    from trainer.corpora import load_corpus

    clips = []
    for kind, root in corpora:
        loaded = load_corpus(kind, root)
        logger.info("corpus %s: %d clips, %d speakers from %s", kind, len(loaded), len({c.speaker for c in loaded}), root)
        clips.extend(loaded)
    return clips


def parse_speeds(value: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
    if value is None:
        return default
    if value == "none":
        return ()
    try:
        speeds = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise UsageError(f"--speed: expected speeds such as 0.9,1.1 or none, got {value!r}") from None
    if not all(0.5 <= v <= 2.0 for v in speeds):
        raise UsageError(f"--speed: expected speeds between 0.5 and 2, got {value!r}")
    return speeds


def parse_snr(value: str | None, default: tuple[float, float]) -> tuple[float, float]:
    if value is None:
        return default
    try:
        low, high = (float(v) for v in value.split(","))
    except ValueError:
        raise UsageError(f"--snr: expected LOW,HIGH in dB such as 10,30, got {value!r}") from None
    if not low <= high:
        raise UsageError(f"--snr: expected LOW <= HIGH, got {value!r}")
    return low, high


def fold_training_protocol(validation_speakers: int, early_stopping: bool, epochs: int) -> str:
    """How each fold trains, for the manifest's ``protocol`` string."""
    if early_stopping:
        return f"{validation_speakers} validation speakers per corpus for early stopping (at most {epochs} epochs)"
    if validation_speakers:
        return (f"{validation_speakers} validation speakers per corpus held out (curves only), a fixed "
                f"{epochs}-epoch schedule")
    return f"a fixed {epochs}-epoch schedule on all the fold's training speakers, no early stopping"


def parse_fold_selection(value: str, n_folds: int) -> list[int]:
    if value == "all":
        return list(range(n_folds))
    if value == "none":
        return []
    try:
        chosen = sorted({int(v) for v in value.split(",")})
    except ValueError:
        raise UsageError(f"--folds: expected all, none or a list such as 0,1, got {value!r}") from None
    if not all(0 <= k < n_folds for k in chosen):
        raise UsageError(f"--folds: expected fold numbers 0..{n_folds - 1}, got {value!r}")
    return chosen


CHANCE_MARGIN = 0.05
"""A held-out UA within this of chance (1 / labels) counts as chance level: ``fit`` refuses to write it."""


def drop_silent(feats, threshold_dbfs: float | None = None):
    """Clips whose loudest frame is below ``threshold_dbfs`` (default ``trainer.corpora.SILENCE_PEAK_DBFS``;
    digital silence, such as CREMA-D's ``1076_MTI_SAD_XX.wav``) are left out, each logged with its reason."""
    from edge.dsp.vad import log_energy_to_dbfs
    from trainer.corpora import SILENCE_PEAK_DBFS

    threshold_dbfs = SILENCE_PEAK_DBFS if threshold_dbfs is None else threshold_dbfs

    kept = []
    for f in feats:
        peak = float(log_energy_to_dbfs(f.log_energy, FEATURES).max()) if f.log_energy.size else -np.inf
        if peak < threshold_dbfs:
            logger.warning("skipped %s: silent (loudest frame %.0f dBFS < %.0f dBFS)", f.clip.path, peak, threshold_dbfs)
        else:
            kept.append(f)
    return kept


def fit(args) -> int:
    from edge.model import load_model
    from edge.postprocess import DecisionParams
    from trainer.export import git_commit, write_model
    from trainer.featurize import featurize, with_variants
    from trainer.folds import corpus_folds, speaker_folds
    from trainer.labels import apply_scheme, dimension_targets
    from trainer.model import TrainParams
    from trainer.train import (
        DIMENSIONS,
        FAR_FIELD_EVAL,
        final_epochs,
        fit_and_convert,
        limit_threads,
        pooled_metrics,
        run_folds,
        training_perturbations,
    )

    started = time.monotonic()
    progress = not args.no_progress
    max_epochs = args.epochs or (2 if args.quick else TrainParams.epochs)
    if args.ema is not None and not 0 <= args.ema < 1:
        raise UsageError(f"--ema: expected a decay in [0, 1), got {args.ema}")
    if args.noise_variants is not None and args.noise_variants < 0:
        raise UsageError(f"--noise-variants: expected 0 or more, got {args.noise_variants}")
    if args.gain is not None and args.gain < 0:
        raise UsageError(f"--gain: expected 0 or more dB, got {args.gain}")
    if args.adapt is not None and not (np.isfinite(args.adapt) and 0 <= args.adapt <= 86400):
        raise UsageError(f"--adapt: expected 0..86400 seconds of speech, got {args.adapt}")
    if args.adversary is not None and not (np.isfinite(args.adversary) and 0 <= args.adversary <= 10):
        raise UsageError(f"--adversary: expected a weight in [0, 10], got {args.adversary}")
    if args.adversary and args.no_dimensions:
        raise UsageError("--adversary needs the arousal/valence head: drop --no-dimensions")
    if args.dropout is not None and not 0 <= args.dropout < 1:
        raise UsageError(f"--dropout: expected a probability in [0, 1), got {args.dropout}")
    given = {"mixup_alpha": args.mixup, "ema_decay": args.ema, "noise_variants": args.noise_variants,
             "gain_db": args.gain, "far_field_variants": args.far_field_variants,
             "windows_per_epoch": args.windows_per_epoch, "corpus_balance": args.balance, "adapt_time_constant_s": args.adapt,
             "width": args.width, "dropout": args.dropout, "instance_norm": args.instance_norm or None,
             "adversary_weight": args.adversary}
    train_params = TrainParams(epochs=max_epochs, batch_size=args.batch_size, seed=args.seed,
                               crops_per_clip=1 if args.quick else TrainParams.crops_per_clip,
                               speed_factors=parse_speeds(args.speed, TrainParams.speed_factors),
                               noise_snr_db=parse_snr(args.snr, TrainParams.noise_snr_db),
                               early_stopping=args.early_stopping,
                               **{name: value for name, value in given.items() if value is not None})
    if args.validation_speakers is None:
        args.validation_speakers = 4 if args.early_stopping else 0
    if args.early_stopping and args.validation_speakers == 0:
        raise UsageError("--early-stopping needs validation speakers: --validation-speakers 1 or more")
    if args.mfcc is not None and args.mfcc > FEATURES.n_mels:
        raise UsageError(f"--mfcc: expected 1..{FEATURES.n_mels} (the mel bands), got {args.mfcc}")
    features = dataclasses.replace(FEATURES, pitch=args.pitch, n_mfcc=args.mfcc or FEATURES.n_mfcc)
    decision = DecisionParams()
    loaded = load_clips(args.corpus)
    held_out = speaker_set(args.hold_out_speakers)
    loaded = without_speakers(loaded, held_out)
    dims = None if args.no_dimensions else {str(c.path): dimension_targets(c) or (0.0, 0.0) for c in loaded}
    clips, labels, excluded = apply_scheme(loaded, args.labels)
    if excluded:
        logger.info("label scheme %s excludes %s", args.labels, ", ".join(f"{n} {k}" for k, n in excluded.items()))
    corpora = sorted({c.corpus for c in clips})
    protocol = args.protocol if args.protocol != "auto" else ("loco" if len(corpora) >= 2 else "speakers")
    if protocol == "loco" and len(corpora) < 2:
        raise UsageError(f"--protocol loco: expected two or more corpora, got {', '.join(corpora)}")
    run_dir = args.runs_dir / f"{args.out.name}-{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%SZ}"
    run_dir.mkdir(parents=True, exist_ok=True)
    command = shlex.join([Path(sys.argv[0]).name] + sys.argv[1:])
    config = {"command": command, "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "train_params": dataclasses.asdict(train_params), "features": features.to_dict(),
              "decision": dataclasses.asdict(decision), "frames": FRAMES, "protocol": protocol}
    config["args"]["corpus"] = [f"{k}={p}" for k, p in args.corpus]
    (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    logger.info("run config in %s", run_dir / "config.json")

    import keras

    limit_threads(1)
    keras.utils.set_random_seed(args.seed)
    feats = drop_silent(featurize(clips, features, cache_dir=args.cache_dir, progress=progress))
    clips = [f.clip for f in feats]
    speakers = sorted({c.speaker for c in clips})
    if protocol == "speakers" and (args.n_folds > len(speakers) or args.n_folds < 2):
        raise UsageError(f"--n-folds: expected 2..{len(speakers)} (speakers in the corpora), got {args.n_folds}")
    feats = with_variants(feats, features, training_perturbations(train_params), cache_dir=args.cache_dir,
                          progress=progress)
    far_field = protocol == "loco" and not args.no_far_field_eval
    if far_field:
        featurize(clips, features, cache_dir=args.cache_dir, progress=progress, perturbation=FAR_FIELD_EVAL)

    if protocol == "loco":
        folds = corpus_folds(c.speaker for c in clips)
        selected = parse_fold_selection(args.folds, len(folds))
    else:
        folds = speaker_folds(Counter(c.speaker for c in clips), args.n_folds, args.validation_speakers)
        selected = parse_fold_selection(args.folds, args.n_folds)

    def log_fold(result) -> None:
        row = result.row(labels)
        logger.info("fold %d (%s): int8 UA %.3f WA %.3f | float UA %.3f WA %.3f", result.fold,
                    ",".join(result.test_corpora), row["ua"], row["wa"], row["float_ua"], row["float_wa"])

    jobs = min(args.jobs or os.cpu_count() or 1, max(len(selected), 1))
    results = run_folds([folds[k] for k in selected], feats, labels, features, FRAMES, train_params, decision,
                        progress, jobs, args.cache_dir, log_fold, dims, far_field)

    from trainer.generalization import format_loco_table, loco_metrics

    save_fold_scores(run_dir / "fold_scores.npz", results)
    save_fold_models(run_dir / "folds", results)

    metrics: dict = {}
    temperature, unsure_below = 1.0, 0.0
    if results:
        metrics = pooled_metrics(results, labels)
        if protocol == "loco":
            metrics["loco"] = loco_metrics(results, labels)
            print(format_loco_table(metrics["loco"]))
            held_out_ua = metrics["loco"]["clean"]["int8"]["mean"]["ua"]
            if dims is not None:
                temperature = metrics["loco"]["calibration"]["temperature"]
                unsure_below = metrics["loco"]["calibration"]["unsure_below"]
        else:
            print(format_fold_table(metrics))
            held_out_ua = metrics["int8"]["ua"]
        (run_dir / "cv.json").write_text(json.dumps(metrics, indent=2, default=_json_default) + "\n")
        chance = 1 / len(labels)
        if held_out_ua <= chance + CHANCE_MARGIN and not args.allow_chance:
            raise UsageError(f"held-out UA {held_out_ua:.3f} is at chance level ({chance:.2f} + {CHANCE_MARGIN}): "
                             f"no model written (figures in {run_dir / 'cv.json'}; --allow-chance writes it anyway)")

    epochs = args.final_epochs or final_epochs(results, max_epochs)
    logger.info("final model: all %d speakers, %d epochs, no early stopping", len(speakers), epochs)
    final_params = dataclasses.replace(train_params, epochs=epochs)
    _, fitted, _, flatbuffer = fit_and_convert(feats, [], labels, features, FRAMES, final_params, progress, "final",
                                               None, dims)
    counts: dict[str, dict] = {}
    for c in clips:
        entry = counts.setdefault(c.corpus, {"name": c.corpus, "clips": 0, "speakers": set()})
        entry["clips"] += 1
        entry["speakers"].add(c.speaker)
    protocol_text = "none"
    if results and protocol == "loco":
        protocol_text = ("leave-one-corpus-out: each corpus scored whole by a model trained on the others, clean "
                         "and far-field, clips heard in a fixed random order with the adaptive normalisation "
                         "carried from clip to clip; " + fold_training_protocol(0, False, max_epochs))
    elif results:
        protocol_text = (f"{args.n_folds}-fold speaker-independent (RAVDESS fold k tests actors 4k+1..4k+4; other "
                         f"corpora's speakers spread over the folds), " + fold_training_protocol(
                             args.validation_speakers, train_params.early_stopping, max_epochs))
    training = {
        "corpora": [{"name": e["name"], "clips": e["clips"], "speakers": len(e["speakers"])} for e in counts.values()],
        "speakers": speakers,
        "held_out_speakers": sorted(held_out),
        "protocol": protocol_text,
        "folds_run": selected,
        "seed": args.seed,
        "date": _utc_now(),
        "git_commit": git_commit(),
        "command": command,
        "epochs": epochs,
        "fold_best_epochs": [r.best_epoch for r in results],
        "train_params": dataclasses.asdict(final_params),
    }
    training["label_scheme"] = args.labels
    if results and protocol == "loco" and dims is not None:
        from trainer.generalization import CALIBRATION_RULE

        training["calibration_rule"] = CALIBRATION_RULE
    training["excluded_clips"] = excluded
    manifest_metrics = _manifest_metrics(metrics)
    tflite_path, json_path = write_model(args.out, flatbuffer, labels, args.labels, fitted, FRAMES, training,
                                         manifest_metrics, DIMENSIONS if dims is not None else (), temperature,
                                         unsure_below)
    model = load_model(tflite_path)  # the device's own checks: sha256, shapes, labels
    write_run_report(args, run_dir, training, labels, features, clips, [folds[k] for k in selected], results, metrics,
                     progress)
    size_kb = tflite_path.stat().st_size / 1024
    elapsed = time.monotonic() - started
    (run_dir / "result.json").write_text(json.dumps({"model": str(tflite_path), "manifest": str(json_path),
                                                     "size_kb": size_kb, "wall_time_s": elapsed}, indent=2) + "\n")
    print(f"wrote {tflite_path} ({size_kb:.1f} KB, {model.manifest.model_id}) and {json_path} in {elapsed / 60:.1f} min")
    return 0


def save_fold_scores(path: Path, results) -> None:
    """Every fold's per-clip test scores (int8 and float, clean and far-field, dimensions and targets) as
    ``.npz`` arrays named ``fold<k>_<what>`` (``fold<k>_corpus``: each test clip's corpus), for analyses
    after the run (warm-up, thresholds, one corpus of speaker folds)."""
    arrays = {}
    for r in results:
        for name in ("y_true", "int8_scores", "float_scores", "dims_true", "int8_dims", "float_dims"):
            if getattr(r, name) is not None:
                arrays[f"fold{r.fold}_{name}"] = getattr(r, name)
        if r.clip_corpora:
            arrays[f"fold{r.fold}_corpus"] = np.asarray(r.clip_corpora)
        for name, value in (r.far or {}).items():
            if value is not None:
                arrays[f"fold{r.fold}_far_{name}"] = value
    np.savez_compressed(path, **arrays)


def save_fold_models(folder: Path, results) -> None:
    """Every fold's int8 model and manifest as ``folder/fold<k>.tflite`` and ``.json``: held-out figures
    can be re-scored under other device settings (e.g. the adaptation's time constant) without retraining."""
    for r in results:
        for suffix, data in r.model_files.items():
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"fold{r.fold}{suffix}").write_bytes(data)


def _utc_now() -> str:
    """The current UTC time, RFC 3339 to the second with a ``Z`` (the manifest's dates)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _loco_run_config(run_dir: Path, *files: str) -> dict:
    """The ``config.json`` of a leave-one-corpus-out run folder of ``fit``, after checking that it and
    ``files`` (names in the folder) exist. Raises :class:`UsageError` naming what is missing or wrong."""
    for name in ("config.json", *files):
        if not (run_dir / name).is_file():
            raise UsageError(f"{run_dir / name}: not found (expected a run folder of ser-train fit)")
    config = json.loads((run_dir / "config.json").read_text())
    if config.get("protocol") != "loco":
        raise UsageError(f"{run_dir}: expected a leave-one-corpus-out run, got protocol {config.get('protocol')}")
    return config


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _manifest_metrics(metrics: dict) -> dict:
    """The manifest's ``metrics``: the headline figures, without per-bin and confusion detail."""
    if not metrics:
        return {}
    out = json.loads(json.dumps(metrics, default=_json_default))
    loco = out.get("loco")
    if loco:
        loco.pop("confusion", None)
        for key in ("reliability_before", "reliability_after"):
            loco["calibration"].pop(key, None)
    return out


def write_run_report(args, run_dir, training, labels, features, clips, folds, results, metrics, progress) -> None:
    """Save ``results.json`` (with the MLP baseline on the same folds) and render ``report.md`` + PNGs."""
    from trainer.report import example_clip, render, save_results

    baseline = None
    if results and not args.no_baseline:
        from trainer.baseline import mlp_on_folds

        baseline = mlp_on_folds(clips, labels, folds, args.seed, args.cache_dir, progress)
        logger.info("MLP baseline on the same folds: pooled UA %.3f, mean of folds %.3f", baseline["ua"],
                    baseline["mean_fold_ua"])
    tested = sorted((c for c in clips if folds and c.speaker in folds[0].test), key=lambda c: str(c.path))
    save_results(run_dir, {"name": args.out.name, **training, "labels": list(labels), "features": features.to_dict(),
                           "metrics": metrics, "histories": {str(r.fold): r.history for r in results},
                           "baseline_mlp": baseline, "example_clip": example_clip(tested or clips)})
    print(f"report: {render(run_dir)}")


def report(args) -> int:
    from trainer.report import RESULTS, render

    if not (args.run_dir / RESULTS).is_file():
        raise UsageError(f"expected a run directory with {RESULTS}, got {args.run_dir}")
    print(render(args.run_dir))
    return 0


def calibrate(args) -> int:
    from edge.manifest import ModelManifest
    from trainer.export import git_commit
    from trainer.folds import corpus_of
    from trainer.generalization import CALIBRATION_RULE, calibration_from_parts

    config = _loco_run_config(args.run_dir, "cv.json", "fold_scores.npz")
    folds = json.loads((args.run_dir / "cv.json").read_text())["int8"]["folds"]
    parts = []
    with np.load(args.run_dir / "fold_scores.npz") as scores:
        for row in folds:
            corpus = ",".join(sorted({corpus_of(speaker) for speaker in row["test_actors"]}))
            for condition in ("int8_scores", "far_int8_scores"):
                key = f"fold{row['fold']}_{condition}"
                if key in scores.files:
                    parts.append((scores[key], scores[f"fold{row['fold']}_y_true"], corpus))
    cal = calibration_from_parts(parts)
    summary = _manifest_metrics({"loco": {"calibration": cal}})["loco"]["calibration"]  # without the reliability bins
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
        "date": _utc_now(),
        "git_commit": git_commit(), "run": args.run_dir.name}
    text = json.dumps(manifest, indent=2, default=_json_default) + "\n"
    ModelManifest.from_dict(json.loads(text), str(args.model))  # the device's checks, before anything is replaced
    tmp = args.model.with_name(args.model.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(args.model)
    print(f"wrote the calibration into {args.model}")
    return 0


def rescore(args) -> int:
    from sklearn.metrics import balanced_accuracy_score

    from edge.model import load_model
    from edge.postprocess import DecisionParams
    from trainer.evaluate import score_clips
    from trainer.featurize import featurize
    from trainer.folds import corpus_folds
    from trainer.labels import apply_scheme
    from trainer.train import FAR_FIELD_EVAL, stream_order

    config = _loco_run_config(args.run_dir)
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


def format_fold_table(metrics: dict) -> str:
    lines = ["fold  test actors        int8 UA  int8 WA  float UA  float WA  best epoch"]
    for row in metrics["int8"]["folds"]:
        actors = ",".join(s.split(":")[-1] for s in row["test_actors"])
        lines.append(f"{row['fold']:>4}  {actors:<17} {row['ua']:>8.3f} {row['wa']:>8.3f} {row['float_ua']:>9.3f} "
                     f"{row['float_wa']:>9.3f} {row['best_epoch']:>11d}")
    i, f = metrics["int8"], metrics["float"]
    lines.append(f"pooled                  {i['ua']:>8.3f} {i['wa']:>8.3f} {f['ua']:>9.3f} {f['wa']:>9.3f}")
    lines.append(f"mean of folds           {i['mean_fold_ua']:>8.3f} {i['mean_fold_wa']:>8.3f} "
                 f"{f['mean_fold_ua']:>9.3f} {f['mean_fold_wa']:>9.3f}")
    for corpus, m in metrics.get("per_corpus", {}).items():
        i, f = m["int8"], m["float"]
        lines.append(f"{corpus + ' only':<23} {i['ua']:>8.3f} {i['wa']:>8.3f} {f['ua']:>9.3f} {f['wa']:>9.3f}"
                     f"  (mean of {i['folds']} folds: UA {i['mean_fold_ua']:.3f} int8, {f['mean_fold_ua']:.3f} float)")
    return "\n".join(lines)


def evaluate(args) -> int:
    from edge.model import load_model
    from edge.postprocess import DecisionParams
    from trainer.evaluate import format_confusion, restricted_argmax, score_clips, summarize
    from trainer.featurize import featurize
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
    such figures are not held-out. Older manifests without the list are checked by corpus name."""
    trained = set(training.get("speakers") or [])
    trained_corpora = {c["name"] for c in training.get("corpora", []) if isinstance(c, dict) and "name" in c}
    lines = []
    for corpus in sorted({c.corpus for c in clips}):
        mine = {c.speaker for c in clips if c.corpus == corpus}
        overlap = mine & trained if trained else (mine if corpus in trained_corpora else set())
        if overlap:
            lines.append(f"{corpus}: {len(overlap)} of its {len(mine)} speakers were in the model's training data "
                         f"({', '.join(sorted(overlap)[:4])}{', ...' if len(overlap) > 4 else ''}): these figures are "
                         "not held-out")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edge.audio.io import AudioError
    from edge.manifest import ManifestError
    from edge.model import ModelError
    from trainer.corpora import CorpusError
    from trainer.labels import LabelSchemeError

    try:
        return {"fit": fit, "evaluate": evaluate, "report": report, "rescore": rescore,
                "calibrate": calibrate}[args.command](args)
    except (UsageError, CorpusError, LabelSchemeError, ManifestError, ModelError, AudioError) as exc:
        print(f"ser-train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ser-train: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
