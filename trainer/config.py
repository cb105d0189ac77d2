"""Training configuration, parsed and validated once: :class:`TrainParams` (the recipe's
hyper-parameters, recorded in the manifest), :class:`FitConfig` (everything else ``ser-train fit`` is
asked), and the parsers of the flags' values. A bad value raises :class:`UsageError` with one line,
"--flag: expected X, got Y", before any data is read.

Imports no TensorFlow: ``ser-train --help`` and flag errors stay fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from edge.dsp.features import FeatureParams
from trainer.corpora import CORPORA
from trainer.labels import SCHEMES

FRAMES = 200
"""Model input: 200 frames, 2.015 s at the default 10 ms hop / 25 ms window (the daemon's window): most
clips of the corpora are 1-3 s (TurEV-DB's single words about 1 s)."""
FEATURES = FeatureParams()
"""The front end every fit uses (the manifest records it, mean/std and adaptation filled in)."""
LABEL_SCHEMES = tuple(SCHEMES)
CORPUS_KINDS = ", ".join(CORPORA)
"""The corpus kinds ``--corpus KIND=PATH`` accepts, for help texts (the keys of :data:`trainer.corpora.CORPORA`)."""
MAX_SECONDS = 86400
"""Upper bound of every seconds-of-speech setting (the adaptation's time constant and prior)."""


class UsageError(Exception):
    """A bad argument or missing input: printed as one line, exit status 2."""


class ConfigError(ValueError):
    """A :class:`TrainParams` field out of range: ``field``, what is ``expected``, the value ``got``."""

    def __init__(self, field: str, expected: str, got: object):
        super().__init__(f"{field}: expected {expected}, got {got!r}")
        self.field, self.expected, self.got = field, expected, got


def _finite_in(low: float, high: float):
    return lambda v: math.isfinite(v) and low <= v <= high


TRAIN_PARAM_RANGES = {
    "epochs": (lambda v: v >= 1, "a positive integer"),
    "batch_size": (lambda v: v >= 1, "a positive integer"),
    "crops_per_clip": (lambda v: v >= 1, "a positive integer"),
    "mixup_alpha": (lambda v: math.isfinite(v) and v >= 0, "0 or more"),
    "dropout": (lambda v: 0 <= v < 1, "a probability in [0, 1)"),
    "width": (lambda v: v >= 1, "a positive integer"),
    "ema_decay": (lambda v: 0 <= v < 1, "a decay in [0, 1)"),
    "speed_factors": (lambda v: all(0.5 <= s <= 2.0 for s in v), "speeds between 0.5 and 2"),
    "noise_variants": (lambda v: v >= 0, "0 or more"),
    "noise_snr_db": (lambda v: v[0] <= v[1], "LOW <= HIGH"),
    "gain_db": (lambda v: v >= 0, "0 or more dB"),
    "far_field_variants": (lambda v: v >= 0, "0 or more"),
    "windows_per_epoch": (lambda v: v >= 0, "0 or more"),
    "corpus_balance": (lambda v: v in ("clips", "speakers"), "clips or speakers"),
    "adapt_time_constant_s": (_finite_in(0, MAX_SECONDS), f"0..{MAX_SECONDS} seconds of speech"),
    "adapt_prior_s": (_finite_in(0, MAX_SECONDS), f"0..{MAX_SECONDS} seconds of speech"),
    "adversary_weight": (_finite_in(0, 10), "a weight in [0, 10]"),
}
"""What each checked :class:`TrainParams` field accepts: ``field -> (predicate, expected)``."""

FIT_FLAGS = {"epochs": "--epochs", "batch_size": "--batch-size", "mixup_alpha": "--mixup", "dropout": "--dropout",
             "width": "--width", "ema_decay": "--ema", "speed_factors": "--speed", "noise_variants": "--noise-variants",
             "noise_snr_db": "--snr", "gain_db": "--gain", "far_field_variants": "--far-field-variants",
             "windows_per_epoch": "--windows-per-epoch", "corpus_balance": "--balance",
             "adapt_time_constant_s": "--adapt", "adversary_weight": "--adversary"}
"""The ``ser-train fit`` flag that sets each :class:`TrainParams` field."""


@dataclass(frozen=True)
class TrainParams:
    """Training hyper-parameters; recorded in the manifest's ``training`` block. Validates itself on
    construction (:data:`TRAIN_PARAM_RANGES`); :meth:`from_args` builds it from ``ser-train fit``'s flags."""

    epochs: int = 25
    """Length of the cosine schedule (the maximum with ``early_stopping``)."""
    batch_size: int = 32
    learning_rate: float = 2e-3
    patience: int = 15
    seed: int = 0
    crops_per_clip: int = 2
    noise_std: float = 0.1
    time_masks: int = 2
    time_mask_frames: int = 25
    coefficient_masks: int = 1
    coefficient_mask_width: int = 5
    mixup_alpha: float = 0.3
    dropout: float = 0.3
    width: int = 64
    instance_norm: bool = False
    """Subtract each window's mean over time from every coefficient, inside the model (per-window CMN)."""
    deltas: bool = True
    """Append deltas and delta-deltas computed inside the model (fixed depthwise Conv1D, N=2)."""
    attention_pooling: bool = True
    """Add a learned softmax-over-time weighted average to the global average and max pooling."""
    daemon_windows: float = 1.0
    """Fraction of training windows ending where the daemon's windows end (VAD), the rest random crops."""
    end_jitter_frames: int = 30
    """Uniform jitter (+-) of the daemon-placed window ends."""
    label_smoothing: float = 0.1
    early_stopping: bool = False
    """Stop after ``patience`` epochs without a better validation UA and keep the best epoch's weights
    (needs validation speakers); False: run all ``epochs`` of the cosine schedule and keep the last
    weights (validation UA, if any, is still recorded). On the RAVDESS 6-fold protocol a fixed 25
    epochs on all 20 training actors beat early stopping on 4 of them held out: int8 UA 0.640 against
    0.621, mean of seeds 0 and 1 (docs/research-log.md)."""
    ema_decay: float = 0.995
    """Exponential moving average of the weights, updated every step (0 = off). Validation, early
    stopping and the exported model all use the averaged weights (Polyak & Juditsky 1992; the
    warm-up ``min(decay, (1 + t) / (10 + t))`` of ``tf.train.ExponentialMovingAverage``)."""
    speed_factors: tuple[float, ...] = (0.9, 1.1)
    """Speed perturbation (Ko et al., Interspeech 2015): besides the original, each clip is also
    featurised resampled to these speeds, and every epoch draws one version per clip uniformly."""
    noise_variants: int = 0
    """Versions of each clip with additive pink noise (``trainer.featurize.Perturbation``), at the
    original speed and then each of ``speed_factors`` in turn; drawn like the speed versions."""
    noise_snr_db: tuple[float, float] = (10.0, 30.0)
    """SNR range of the noisy versions, dB, drawn uniformly per clip."""
    gain_db: float = 0.0
    """Random gain per training window, uniform in +-``gain_db`` dB: a shift of the log-energy
    coefficient 0, which is exactly what a gain does to it (the other MFCCs are unchanged by a gain)."""
    far_field_variants: int = 2
    """Versions of each training clip through a simulated room, noise and microphone
    (:mod:`trainer.acoustics`, ``split="train"``); drawn like the speed versions."""
    windows_per_epoch: int = 6000
    """0: every clip ``crops_per_clip`` times per epoch. Otherwise this many windows per epoch, clips
    drawn with the sampling weights :func:`trainer.train.balanced_weights` gives (balanced across
    corpora and classes)."""
    corpus_balance: str = "clips"
    """How :func:`trainer.train.balanced_weights` weighs the corpora: by the square root of their clips
    ("clips") or of their speakers ("speakers": a corpus of two voices is drawn less than one of ninety)."""
    dims_weight: float = 0.5
    """Weight of the arousal/valence regression loss (mean squared error) beside the label loss."""
    adapt_time_constant_s: float = 120.0
    """Adaptive normalisation time constant, seconds of speech (``edge.dsp.normalize.AdaptiveNormalizer``);
    0 = fixed training statistics."""
    adapt_prior_s: float = 10.0
    """Weight of the training statistics at start-up, seconds of speech."""
    adversary_weight: float = 0.0
    """Corpus-adversarial training (domain-adversarial training, Ganin et al., JMLR 2016): a corpus
    classifier on the pooled features behind a gradient reversal layer whose strength ramps from 0 to
    this value as ``w (2 / (1 + exp(-10 p)) - 1)``, ``p`` the fraction of training done (their eq. 14).
    0 = off. The corpus head exists only while training; the exported model does not have it."""

    def __post_init__(self) -> None:
        """:raises ConfigError: for the first field outside its range (see :data:`TRAIN_PARAM_RANGES`)."""
        for name, (accepts, expected) in TRAIN_PARAM_RANGES.items():
            value = getattr(self, name)
            if not accepts(value):
                raise ConfigError(name, expected, value)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainParams:
        """The parameters ``ser-train fit``'s flags ask for (:func:`trainer.cli.build_parser`), defaults where
        a flag is not given; ``--quick`` means 2 epochs and 1 crop per clip.

        :raises UsageError: naming the flag, for a value out of range or unparseable.
        """
        given = {"mixup_alpha": args.mixup, "ema_decay": args.ema, "noise_variants": args.noise_variants,
                 "gain_db": args.gain, "far_field_variants": args.far_field_variants,
                 "windows_per_epoch": args.windows_per_epoch, "corpus_balance": args.balance,
                 "adapt_time_constant_s": args.adapt, "width": args.width, "dropout": args.dropout,
                 "instance_norm": args.instance_norm or None, "adversary_weight": args.adversary}
        try:
            return cls(epochs=args.epochs or (2 if args.quick else cls.epochs), batch_size=args.batch_size,
                       seed=args.seed, crops_per_clip=1 if args.quick else cls.crops_per_clip,
                       speed_factors=parse_speeds(args.speed, cls.speed_factors),
                       noise_snr_db=parse_snr(args.snr, cls.noise_snr_db), early_stopping=args.early_stopping,
                       **{name: value for name, value in given.items() if value is not None})
        except ConfigError as exc:
            flag = FIT_FLAGS.get(exc.field)
            if flag is None:
                raise UsageError(str(exc)) from None
            raw = getattr(args, flag[2:].replace("-", "_"))
            got = repr(raw) if isinstance(raw, str) else raw
            raise UsageError(f"{flag}: expected {exc.expected}, got {got}") from None


@dataclass(frozen=True)
class FitConfig:
    """Everything ``ser-train fit`` is asked, validated: the corpora, the label scheme, the outputs, the
    evaluation protocol and :class:`TrainParams`. Checks that need the data (the number of corpora and
    speakers) are made once it is loaded (:mod:`trainer.recipes.fit`)."""

    corpora: tuple[tuple[str, Path], ...]
    """``(kind, root)`` pairs of ``--corpus``."""
    scheme: str
    out: Path
    """Output base path: ``out.tflite`` and ``out.json``."""
    train_params: TrainParams
    features: FeatureParams
    """The front end: :data:`FEATURES` with ``--pitch`` and ``--mfcc``."""
    protocol: str
    """``auto``, ``loco`` or ``speakers`` as asked (``auto`` is resolved against the corpora)."""
    folds: str
    """``--folds`` as given (parsed by :func:`parse_fold_selection` once the folds are known)."""
    n_folds: int
    validation_speakers: int
    final_epochs: int | None
    jobs: int | None
    hold_out: frozenset[str]
    dimensions: bool
    far_field_eval: bool
    allow_chance: bool
    baseline: bool
    progress: bool
    cache_dir: Path
    runs_dir: Path
    recorded_args: dict = field(repr=False, default_factory=dict)
    """The flags as parsed (``--validation-speakers`` resolved), recorded in the run's ``config.json``."""

    @property
    def seed(self) -> int:
        return self.train_params.seed

    @property
    def max_epochs(self) -> int:
        """Epochs of each fold's schedule (the maximum with early stopping)."""
        return self.train_params.epochs

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FitConfig:
        """:raises UsageError: one line naming the flag, for any value out of range or flags that contradict."""
        train_params = TrainParams.from_args(args)
        if args.adversary and args.no_dimensions:
            raise UsageError("--adversary needs the arousal/valence head: drop --no-dimensions")
        validation_speakers = args.validation_speakers
        if validation_speakers is None:
            validation_speakers = 4 if args.early_stopping else 0
        if args.early_stopping and validation_speakers == 0:
            raise UsageError("--early-stopping needs validation speakers: --validation-speakers 1 or more")
        if args.mfcc is not None and args.mfcc > FEATURES.n_mels:
            raise UsageError(f"--mfcc: expected 1..{FEATURES.n_mels} (the mel bands), got {args.mfcc}")
        recorded = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        recorded["validation_speakers"] = validation_speakers
        recorded["corpus"] = [f"{k}={p}" for k, p in args.corpus]
        return cls(corpora=tuple(args.corpus), scheme=args.labels, out=args.out, train_params=train_params,
                   features=dataclasses.replace(FEATURES, pitch=args.pitch, n_mfcc=args.mfcc or FEATURES.n_mfcc),
                   protocol=args.protocol, folds=args.folds, n_folds=args.n_folds,
                   validation_speakers=validation_speakers, final_epochs=args.final_epochs, jobs=args.jobs,
                   hold_out=frozenset(speaker_set(args.hold_out_speakers)), dimensions=not args.no_dimensions,
                   far_field_eval=not args.no_far_field_eval, allow_chance=args.allow_chance,
                   baseline=not args.no_baseline, progress=not args.no_progress, cache_dir=args.cache_dir,
                   runs_dir=args.runs_dir, recorded_args=recorded)


def parse_corpus(value: str) -> tuple[str, Path]:
    """``--corpus KIND=PATH`` -> ``(kind, Path(path))``; raises :class:`argparse.ArgumentTypeError`."""
    kind, sep, path = value.partition("=")
    if not sep or not kind or not path:
        raise argparse.ArgumentTypeError(f"expected KIND=PATH, got {value!r}")
    if kind not in CORPORA:
        raise argparse.ArgumentTypeError(f"unknown corpus kind: expected one of {', '.join(sorted(CORPORA))}, got {kind!r}")
    return kind, Path(path)


def parse_scheme(value: str) -> str:
    """``--labels SCHEME``: one of :data:`LABEL_SCHEMES`; raises :class:`argparse.ArgumentTypeError`."""
    if value not in LABEL_SCHEMES:
        raise argparse.ArgumentTypeError(f"expected a label scheme ({', '.join(LABEL_SCHEMES)}), got {value!r}")
    return value


def speaker_set(spec: str) -> set[str]:
    """``--hold-out-speakers``: comma-separated ``corpus:speaker``, e.g. ``crema-d:1001,crema-d:1002``."""
    return {s.strip() for s in spec.split(",") if s.strip()}


def parse_seconds(value: str, option: str) -> list[float]:
    """``"3,10,30"`` -> ``[3.0, 10.0, 30.0]``: seconds of speech, each finite and in 0..:data:`MAX_SECONDS`.

    :raises UsageError: naming ``option`` otherwise.
    """
    try:
        out = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        out = []
    if not out or not all(math.isfinite(v) and 0 <= v <= MAX_SECONDS for v in out):
        raise UsageError(f"{option}: expected seconds in 0..{MAX_SECONDS}, comma-separated, got {value!r}")
    return out


def parse_speeds(value: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
    """``--speed``: ``"0.9,1.1"`` -> ``(0.9, 1.1)``, ``"none"`` -> ``()``, None -> ``default``. The range is
    :class:`TrainParams`' to check. :raises UsageError: for a value that is not a list of numbers."""
    if value is None:
        return default
    if value == "none":
        return ()
    try:
        speeds = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise UsageError(f"--speed: expected speeds such as 0.9,1.1 or none, got {value!r}") from None
    return speeds


def parse_snr(value: str | None, default: tuple[float, float]) -> tuple[float, float]:
    """``--snr``: ``"10,30"`` -> ``(10.0, 30.0)`` dB, None -> ``default``. LOW <= HIGH is :class:`TrainParams`'
    to check. :raises UsageError: for a value that is not two numbers."""
    if value is None:
        return default
    try:
        low, high = (float(v) for v in value.split(","))
    except ValueError:
        raise UsageError(f"--snr: expected LOW,HIGH in dB such as 10,30, got {value!r}") from None
    return low, high


def parse_fold_selection(value: str, n_folds: int) -> list[int]:
    """``--folds``: ``all`` -> ``[0..n_folds)``, ``none`` -> ``[]``, ``"0,2"`` -> ``[0, 2]``.
    :raises UsageError: for another value or a fold number outside ``0..n_folds - 1``."""
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
