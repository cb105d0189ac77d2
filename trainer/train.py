"""Speaker-independent cross-validation and the final model: train, convert to int8, score through edge.

Every fold's model is converted to int8, loaded with :func:`edge.model.load_model` and scored
clip by clip with :func:`edge.pipeline.classify_features` (the daemon's code path); the float
Keras model is scored through the same function, so int8 and float differ only in the model.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics as stats
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.dsp.features import FeatureParams
from edge.dsp.normalize import AdaptiveNormalizer
from edge.dsp.vad import EnergyVAD, Segment
from edge.model import load_model
from edge.postprocess import DecisionParams, WindowPlacement
from trainer.evaluate import keras_score, score_clips, summarize
from trainer.export import REPRESENTATIVE_WINDOWS, to_int8_tflite, write_model
from trainer.featurize import ClipFeatures, Perturbation, statistics
from trainer.folds import Fold
from trainer.model import TrainParams, random_windows, train

logger = logging.getLogger(__name__)


@dataclass
class FoldResult:
    fold: int
    test_speakers: tuple[str, ...]
    validation_speakers: tuple[str, ...]
    best_epoch: int
    y_true: np.ndarray
    int8_scores: np.ndarray
    float_scores: np.ndarray
    history: list[dict] = dataclasses.field(default_factory=list)
    """Per-epoch records of the fold's training (``trainer.model.train``): epoch, loss, val_ua."""
    dims_true: np.ndarray | None = None
    """float32 ``(n, 2)`` arousal/valence targets of the test clips (NaN where the emotion has none)."""
    int8_dims: np.ndarray | None = None
    float_dims: np.ndarray | None = None
    far: dict | None = None
    """Far-field condition: ``{"int8_scores", "float_scores", "int8_dims", "float_dims"}``."""
    test_corpora: tuple[str, ...] = ()
    test_labels: tuple[str, ...] = ()
    """Native labels of the test clips (for emotion4 scoring of models with more labels)."""
    clip_corpora: tuple[str, ...] = ()
    """Corpus of each test clip, in the order of ``y_true``."""
    model_files: dict[str, bytes] = dataclasses.field(default_factory=dict, repr=False)
    """The fold's int8 model as the device reads it: ``{".tflite": bytes, ".json": bytes}`` (the manifest),
    for analyses after the run (:func:`trainer.cli.save_fold_models`)."""

    def row(self, labels: tuple[str, ...]) -> dict:
        int8 = summarize(self.y_true, self.int8_scores.argmax(axis=1), labels)
        flt = summarize(self.y_true, self.float_scores.argmax(axis=1), labels)
        return {
            "fold": self.fold,
            "test_actors": list(self.test_speakers),
            "validation_actors": list(self.validation_speakers),
            "clips": int(len(self.y_true)),
            "best_epoch": self.best_epoch,
            "ua": int8["ua"],
            "wa": int8["wa"],
            "float_ua": flt["ua"],
            "float_wa": flt["wa"],
        }


def speech_segments(log_energy: np.ndarray, features: FeatureParams, frames: int,
                    decision: DecisionParams | None = None) -> list[Segment]:
    """The utterances :class:`edge.pipeline.Pipeline` finds in a clip's frame log energies (its VAD)."""
    decision = decision or DecisionParams()
    placement = WindowPlacement.of(features, frames, decision)
    vad = EnergyVAD(decision.vad, features, max_utterance_frames=placement.max_utterance_frames)
    return vad.process(log_energy) + vad.flush()


def speech_frames(mfcc: np.ndarray, log_energy: np.ndarray, features: FeatureParams, frames: int,
                  decision: DecisionParams | None = None) -> np.ndarray:
    """The frames inside the VAD's utterances (all frames if it finds none). float32 ``(k, n_mfcc)``."""
    parts = [mfcc[s.start:s.end] for s in speech_segments(log_energy, features, frames, decision)]
    return np.concatenate(parts) if parts else mfcc


def with_statistics(params: FeatureParams, clips: list[ClipFeatures], frames: int = 300,
                    adapt_time_constant_s: float = 0.0, adapt_prior_s: float = 10.0) -> FeatureParams:
    """``params`` with the training statistics over the clips' *speech* frames (what the adaptive
    normaliser tracks on the device) and the adaptation constants."""
    mean, std = statistics([ClipFeatures(c.clip, speech_frames(c.mfcc, c.log_energy, params, frames), c.log_energy)
                            for c in clips])
    return dataclasses.replace(params, mean=mean, std=std, adapt_time_constant_s=adapt_time_constant_s,
                               adapt_prior_s=adapt_prior_s)


def stream_order(clips: list[ClipFeatures], seed: int) -> list[int]:
    """The order in which one device hears ``clips``: corpus by corpus (one place each), clips in a
    random order fixed by ``seed`` within each corpus (acted corpora are sorted by speaker and emotion;
    a device hears them mixed). Indices into ``clips``."""
    rng = np.random.default_rng(seed)
    order = []
    for corpus in sorted({c.clip.corpus for c in clips}):
        mine = [i for i, c in enumerate(clips) if c.clip.corpus == corpus]
        order += [mine[j] for j in rng.permutation(len(mine))]
    return order


def stream_normalized(versions: list[tuple[np.ndarray, np.ndarray]], clips: list[ClipFeatures], fitted: FeatureParams,
                      frames: int, seed: int, decision: DecisionParams | None = None) -> list[np.ndarray]:
    """Each clip's MFCCs (``versions[i]``: ``(mfcc, log_energy)`` of ``clips[i]`` or of a perturbed
    version) normalised as the device would: :class:`edge.features.AdaptiveNormalizer` carried from
    clip to clip in :func:`stream_order`, each clip normalised with the state before it, then its
    utterances' speech frames update it. float32, same shapes."""
    out: list[np.ndarray | None] = [None] * len(clips)
    normalizers: dict[str, AdaptiveNormalizer] = {}
    for i in stream_order(clips, seed):
        normalizer = normalizers.setdefault(clips[i].clip.corpus, AdaptiveNormalizer(fitted))
        mfcc, log_energy = versions[i]
        out[i] = normalizer.apply(mfcc)
        for segment in speech_segments(log_energy, fitted, frames, decision):
            normalizer.update(mfcc[segment.start:segment.end])
    return out


def balanced_weights(clips: list[ClipFeatures], labels: tuple[str, ...], by: str = "clips") -> np.ndarray:
    """Sampling probability per clip: corpora weighted by the square root of their size (a small
    corpus is not drowned, a large one not over-repeated), counted in clips (``by="clips"``) or in
    speakers (``by="speakers"``), classes equal within each corpus, clips equal within a (corpus,
    class). float64 ``(n,)``, sums to 1. Raises ValueError for another ``by``."""
    if by not in ("clips", "speakers"):
        raise ValueError(f"balanced_weights: by must be 'clips' or 'speakers', got {by!r}")
    keys = [(c.clip.corpus, c.clip.label) for c in clips]
    per_key = Counter(keys)
    if by == "clips":
        size = Counter(k[0] for k in keys)
    else:
        size = Counter(corpus for corpus, _ in {(c.clip.corpus, c.clip.speaker) for c in clips})
    classes = {corpus: len({k[1] for k in per_key if k[0] == corpus}) for corpus in size}
    weights = np.array([math.sqrt(size[k[0]]) / (classes[k[0]] * per_key[k]) for k in keys])
    return weights / weights.sum()


def daemon_window_ends(clip: ClipFeatures, features: FeatureParams, frames: int,
                       decision: DecisionParams | None = None) -> np.ndarray:
    """Frames where :class:`edge.pipeline.Pipeline` ends its analysis windows over ``clip``
    (:class:`edge.pipeline.WindowPlacement`, clipped to the clip's length), or the clip's last
    frame if the VAD finds no utterance. int64 ``(k,)``."""
    placement = WindowPlacement.of(features, frames, decision or DecisionParams())
    n = clip.mfcc.shape[0]
    ends = [min(e, n) for segment in speech_segments(clip.log_energy, features, frames, decision)
            for e in placement.ends(segment)]
    return np.asarray(ends or [n], dtype=np.int64)


def representative_windows(normalized: list[np.ndarray], frames: int, seed: int) -> np.ndarray:
    """Up to :data:`REPRESENTATIVE_WINDOWS` training windows, cropped as in training, for int8 calibration."""
    rng = np.random.default_rng(seed + 1)
    chosen = rng.permutation(len(normalized))[:REPRESENTATIVE_WINDOWS]
    return random_windows([normalized[i] for i in chosen], frames, rng, frames // 2)


def fit_and_convert(
    train_clips: list[ClipFeatures],
    val_clips: list[ClipFeatures],
    labels: tuple[str, ...],
    params: FeatureParams,
    frames: int,
    train_params: TrainParams,
    progress: bool,
    desc: str,
    history: list[dict] | None = None,
    dims: dict[str, tuple[float, float]] | None = None,
):
    """Train on ``train_clips`` (statistics from train + validation clips) and convert to int8.
    ``history``: if given, training's per-epoch records are appended to it. ``dims``: arousal/valence
    target per clip path (``str(path)``); with it the model gets its second head and outputs logits.
    Features are normalised as the device normalises them (:func:`stream_normalized`).

    Returns ``(keras_model, feature_params_with_stats, best_epoch, flatbuffer)``.
    """
    tp = train_params
    index = {label: k for k, label in enumerate(labels)}
    fitted = with_statistics(params, train_clips + val_clips, frames, tp.adapt_time_constant_s, tp.adapt_prior_s)
    train_x = stream_normalized([(c.mfcc, c.log_energy) for c in train_clips], train_clips, fitted, frames, tp.seed)
    train_y = np.array([index[c.clip.label] for c in train_clips])
    val_x = stream_normalized([(c.mfcc, c.log_energy) for c in val_clips], val_clips, fitted, frames, tp.seed) or None
    val_y = np.array([index[c.clip.label] for c in val_clips]) if val_clips else None
    use_ends = tp.daemon_windows > 0
    ends = [daemon_window_ends(c, params, frames) for c in train_clips] if use_ends else None
    variants = None
    n_variants = min(len(c.variants) for c in train_clips)
    if n_variants:
        per_version = [stream_normalized([c.variants[v] for c in train_clips], train_clips, fitted, frames, tp.seed + 1 + v)
                       for v in range(n_variants)]
        variants = [[(per_version[v][i],
                      daemon_window_ends(ClipFeatures(c.clip, *c.variants[v]), params, frames) if use_ends else None)
                     for v in range(n_variants)] for i, c in enumerate(train_clips)]
    # a gain g shifts the log energy (coefficient 0 with append_energy) by 2 ln g = ln(10) / 10 per dB
    energy_per_db = math.log(10) / 10 / fitted.std[0] if params.append_energy else None
    train_dims = None
    if dims is not None:
        train_dims = np.array([dims.get(str(c.clip.path), (0.0, 0.0)) for c in train_clips], dtype=np.float32)
    clip_weights = balanced_weights(train_clips, labels, tp.corpus_balance) if tp.windows_per_epoch else None
    corpus_index = {corpus: k for k, corpus in enumerate(sorted({c.clip.corpus for c in train_clips}))}
    train_corpora = np.array([corpus_index[c.clip.corpus] for c in train_clips])
    model, best_epoch, records = train(train_x, train_y, len(labels), frames, tp, val_x, val_y, progress, desc,
                                       ends, variants, energy_per_db, train_dims, clip_weights, train_corpora)
    if history is not None:
        history.extend(records)
    flatbuffer = to_int8_tflite(model, representative_windows(train_x + (val_x or []), frames, tp.seed))
    return model, fitted, best_epoch, flatbuffer


def run_fold(
    fold: Fold,
    clips: list[ClipFeatures],
    labels: tuple[str, ...],
    params: FeatureParams,
    frames: int,
    train_params: TrainParams,
    decision: DecisionParams,
    progress: bool = True,
    dims: dict[str, tuple[float, float]] | None = None,
    far_test: list[ClipFeatures] | None = None,
) -> FoldResult:
    """Train on the fold's training speakers, early-stop on its validation speakers, score its test speakers
    (clean, and ``far_test``: the same test clips in the far-field condition, in the same order), int8
    and float, each set as one device hears it (normalisation state carried from clip to clip)."""
    by = {name: [c for c in clips if c.clip.speaker in set(speakers)] for name, speakers in
          (("train", fold.train), ("val", fold.validation), ("test", fold.test))}
    history: list[dict] = []
    model, fitted, best_epoch, flatbuffer = fit_and_convert(
        by["train"], by["val"], labels, params, frames, train_params, progress, f"fold {fold.index}", history, dims
    )
    index = {label: k for k, label in enumerate(labels)}
    y_true = np.array([index[c.clip.label] for c in by["test"]])
    dims_true = None
    if dims is not None:
        dims_true = np.array([dims.get(str(c.clip.path), (np.nan, np.nan)) for c in by["test"]], dtype=np.float32)
    dimensions = DIMENSIONS if dims is not None else ()
    far = None
    with tempfile.TemporaryDirectory() as tmp:
        tflite_path, _ = write_model(Path(tmp) / f"fold{fold.index}", flatbuffer, labels, "native", fitted, frames,
                                     dimensions=dimensions)
        int8_model = load_model(tflite_path)
        model_files = {suffix: tflite_path.with_suffix(suffix).read_bytes() for suffix in (".tflite", ".json")}
        int8_scores, int8_dims = score_clips(by["test"], int8_model.score, fitted, frames, decision, progress,
                                             "int8 eval", train_params.seed)
        if far_test:
            far_by_path = {str(c.clip.path): c for c in far_test}
            far_clips = [far_by_path[str(c.clip.path)] for c in by["test"]]
            far = dict(zip(("int8_scores", "int8_dims"), score_clips(
                far_clips, int8_model.score, fitted, frames, decision, progress, "int8 far-field", train_params.seed),
                strict=True))
    float_scores, float_dims = score_clips(by["test"], keras_score(model), fitted, frames, decision, progress,
                                           "float eval", train_params.seed)
    if far is not None:
        far.update(zip(("float_scores", "float_dims"), score_clips(
            far_clips, keras_score(model), fitted, frames, decision, progress, "float far-field", train_params.seed),
            strict=True))
    return FoldResult(fold.index, fold.test, fold.validation, best_epoch, y_true, int8_scores, float_scores,
                      history, dims_true, int8_dims, float_dims, far,
                      tuple(sorted({c.clip.corpus for c in by["test"]})),
                      clip_corpora=tuple(c.clip.corpus for c in by["test"]), model_files=model_files)


DIMENSIONS = ("arousal", "valence")
"""Names of the continuous outputs, in the model's output order."""


def limit_threads(threads: int = 1) -> None:
    """Run TensorFlow's ops on ``threads`` threads (intra- and inter-op). Call before the first op.

    One thread per training process makes a fold's result depend on the seed alone, not on the
    machine's core count (multi-threaded reductions sum in a different order), and several folds
    in parallel processes use the cores better than one fold on several threads for a model this small.
    """
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # the runtime is already initialised in this process
        logger.debug("TensorFlow threads already fixed at %d", tf.config.threading.get_intra_op_parallelism_threads())


def _worker_init(log_level: int) -> None:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=log_level, format="%(asctime)s %(name)s: %(message)s")
    limit_threads(1)


def training_perturbations(train_params: TrainParams) -> list[Perturbation]:
    """The perturbed versions of every training clip that ``train_params`` asks for: one per speed
    factor, then ``noise_variants`` noisy ones (at the original speed, then each speed factor in turn)."""
    speeds = (1.0,) + tuple(s for s in train_params.speed_factors if s != 1.0)
    out = [Perturbation(speed=s) for s in speeds[1:]]
    out += [Perturbation(speed=speeds[j % len(speeds)], snr_db=tuple(train_params.noise_snr_db), seed=j)
            for j in range(train_params.noise_variants)]
    out += [Perturbation(far_field="train", seed=j) for j in range(train_params.far_field_variants)]
    return out


FAR_FIELD_EVAL = Perturbation(far_field="eval")
"""The far-field evaluation condition: rooms and noise from the evaluation split, never used in training."""


def _fold_in_worker(fold: Fold, clips, labels, params, frames, train_params, decision, cache_dir, dims,
                    far_field) -> FoldResult:
    from trainer.featurize import featurize, with_variants

    feats = featurize(clips, params, cache_dir, workers=1, progress=False)
    feats = with_variants(feats, params, training_perturbations(train_params), cache_dir, workers=1, progress=False)
    far_test = None
    if far_field:
        test = [c for c in clips if c.speaker in set(fold.test)]
        far_test = featurize(test, params, cache_dir, workers=1, progress=False, perturbation=FAR_FIELD_EVAL)
    return run_fold(fold, feats, labels, params, frames, train_params, decision, False, dims, far_test)


def run_folds(
    folds: list[Fold],
    feats: list[ClipFeatures],
    labels: tuple[str, ...],
    params: FeatureParams,
    frames: int,
    train_params: TrainParams,
    decision: DecisionParams,
    progress: bool = True,
    jobs: int = 1,
    cache_dir: Path | None = None,
    on_result=None,
    dims: dict[str, tuple[float, float]] | None = None,
    far_field: bool = False,
) -> list[FoldResult]:
    """:func:`run_fold` for each of ``folds``, in this process (``jobs`` 1) or in ``jobs`` spawned
    processes of one TensorFlow thread each, which reload ``feats`` from ``cache_dir`` (where
    :func:`trainer.featurize.featurize` put them). ``on_result(result)`` is called as each fold ends.
    ``dims``: arousal/valence targets by clip path (a second head); ``far_field``: also score each
    fold's test clips in the far-field condition (:data:`FAR_FIELD_EVAL`, features already cached).
    Returns the results in the order of ``folds``.
    """
    for fold in folds:
        logger.info("fold %d: test %s, validation %s, %d training speakers", fold.index, _speakers(fold.test),
                    _speakers(fold.validation) or "-", len(fold.train))
    if jobs <= 1 or len(folds) <= 1:
        results = []
        for fold in folds:
            far_test = None
            if far_field:
                from trainer.featurize import featurize

                far_test = featurize([c.clip for c in feats if c.clip.speaker in set(fold.test)], params,
                                     cache_dir, progress=progress, perturbation=FAR_FIELD_EVAL)
            results.append(run_fold(fold, feats, labels, params, frames, train_params, decision, progress, dims,
                                    far_test))
            if on_result:
                on_result(results[-1])
        return results
    import concurrent.futures
    import multiprocessing

    from tqdm import tqdm

    clips = [f.clip for f in feats]
    worker_level = logging.WARNING if logging.getLogger().level > logging.DEBUG else logging.DEBUG
    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
    logger.info("folds %s in %d processes of one TensorFlow thread each", ",".join(str(f.index) for f in folds), jobs)
    by_index = {}
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init,
                                                initargs=(worker_level,)) as pool:
        futures = {pool.submit(_fold_in_worker, fold, clips, labels, params, frames, train_params, decision,
                               cache_dir, dims, far_field): fold.index for fold in folds}
        bar = tqdm(total=len(folds), desc="folds", unit="fold", disable=not progress)
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            by_index[result.fold] = result
            bar.update()
            if on_result:
                on_result(result)
        bar.close()
    return [by_index[fold.index] for fold in folds]


def pooled_metrics(results: list[FoldResult], labels: tuple[str, ...]) -> dict:
    """Metrics over all folds' test clips pooled, plus the mean of per-fold UA/WA and the fold table."""
    y_true = np.concatenate([r.y_true for r in results])
    rows = [r.row(labels) for r in results]
    out = {}
    for kind, key in (("int8", "int8_scores"), ("float", "float_scores")):
        pred = np.concatenate([getattr(r, key).argmax(axis=1) for r in results])
        summary = summarize(y_true, pred, labels)
        prefix = "" if kind == "int8" else "float_"
        summary["mean_fold_ua"] = float(np.mean([row[prefix + "ua"] for row in rows]))
        summary["mean_fold_wa"] = float(np.mean([row[prefix + "wa"] for row in rows]))
        out[kind] = summary
    out["int8"]["folds"] = rows
    corpora = sorted({c for r in results for c in r.clip_corpora})
    if len(corpora) > 1 and any(len(set(r.clip_corpora)) > 1 for r in results):  # speaker folds, not LOCO
        out["per_corpus"] = {corpus: _corpus_metrics(results, corpus, labels) for corpus in corpora}
    return out


def _corpus_metrics(results: list[FoldResult], corpus: str, labels: tuple[str, ...]) -> dict:
    """One corpus's test clips across the folds (speaker folds over several corpora): UA/WA pooled
    and the mean of per-fold UA over the folds that test some of its speakers, int8 and float."""
    out = {}
    for kind, key in (("int8", "int8_scores"), ("float", "float_scores")):
        trues, preds, fold_ua = [], [], []
        for r in results:
            mask = np.asarray(r.clip_corpora) == corpus
            if not mask.any():
                continue
            pred = getattr(r, key)[mask].argmax(axis=1)
            trues.append(r.y_true[mask])
            preds.append(pred)
            fold_ua.append(summarize(r.y_true[mask], pred, labels)["ua"])
        pooled = summarize(np.concatenate(trues), np.concatenate(preds), labels)
        out[kind] = {"clips": int(sum(len(t) for t in trues)), "ua": pooled["ua"], "wa": pooled["wa"],
                     "folds": len(fold_ua), "mean_fold_ua": float(np.mean(fold_ua))}
    return out


def final_epochs(results: list[FoldResult], default: int) -> int:
    """Median of the folds' best epochs (rounded), or ``default`` without folds."""
    return int(round(stats.median(r.best_epoch for r in results))) if results else default


def _speakers(speakers: tuple[str, ...]) -> str:
    """Speakers for a log line: all of them, or per corpus a count when there are many."""
    if len(speakers) <= 8:
        return ",".join(speakers)
    counts = Counter(s.split(":", 1)[0] for s in speakers)
    return ", ".join(f"all {n} of {corpus}" for corpus, n in sorted(counts.items()))
