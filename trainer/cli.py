"""``ser-train``: train, evaluate and export the speech emotion model.

    ser-train fit --corpus ravdess=data/ravdess --corpus crema-d=data/crema-d --corpus tess=data/tess \
        --corpus savee=data/savee --corpus turev-db=data/turev-db --labels emotion4 --out models/emotion4-conv1d
    ser-train evaluate --model models/emotion4-conv1d.tflite --corpus ravdess=../shared/data/ravdess-mini
    ser-train evaluate --model models/emotion4-conv1d.tflite --corpus csv=my-clips.csv --json

Bad arguments and missing corpora exit with status 2 and one line on stderr, never a traceback.

This module is the parser and the dispatch only: flags are validated in :mod:`trainer.config`, each
command is a recipe of stages in :mod:`trainer.recipes`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

from trainer.config import CORPUS_KINDS, LABEL_SCHEMES, UsageError, parse_corpus, parse_scheme

logger = logging.getLogger("trainer")

TRAINING_MODULES = frozenset({"sklearn", "tensorflow", "keras", "tf_keras", "matplotlib", "tqdm", "pyroomacoustics"})
"""Top-level modules of the ``train`` extra (pyproject.toml): a device-only install (``pip install .``) lacks them."""

MISSING_EXTRA = "ser-train needs the training extra: pip install 'ser-edge[train]'"
"""The one line ``ser-train`` prints, exit status 1, when one of :data:`TRAINING_MODULES` is missing."""


def missing_training_module(exc: ImportError) -> str | None:
    """The :data:`TRAINING_MODULES` entry ``exc`` failed to import, else None (any other import error is a bug)."""
    top = (exc.name or "").split(".")[0]
    return top if top in TRAINING_MODULES else None


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


def add_scoring_output(parser: argparse.ArgumentParser, json_help: str) -> None:
    """The last options of the commands that score clips (evaluate, rescore): --json, --cache-dir, --no-progress."""
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument("--cache-dir", type=Path, default=Path("cache/features"))
    parser.add_argument("--no-progress", action="store_true")


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
                     "length: LOCO UA 0.482 against 0.494 (docs/research-log.md)")
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
                     "higher on RAVDESS: 6-fold int8 UA 0.640 against 0.621 with early stopping on 4 of the 20 "
                     "training actors, mean of seeds 0 and 1, and in 8.5 instead of 13-15 min "
                     "(docs/research-log.md)")
    fit.add_argument("--validation-speakers", type=non_negative_int, default=None, metavar="N",
                     help="speakers per corpus held out of each fold's training, for --early-stopping (for "
                     "RAVDESS the next fold's actors) or just to record validation curves; default 4 with "
                     "--early-stopping, else 0")
    fit.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                     help="folds trained in parallel, in processes of one TensorFlow thread each "
                     "(default: the number of CPUs, as many as memory allows: each holds every clip's features, "
                     "about 9.5 GB for the ten corpora); the folds' results do not depend on it")
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
                     "(default clips; speakers measured no better: LOCO UA 0.490 against 0.494, docs/research-log.md)")
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
                     "edge.dsp.features.pitch_features; the device computes them too): a new front end, so the "
                     "feature cache fills anew. On the five corpora it lowered LOCO UA, 0.465 against 0.494, and doubled "
                     "the pipeline's CPU time (docs/research-log.md)")
    fit.add_argument("--mfcc", type=positive_int, default=None, metavar="N",
                     help="MFCCs per frame, 1..n_mels (40): fewer keep only the coarse spectral envelope (a new "
                     "front end, so the feature cache fills anew; default 40). 13 and 20 lowered LOCO UA in a screen, 0.435 "
                     "against 0.451 (docs/research-log.md)")
    fit.add_argument("--missing-classes", default=None, metavar="restrict|ignore",
                     help="a class a corpus has no clips of (EmoSpeech has no sad): restrict = each clip's softmax "
                     "is renormalised over the classes its corpus has, so the corpus teaches nothing about the "
                     "others; ignore = plain softmax over all classes (default restrict)")
    fit.add_argument("--no-remove-dc-offset", action="store_true",
                     help="keep each frame's DC offset in the MFCCs (the front end of models before it; default: "
                     "subtract each frame's mean before pre-emphasis, as Kaldi's --remove-dc-offset, so a "
                     "microphone's DC offset does not change what the model hears); recorded in the manifest")
    fit.add_argument("--adversary", type=float, default=None, metavar="WEIGHT",
                     help="corpus-adversarial training: a corpus classifier behind gradient reversal of this final "
                     "strength (ramped up from 0; Ganin et al. 2016) pushes the features to not tell the training "
                     "corpora apart. 0 = off (default); needs two or more training corpora and the dimensions head. "
                     "0.5 lowered LOCO UA on the five corpora, 0.474 against 0.494 (docs/research-log.md)")
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
        description="Score every clip through edge.pipeline.classify_features with the int8 model, as the daemon would. "
        "Clips labelled non-neutral (a partial label, CORAA-SER) are scored but left out of UA and the confusion "
        "matrix; they count in the natural-neutral figures.",
    )
    ev.add_argument("--model", type=Path, required=True, metavar="models/NAME.tflite")
    ev.add_argument("--corpus", action="append", type=parse_corpus, required=True, metavar="KIND=PATH",
                    help=f"corpus to score, repeatable (kinds: {CORPUS_KINDS}); labels are mapped to the model's scheme")
    ev.add_argument("--labels", default=None, metavar="a,b,...",
                    help="decide among these model labels only (argmax over their scores); clips of other labels "
                    "are excluded and counted")
    ev.add_argument("--scores", type=Path, default=None, metavar="FILE.csv",
                    help="write one CSV row per scored clip: path, corpus, speaker, label, predicted, p_<label> "
                    "(each of the model's labels, calibrated probability), arousal, valence (empty without those "
                    "outputs), unsure (1 when the top probability is below the manifest's unsure_below)")
    add_scoring_output(ev, "print the metrics as JSON: ua, wa, macro_f1, per_class, confusion, clips, ...; with "
                       "arousal/valence outputs also arousal_auc (ROC AUC of arousal, high = angry, happy, fearful, "
                       "surprised vs low = neutral, calm, sad) and valence_auc (happy vs angry, sad, fearful, "
                       "disgust), null with *_auc_reason when a side has no clip; with clips labelled non-neutral "
                       "natural_neutral (neutral recall, ROC AUC of P(neutral) against non-neutral)")

    rs = sub.add_parser("rescore", help="re-score a leave-one-corpus-out run under other adaptation settings",
                        description="Score every held-out corpus of a leave-one-corpus-out run again with its fold's "
                        "int8 model (RUN_DIR/folds/), as the device hears it, under other settings of the adaptive "
                        "normalisation (edge.dsp.normalize.AdaptiveNormalizer), without retraining: int8 UA per corpus "
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
    add_scoring_output(rs, "print the rows as JSON")

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

    rp = sub.add_parser("report", help="regenerate a run's report.md and PNGs from its results.json; compare runs "
                        "(seeds) by their headline",
                        description="Render runs/NAME-<UTC>/report.md and its figures from the saved results.json. "
                        "With several run folders (the same recipe fitted with --seed 0, --seed 1, ...), print instead "
                        "each run's leave-one-corpus-out headline (int8: emotion4 UA mean over the four-emotion "
                        "corpora, clean and far-field, the lowest corpus, issue 8's five, EmoSpeech, CORAA-SER's "
                        "natural-neutral figures) with their mean, spread (max - min) and standard deviation. A run "
                        "stopped after its folds (no final model, no results.json) is compared from its cv.json.")
    rp.add_argument("run_dir", type=Path, nargs="+", metavar="RUN_DIR")
    rp.add_argument("--json", action="store_true", help="print the comparison of the runs as JSON (even for one run)")
    return parser


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
        command = getattr(importlib.import_module(f"trainer.recipes.{args.command}"), args.command)
        return command(args)
    except ImportError as exc:  # a device-only install: say what to install, not a traceback
        if missing_training_module(exc) is None:
            raise
        print(f"{MISSING_EXTRA} (no module {missing_training_module(exc)!r})", file=sys.stderr)
        return 1
    except (UsageError, CorpusError, LabelSchemeError, ManifestError, ModelError, AudioError) as exc:
        print(f"ser-train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ser-train: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
