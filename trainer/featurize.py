"""Batch MFCCs of corpus clips through the device's own front end (``edge.audio`` + ``edge.features``).

Features are cached per clip under ``cache/features/`` as ``.npz``, keyed by the clip's absolute
path, size and mtime and by a hash of the feature parameters (without mean/std), so a changed
file or front end is recomputed and nothing stale is reused.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.features import FeatureParams, mfcc_with_energy
from trainer.corpora import Clip

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("cache/features")


@dataclass(frozen=True)
class ClipFeatures:
    """``mfcc``: float32 ``(n_frames, n_mfcc)`` raw (unnormalised); ``log_energy``: float32 ``(n_frames,)``."""

    clip: Clip
    mfcc: np.ndarray
    log_energy: np.ndarray


def front_end_hash(params: FeatureParams) -> str:
    """Hash of every feature parameter except the normalisation statistics."""
    config = params.to_dict()
    config.pop("mean")
    config.pop("std")
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def cache_path(clip: Clip, params: FeatureParams, cache_dir: Path) -> Path:
    stat = clip.path.stat()
    key = f"{clip.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{front_end_hash(params)}"
    return cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"


def compute(path: Path, params: FeatureParams) -> tuple[np.ndarray, np.ndarray]:
    """MFCC and log energy of one audio file, loaded and resampled by ``edge.audio.load_audio``."""
    from edge.audio import load_audio

    samples = load_audio(path, params.sample_rate_hz)
    mfcc, log_energy = mfcc_with_energy(samples, params)
    return mfcc.astype(np.float32), log_energy.astype(np.float32)


def _compute_to_cache(path: Path, params: FeatureParams, target: Path) -> Path:
    mfcc, log_energy = compute(path, params)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.npz")
    np.savez(tmp, mfcc=mfcc, log_energy=log_energy)
    tmp.replace(target)
    return target


def featurize(
    clips: list[Clip],
    params: FeatureParams,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    workers: int = 2,
    progress: bool = True,
) -> list[ClipFeatures]:
    """Features of every clip, in order, computing (in ``workers`` processes) only the uncached ones.

    Raises ``edge.audio.AudioError`` for an unreadable clip.
    """
    targets = [cache_path(c, params, cache_dir) for c in clips]
    missing = [i for i, t in enumerate(targets) if not t.is_file()]
    logger.info("features: %d clips, %d cached, %d to compute", len(clips), len(clips) - len(missing), len(missing))
    if missing:
        bar = tqdm(total=len(missing), desc="features", unit="clip", disable=not progress)
        if workers > 1 and len(missing) > 8:
            # spawn: the parent may have TensorFlow loaded, which does not survive fork
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = [pool.submit(_compute_to_cache, clips[i].path, params, targets[i]) for i in missing]
                for future in concurrent.futures.as_completed(futures):
                    future.result()
                    bar.update()
        else:
            for i in missing:
                _compute_to_cache(clips[i].path, params, targets[i])
                bar.update()
        bar.close()
    out = []
    for clip, target in zip(clips, targets, strict=True):
        with np.load(target) as data:
            out.append(ClipFeatures(clip, data["mfcc"], data["log_energy"]))
    return out


def statistics(features: list[ClipFeatures]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-coefficient mean and standard deviation over all frames of ``features`` (float64 sums)."""
    stacked = np.concatenate([f.mfcc for f in features]).astype(np.float64)
    mean = stacked.mean(axis=0)
    std = np.maximum(stacked.std(axis=0), 1e-6)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
