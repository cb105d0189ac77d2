"""Cross-validation: each fold trained on its training speakers and scored on its held-out ones as the
device hears them (int8 through the edge runtime and float, clean and far-field), in this process or in
worker processes of one TensorFlow thread each; the pooled figures over the folds.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics as stats
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.dsp.features import FeatureParams
from edge.model import load_model
from edge.postprocess import DecisionParams
from trainer.config import TrainParams
from trainer.evaluate import keras_score, score_clips
from trainer.export import write_model
from trainer.featurize import ClipFeatures, Perturbation
from trainer.folds import Fold
from trainer.metrics import NOT_A_CLASS, summarize
from trainer.train import fit_and_convert

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
    """Per-epoch records of the fold's training (:func:`trainer.train.train`): epoch, loss, val_ua."""
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
    clip_labels: tuple[str, ...] = ()
    """Label of each test clip, in the order of ``y_true``: a model label, or a partial one such as
    ``non-neutral`` (its ``y_true`` is :data:`trainer.metrics.NOT_A_CLASS`)."""
    model_files: dict[str, bytes] = dataclasses.field(default_factory=dict, repr=False)
    """The fold's int8 model as the device reads it: ``{".tflite": bytes, ".json": bytes}`` (the manifest),
    for analyses after the run (:func:`trainer.recipes.runs.save_fold_models`)."""

    @property
    def scored(self) -> np.ndarray:
        """bool ``(n,)``: the test clips with one class (``y_true >= 0``), those UA, WA and confusion count;
        a partial label (``y_true`` -1, its native label in ``test_labels``) is left out of them."""
        return self.y_true >= 0

    def row(self, labels: tuple[str, ...]) -> dict:
        keep = self.scored
        int8 = summarize(self.y_true[keep], self.int8_scores[keep].argmax(axis=1), labels)
        flt = summarize(self.y_true[keep], self.float_scores[keep].argmax(axis=1), labels)
        return {
            "fold": self.fold,
            "test_actors": list(self.test_speakers),
            "validation_actors": list(self.validation_speakers),
            "clips": int(keep.sum()),
            "best_epoch": self.best_epoch,
            "ua": int8["ua"],
            "wa": int8["wa"],
            "float_ua": flt["ua"],
            "float_wa": flt["wa"],
        }

DIMENSIONS = ("arousal", "valence")
"""Names of the continuous outputs, in the model's output order."""


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
    scheme: str = "native",
) -> FoldResult:
    """Train on the fold's training speakers, early-stop on its validation speakers, score its test speakers
    (clean, and ``far_test``: the same test clips in the far-field condition, in the same order), int8
    and float, each set as one device hears it (normalisation state carried from clip to clip).
    ``scheme``: the label scheme, for what a partial label allows. A test clip with a partial label
    (:data:`trainer.labels.PARTIAL_LABELS`) is scored like the others, its ``y_true`` -1 (no single class):
    the figures over classes leave it out (:attr:`FoldResult.scored`)."""
    by = {name: [c for c in clips if c.clip.speaker in set(speakers)] for name, speakers in
          (("train", fold.train), ("val", fold.validation), ("test", fold.test))}
    history: list[dict] = []
    model, fitted, best_epoch, flatbuffer = fit_and_convert(
        by["train"], by["val"], labels, params, frames, train_params, progress, f"fold {fold.index}", history, dims,
        scheme)
    index = {label: k for k, label in enumerate(labels)}
    y_true = np.array([index.get(c.clip.label, NOT_A_CLASS) for c in by["test"]], dtype=np.int64)
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
                      test_labels=tuple(c.clip.label for c in by["test"]),
                      clip_corpora=tuple(c.clip.corpus for c in by["test"]),
                      clip_labels=tuple(c.clip.label for c in by["test"]), model_files=model_files)


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
                    far_field, scheme) -> FoldResult:
    from trainer.featurize import featurize, with_variants

    feats = featurize(clips, params, cache_dir, workers=1, progress=False)
    feats = with_variants(feats, params, training_perturbations(train_params), cache_dir, workers=1, progress=False)
    far_test = None
    if far_field:
        test = [c for c in clips if c.speaker in set(fold.test)]
        far_test = featurize(test, params, cache_dir, workers=1, progress=False, perturbation=FAR_FIELD_EVAL)
    return run_fold(fold, feats, labels, params, frames, train_params, decision, False, dims, far_test, scheme)


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
    scheme: str = "native",
    clips: list | None = None,
) -> list[FoldResult]:
    """:func:`run_fold` for each of ``folds``, in this process (``jobs`` 1) or in ``jobs`` spawned
    processes of one TensorFlow thread each, which reload ``feats`` from ``cache_dir`` (where
    :func:`trainer.featurize.featurize` put them). ``on_result(result)`` is called as each fold ends.
    ``dims``: arousal/valence targets by clip path (a second head); ``far_field``: also score each
    fold's test clips in the far-field condition (:data:`FAR_FIELD_EVAL`, features already cached);
    ``scheme``: the label scheme (:func:`run_fold`); ``clips``: the clips of ``feats``, which the workers read
    (``feats`` may then be empty: the parent need not hold the features). Returns the results in the order
    of ``folds``.
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
                                    far_test, scheme))
            if on_result:
                on_result(results[-1])
        return results
    import concurrent.futures
    import multiprocessing

    from tqdm import tqdm

    clips = clips if clips is not None else [f.clip for f in feats]
    worker_level = logging.WARNING if logging.getLogger().level > logging.DEBUG else logging.DEBUG
    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
    logger.info("folds %s in %d processes of one TensorFlow thread each", ",".join(str(f.index) for f in folds), jobs)
    by_index = {}
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init,
                                                initargs=(worker_level,)) as pool:
        futures = {pool.submit(_fold_in_worker, fold, clips, labels, params, frames, train_params, decision,
                               cache_dir, dims, far_field, scheme): fold.index for fold in folds}
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
    y_true = np.concatenate([r.y_true[r.scored] for r in results])
    rows = [r.row(labels) for r in results]
    out = {}
    for kind, key in (("int8", "int8_scores"), ("float", "float_scores")):
        pred = np.concatenate([getattr(r, key)[r.scored].argmax(axis=1) for r in results])
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
            mask = (np.asarray(r.clip_corpora) == corpus) & r.scored
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
