"""The run folder of ``ser-train fit`` (``runs/NAME-<UTC>``): what is written into it and read back from
it by ``calibrate`` and ``rescore``: ``config.json``, ``cv.json``, ``fold_scores.npz``, ``folds/``."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np

from trainer.config import UsageError


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


def utc_now() -> str:
    """The current UTC time, RFC 3339 to the second with a ``Z`` (the manifest's dates)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def loco_run_config(run_dir: Path, *files: str) -> dict:
    """The ``config.json`` of a leave-one-corpus-out run folder of ``fit``, after checking that it and
    ``files`` (names in the folder) exist. Raises :class:`UsageError` naming what is missing or wrong."""
    for name in ("config.json", *files):
        if not (run_dir / name).is_file():
            raise UsageError(f"{run_dir / name}: not found (expected a run folder of ser-train fit)")
    config = json.loads((run_dir / "config.json").read_text())
    if config.get("protocol") != "loco":
        raise UsageError(f"{run_dir}: expected a leave-one-corpus-out run, got protocol {config.get('protocol')}")
    return config


def json_default(value):
    """``json.dumps``' ``default``: numpy scalars and arrays as Python numbers and lists; TypeError otherwise."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def manifest_metrics(metrics: dict) -> dict:
    """The manifest's ``metrics``: the headline figures, without per-bin and confusion detail."""
    if not metrics:
        return {}
    out = json.loads(json.dumps(metrics, default=json_default))
    loco = out.get("loco")
    if loco:
        loco.pop("confusion", None)
        for key in ("reliability_before", "reliability_after"):
            loco["calibration"].pop(key, None)
    return out
