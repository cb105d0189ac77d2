"""``ser-train fit``: speaker-independent or leave-one-corpus-out cross-validation, then the final model,
exported as int8 TFLite with its manifest, and the run's report.

The stages, in order (:func:`fit` runs them): :func:`prepare_data` (corpora, held-out speakers, label
scheme, protocol), :func:`start_run` (the run folder and its ``config.json``), :func:`featurize_clips`
(features, perturbed versions, far-field condition), :func:`make_folds`, :func:`train_folds`,
:func:`evaluate_folds` (the held-out figures, the calibration, the chance check), :func:`train_final`,
:func:`export` (``NAME.tflite`` + ``NAME.json``, loaded back as the device loads it) and
:func:`report` (``results.json``, ``report.md``), then :func:`record_output` (what was written and how
long it took, added to ``results.json``).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edge.postprocess import DecisionParams
from trainer.config import FRAMES, FitConfig, TrainParams, UsageError, parse_fold_selection
from trainer.recipes.data import drop_silent, load_clips, without_speakers
from trainer.recipes.runs import json_default, manifest_metrics, save_fold_models, save_fold_scores, utc_now
from trainer.report import CV

logger = logging.getLogger("trainer")

CHANCE_MARGIN = 0.05
"""A held-out UA within this of chance (1 / labels) counts as chance level: ``fit`` refuses to write it."""


@dataclass
class Prepared:
    """The clips a fit trains and scores on, after the label scheme (:func:`prepare_data`)."""

    clips: list
    """:class:`trainer.corpora.Clip` with the scheme's labels (silent ones dropped by :func:`featurize_clips`)."""
    labels: tuple[str, ...]
    excluded: dict[str, int]
    """Clips the scheme has no label for, by reason."""
    dims: dict[str, tuple[float, float]] | None
    """Arousal/valence target per clip path (None: no dimensions head)."""
    protocol: str
    """``loco`` or ``speakers``."""


def fit(args) -> int:
    """Run every stage for ``ser-train fit``'s flags. Returns 0; raises :class:`UsageError` for bad flags,
    data that does not allow the protocol, or a model at chance level (unless ``--allow-chance``)."""
    started = time.monotonic()
    cfg = FitConfig.from_args(args)
    data = prepare_data(cfg)
    run_dir, command = start_run(cfg, data.protocol)
    feats, clips = featurize_clips(cfg, data, run_dir)
    folds, selected = make_folds(cfg, clips, data.protocol)
    jobs = fold_jobs(cfg, len(selected), features_bytes(feats))
    if jobs > 1:
        # each fold worker reloads the features from the cache: this process holds none meanwhile
        # (ten corpora with their variants: about 8 GB, as much again as each worker)
        feats = release_features(feats)
    results = train_folds(cfg, [folds[k] for k in selected], feats, data, jobs, clips)
    if jobs > 1:
        feats = training_features(cfg, clips)
    metrics, temperature, unsure_below = evaluate_folds(cfg, results, data, run_dir)
    final_params, fitted, flatbuffer = train_final(cfg, results, feats, data)
    training = training_record(cfg, data, clips, selected, results, final_params, command)
    tflite_path, json_path, model = export(cfg, flatbuffer, data, fitted, training, metrics, temperature, unsure_below)
    report(cfg, run_dir, training, data.labels, clips, [folds[k] for k in selected], results, metrics)
    size_kb = tflite_path.stat().st_size / 1024
    elapsed = time.monotonic() - started
    record_output(run_dir, tflite_path, json_path, size_kb, elapsed)
    print(f"wrote {tflite_path} ({size_kb:.1f} KB, {model.manifest.model_id}) and {json_path} in {elapsed / 60:.1f} min")
    return 0


def record_output(run_dir: Path, tflite_path: Path, json_path: Path, size_kb: float, wall_time_s: float) -> None:
    """Add ``output`` to the run's ``results.json``: the model and manifest paths, the model's size in KB
    (1024 bytes) and the whole fit's wall-clock time in seconds. One file holds the run's results (an
    earlier ``result.json`` held these four alone)."""
    from trainer.report import RESULTS, save_results

    results = json.loads((run_dir / RESULTS).read_text())
    results["output"] = {"model": str(tflite_path), "manifest": str(json_path), "size_kb": size_kb,
                         "wall_time_s": wall_time_s}
    save_results(run_dir, results)


def prepare_data(cfg: FitConfig) -> Prepared:
    """The corpora's clips without the held-out speakers, under the label scheme, and the protocol.

    :raises UsageError: for an unknown held-out speaker, or ``--protocol loco`` with one corpus.
    """
    from trainer.labels import apply_scheme, dimension_targets

    loaded = without_speakers(load_clips(cfg.corpora), set(cfg.hold_out))
    # no target where the emotion has no place in the circumplex (a partial label: non-neutral may be sad
    # or angry); training's masked loss and the metrics leave those out
    nan = (float("nan"), float("nan"))
    dims = {str(c.path): dimension_targets(c) or nan for c in loaded} if cfg.dimensions else None
    clips, labels, excluded = apply_scheme(loaded, cfg.scheme)
    if excluded:
        logger.info("label scheme %s excludes %s", cfg.scheme, ", ".join(f"{n} {k}" for k, n in excluded.items()))
    corpora = sorted({c.corpus for c in clips})
    protocol = cfg.protocol if cfg.protocol != "auto" else ("loco" if len(corpora) >= 2 else "speakers")
    if protocol == "loco" and len(corpora) < 2:
        raise UsageError(f"--protocol loco: expected two or more corpora, got {', '.join(corpora)}")
    return Prepared(clips, labels, excluded, dims, protocol)


def start_run(cfg: FitConfig, protocol: str) -> tuple[Path, str]:
    """Create ``runs_dir/NAME-<UTC>`` and write its ``config.json`` (the command, the flags, the training
    and feature parameters, the decision parameters, the protocol). Returns the folder and the command line."""
    run_dir = cfg.runs_dir / f"{cfg.out.name}-{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%SZ}"
    run_dir.mkdir(parents=True, exist_ok=True)
    command = shlex.join([Path(sys.argv[0]).name] + sys.argv[1:])
    config = {"command": command, "args": cfg.recorded_args,
              "train_params": dataclasses.asdict(cfg.train_params), "features": cfg.features.to_dict(),
              "decision": dataclasses.asdict(DecisionParams()), "frames": FRAMES, "protocol": protocol}
    (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    logger.info("run config in %s", run_dir / "config.json")
    return run_dir, command


def featurize_clips(cfg: FitConfig, data: Prepared, run_dir: Path | None = None) -> tuple[list, list]:
    """Features of every clip (cached in ``cfg.cache_dir``), silent clips dropped, with their perturbed
    versions for training; with LOCO's far-field evaluation, the far-field condition cached too.
    Clipped clips are reported once per corpus, listed in ``run_dir/clipped.csv``
    (:func:`trainer.featurize.report_clipping`).
    Fixes TensorFlow to one thread and seeds it first. Returns ``(clip features, their clips)``.

    :raises UsageError: for ``--n-folds`` outside 2..speakers under the speaker protocol.
    """
    import keras

    from trainer.crossval import FAR_FIELD_EVAL, limit_threads, training_perturbations
    from trainer.featurize import featurize, report_clipping, with_variants

    limit_threads(1)
    keras.utils.set_random_seed(cfg.seed)
    feats = drop_silent(featurize(data.clips, cfg.features, cache_dir=cfg.cache_dir, progress=cfg.progress))
    report_clipping(feats, run_dir)
    clips = [f.clip for f in feats]
    speakers = {c.speaker for c in clips}
    if data.protocol == "speakers" and (cfg.n_folds > len(speakers) or cfg.n_folds < 2):
        raise UsageError(f"--n-folds: expected 2..{len(speakers)} (speakers in the corpora), got {cfg.n_folds}")
    feats = with_variants(feats, cfg.features, training_perturbations(cfg.train_params), cache_dir=cfg.cache_dir,
                          progress=cfg.progress)
    if far_field(cfg, data):
        featurize(clips, cfg.features, cache_dir=cfg.cache_dir, progress=cfg.progress, perturbation=FAR_FIELD_EVAL)
    return feats, clips


def training_features(cfg: FitConfig, clips: list) -> list:
    """The features of ``clips`` (silent ones already dropped) with their perturbed versions, read back from
    the cache :func:`featurize_clips` filled (nothing is computed again)."""
    from trainer.crossval import training_perturbations
    from trainer.featurize import featurize, with_variants

    logger.info("reading the features back from %s for the final model", cfg.cache_dir)
    feats = featurize(clips, cfg.features, cache_dir=cfg.cache_dir, progress=cfg.progress)
    return with_variants(feats, cfg.features, training_perturbations(cfg.train_params), cache_dir=cfg.cache_dir,
                         progress=cfg.progress)


def features_bytes(feats: list) -> int:
    """Bytes of the feature arrays of ``feats`` (:class:`trainer.featurize.ClipFeatures`), variants included:
    what one fold worker holds."""
    return sum(f.mfcc.nbytes + f.log_energy.nbytes + sum(m.nbytes + e.nbytes for m, e in f.variants) for f in feats)


WORKER_OVERHEAD_BYTES = 1_500_000_000
"""A fold worker's memory besides the features: Python, TensorFlow, the model, a held-out corpus's far-field
features and its streamed scores (measured about 1.2 GB on ten corpora; rounded up)."""


def available_memory_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` (Linux) in bytes: memory that can be given to new processes
    without swapping; ``None`` where it is not known."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def fold_jobs(cfg: FitConfig, n_folds: int, feature_bytes: int) -> int:
    """Processes for the folds: ``--jobs``, or by default one per CPU, as many as memory allows. Each worker
    holds every clip's features with their variants (``feature_bytes``) plus :data:`WORKER_OVERHEAD_BYTES`;
    the parent gives its own copy up meanwhile (:func:`release_features`), so with ``MemAvailable`` ``A`` the
    default is ``(A + feature_bytes) // per_worker`` (at least 1). An explicit ``--jobs`` that does not fit
    is kept, with a warning naming the figures."""
    per_worker = feature_bytes + WORKER_OVERHEAD_BYTES
    available = available_memory_bytes()
    fits = max(1, (available + feature_bytes) // per_worker) if available is not None else None
    wanted = cfg.jobs or os.cpu_count() or 1
    jobs = max(1, min(wanted, n_folds))
    if fits is not None and jobs > fits:
        gb = 1e9
        if cfg.jobs:
            logger.warning("--jobs %d: each fold worker holds about %.1f GB and %.1f GB are available: the "
                           "system may kill a worker (--jobs %d fits)", jobs, per_worker / gb,
                           (available + feature_bytes) / gb, fits)
        else:
            logger.info("folds in %d process%s instead of %d: each worker holds about %.1f GB and %.1f GB are "
                        "available (--jobs sets it)", fits, "" if fits == 1 else "es", jobs, per_worker / gb,
                        (available + feature_bytes) / gb)
            jobs = fits
    return jobs


def release_features(feats: list) -> list:
    """Give up the feature arrays of ``feats`` while the fold workers hold their own: returns ``[]``, and on
    glibc returns the freed heap to the system (``malloc_trim(0)``, glibc's manual, "Memory Allocation
    Tunables": the arrays are small blocks, which ``free`` alone keeps in the process)."""
    import ctypes
    import gc

    feats.clear()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the memory is reused by the process, not returned
        pass
    return []


def far_field(cfg: FitConfig, data: Prepared) -> bool:
    """Whether the folds are also scored in the far-field condition (LOCO, unless ``--no-far-field-eval``)."""
    return data.protocol == "loco" and cfg.far_field_eval


def make_folds(cfg: FitConfig, clips: list, protocol: str) -> tuple[list, list[int]]:
    """All folds of the protocol and the indices ``--folds`` selects. :raises UsageError: for a bad ``--folds``."""
    from trainer.folds import corpus_folds, speaker_folds

    if protocol == "loco":
        folds = corpus_folds(c.speaker for c in clips)
        return folds, parse_fold_selection(cfg.folds, len(folds))
    folds = speaker_folds(Counter(c.speaker for c in clips), cfg.n_folds, cfg.validation_speakers)
    return folds, parse_fold_selection(cfg.folds, cfg.n_folds)


def train_folds(cfg: FitConfig, folds: list, feats: list, data: Prepared, jobs: int = 1,
                clips: list | None = None) -> list:
    """:func:`trainer.crossval.run_folds` on ``folds``, in ``jobs`` processes (:func:`fold_jobs`), each
    fold's figures logged as it ends. With ``jobs`` > 1, ``feats`` may be empty and ``clips`` says which
    clips the workers read from the cache. Returns the :class:`trainer.crossval.FoldResult` list."""
    from trainer.crossval import run_folds

    def log_fold(result) -> None:
        row = result.row(data.labels)
        logger.info("fold %d (%s): int8 UA %.3f WA %.3f | float UA %.3f WA %.3f", result.fold,
                    ",".join(result.test_corpora), row["ua"], row["wa"], row["float_ua"], row["float_wa"])

    return run_folds(folds, feats, data.labels, cfg.features, FRAMES, cfg.train_params, DecisionParams(),
                     cfg.progress, jobs, cfg.cache_dir, log_fold, data.dims, far_field(cfg, data), cfg.scheme,
                     clips)


def evaluate_folds(cfg: FitConfig, results: list, data: Prepared, run_dir: Path) -> tuple[dict, float, float]:
    """Keep the folds' scores and models in the run folder, print and save (``cv.json``) the held-out figures,
    and with LOCO and dimensions the calibration. Returns ``(metrics, temperature, unsure_below)``; without
    folds ``({}, 1.0, 0.0)``.

    :raises UsageError: when the held-out UA is at chance level and ``--allow-chance`` is not given.
    """
    from trainer.crossval import pooled_metrics
    from trainer.generalization import format_loco_table, loco_metrics

    save_fold_scores(run_dir / "fold_scores.npz", results)
    save_fold_models(run_dir / "folds", results)
    if not results:
        return {}, 1.0, 0.0
    temperature, unsure_below = 1.0, 0.0
    metrics = pooled_metrics(results, data.labels)
    if data.protocol == "loco":
        metrics["loco"] = loco_metrics(results, data.labels)
        print(format_loco_table(metrics["loco"]))
        held_out_ua = metrics["loco"]["clean"]["int8"]["mean"]["ua"]
        if data.dims is not None:
            temperature = metrics["loco"]["calibration"]["temperature"]
            unsure_below = metrics["loco"]["calibration"]["unsure_below"]
    else:
        print(format_fold_table(metrics))
        held_out_ua = metrics["int8"]["ua"]
    (run_dir / CV).write_text(json.dumps(metrics, indent=2, default=json_default) + "\n")
    chance = 1 / len(data.labels)
    if held_out_ua <= chance + CHANCE_MARGIN and not cfg.allow_chance:
        raise UsageError(f"held-out UA {held_out_ua:.3f} is at chance level ({chance:.2f} + {CHANCE_MARGIN}): "
                         f"no model written (figures in {run_dir / CV}; --allow-chance writes it anyway)")
    return metrics, temperature, unsure_below


def train_final(cfg: FitConfig, results: list, feats: list, data: Prepared) -> tuple[TrainParams, object, bytes]:
    """The final model on every speaker, for ``--final-epochs`` or the folds' median best epoch, no early
    stopping. Returns ``(its TrainParams, the FeatureParams with its statistics, the int8 flatbuffer)``."""
    from trainer.crossval import final_epochs
    from trainer.train import fit_and_convert

    epochs = cfg.final_epochs or final_epochs(results, cfg.max_epochs)
    logger.info("final model: all %d speakers, %d epochs, no early stopping",
                len({f.clip.speaker for f in feats}), epochs)
    final_params = dataclasses.replace(cfg.train_params, epochs=epochs)
    _, fitted, _, flatbuffer = fit_and_convert(feats, [], data.labels, cfg.features, FRAMES, final_params,
                                               cfg.progress, "final", None, data.dims, cfg.scheme)
    return final_params, fitted, flatbuffer


def fold_training_protocol(validation_speakers: int, early_stopping: bool, epochs: int) -> str:
    """How each fold trains, for the manifest's ``protocol`` string."""
    if early_stopping:
        return f"{validation_speakers} validation speakers per corpus for early stopping (at most {epochs} epochs)"
    if validation_speakers:
        return (f"{validation_speakers} validation speakers per corpus held out (curves only), a fixed "
                f"{epochs}-epoch schedule")
    return f"a fixed {epochs}-epoch schedule on all the fold's training speakers, no early stopping"


def training_record(cfg: FitConfig, data: Prepared, clips: list, selected: list[int], results: list,
                    final_params: TrainParams, command: str) -> dict:
    """The manifest's ``training`` block: corpora with their clips, speakers, language and licence
    (``{"kind", "name", "language", "licence", "use", "clips", "speakers"}``,
    :mod:`trainer.corpora.licences`), ``use``: the most restrictive use term of them all, the protocol
    in words, the folds run, seed, date, commit, command, epochs, training parameters and the label scheme."""
    from trainer.corpora.licences import corpus_record, most_restrictive_use
    from trainer.export import git_commit

    counts: dict[str, dict] = {}
    for c in clips:
        entry = counts.setdefault(c.corpus, {**corpus_record(c.corpus), "clips": 0, "speakers": set()})
        entry["clips"] += 1
        entry["speakers"].add(c.speaker)
    protocol_text = "none"
    if results and data.protocol == "loco":
        protocol_text = ("leave-one-corpus-out: each corpus scored whole by a model trained on the others, clean "
                         "and far-field, clips heard in a fixed random order with the adaptive normalisation "
                         "carried from clip to clip; " + fold_training_protocol(0, False, cfg.max_epochs))
    elif results:
        protocol_text = (f"{cfg.n_folds}-fold speaker-independent (RAVDESS fold k tests actors 4k+1..4k+4; other "
                         f"corpora's speakers spread over the folds), " + fold_training_protocol(
                             cfg.validation_speakers, cfg.train_params.early_stopping, cfg.max_epochs))
    training = {
        "corpora": [{**e, "speakers": len(e["speakers"])} for e in counts.values()],
        "use": most_restrictive_use(counts),
        "speakers": sorted({c.speaker for c in clips}),
        "held_out_speakers": sorted(cfg.hold_out),
        "protocol": protocol_text,
        "folds_run": selected,
        "seed": cfg.seed,
        "date": utc_now(),
        "git_commit": git_commit(),
        "command": command,
        "epochs": final_params.epochs,
        "fold_best_epochs": [r.best_epoch for r in results],
        "train_params": dataclasses.asdict(final_params),
    }
    training["label_scheme"] = cfg.scheme
    if results and data.protocol == "loco" and data.dims is not None:
        from trainer.generalization import CALIBRATION_RULE

        training["calibration_rule"] = CALIBRATION_RULE
    training["excluded_clips"] = data.excluded
    return training


def export(cfg: FitConfig, flatbuffer: bytes, data: Prepared, fitted, training: dict, metrics: dict,
           temperature: float, unsure_below: float):
    """Write ``out.tflite`` and ``out.json`` and load them back with the device's checks (sha256, shapes,
    labels). Returns ``(tflite path, manifest path, edge.model.Model)``."""
    from edge.model import load_model
    from trainer.crossval import DIMENSIONS
    from trainer.export import write_model

    tflite_path, json_path = write_model(cfg.out, flatbuffer, data.labels, cfg.scheme, fitted, FRAMES, training,
                                         manifest_metrics(metrics), DIMENSIONS if data.dims is not None else (),
                                         temperature, unsure_below)
    return tflite_path, json_path, load_model(tflite_path)


def report(cfg: FitConfig, run_dir: Path, training: dict, labels: tuple[str, ...], clips: list, folds: list,
           results: list, metrics: dict) -> None:
    """Save ``results.json`` (with the MLP baseline on the same folds unless ``--no-baseline``) and render
    ``report.md`` + PNGs (:func:`trainer.report.render`)."""
    from trainer.report import example_clip, render, save_results

    baseline = None
    if results and cfg.baseline:
        from trainer.baseline import mlp_on_folds

        # the tutorial MLP knows single classes only: clips with a partial label are left out of it
        baseline = mlp_on_folds([c for c in clips if c.label in labels], labels, folds, cfg.seed, cfg.cache_dir,
                                cfg.progress)
        logger.info("MLP baseline on the same folds: pooled UA %.3f, mean of folds %.3f", baseline["ua"],
                    baseline["mean_fold_ua"])
    tested = sorted((c for c in clips if folds and c.speaker in folds[0].test), key=lambda c: str(c.path))
    save_results(run_dir, {"name": cfg.out.name, **training, "labels": list(labels), "features": cfg.features.to_dict(),
                           "metrics": metrics, "histories": {str(r.fold): r.history for r in results},
                           "baseline_mlp": baseline, "example_clip": example_clip(tested or clips)})
    print(f"report: {render(run_dir)}")


def format_fold_table(metrics: dict) -> str:
    """The speaker folds' table: per fold int8 and float UA/WA and best epoch, pooled, mean of folds, per corpus."""
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
