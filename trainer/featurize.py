"""Batch MFCCs of corpus clips through the device's own front end (``edge.audio`` + ``edge.features``).

Features are cached per clip under ``cache/features/`` as ``.npz``, keyed by the clip's absolute
path, size and mtime, the speed factor, and a hash of the feature parameters (without mean/std)
and of the front end's source (``edge/features.py``, ``edge/audio.py``), so a changed file or
front end is recomputed and nothing stale is reused.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import multiprocessing
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.features import FeatureParams, mfcc_with_energy
from trainer.corpora import Clip

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("cache/features")


@dataclass(frozen=True)
class ClipFeatures:
    """``mfcc``: float32 ``(n_frames, n_mfcc)`` raw (unnormalised); ``log_energy``: float32 ``(n_frames,)``.
    ``variants``: ``(mfcc, log_energy)`` of speed-perturbed versions of the clip (see :func:`with_speeds`)."""

    clip: Clip
    mfcc: np.ndarray
    log_energy: np.ndarray
    variants: tuple[tuple[np.ndarray, np.ndarray], ...] = field(default=(), repr=False)


def front_end_hash(params: FeatureParams) -> str:
    """Hash of every feature parameter except the normalisation statistics, and of the front end's code."""
    import edge.audio
    import edge.features

    config = params.to_dict()
    config.pop("mean")
    config.pop("std")
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for module in (edge.features, edge.audio):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def cache_path(clip: Clip, params: FeatureParams, cache_dir: Path, speed: float = 1.0,
               front_end: str | None = None) -> Path:
    stat = clip.path.stat()
    key = f"{clip.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{front_end or front_end_hash(params)}"
    if speed != 1.0:
        key += f"|speed={speed!r}"
    return cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"


def speed_perturb(samples: np.ndarray, speed: float) -> np.ndarray:
    """``samples`` played ``speed`` times faster (tempo and pitch together, as ``sox speed`` in Kaldi's
    recipe, Ko et al. 2015): polyphase resampling by ``1/speed`` (``scipy.signal.resample_poly``),
    read back at the original rate. float32 ``(round(n / speed),)``."""
    from scipy.signal import resample_poly

    ratio = Fraction(speed).limit_denominator(100)
    return resample_poly(samples, ratio.denominator, ratio.numerator).astype(np.float32)


def compute(path: Path, params: FeatureParams, speed: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """MFCC and log energy of one audio file, loaded and resampled by ``edge.audio.load_audio``
    (and speed-perturbed by ``speed`` unless 1)."""
    from edge.audio import load_audio

    samples = load_audio(path, params.sample_rate_hz)
    if speed != 1.0:
        samples = speed_perturb(samples, speed)
    mfcc, log_energy = mfcc_with_energy(samples, params)
    return mfcc.astype(np.float32), log_energy.astype(np.float32)


def _compute_to_cache(path: Path, params: FeatureParams, target: Path, speed: float = 1.0) -> Path:
    mfcc, log_energy = compute(path, params, speed)
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
    speed: float = 1.0,
) -> list[ClipFeatures]:
    """Features of every clip, in order, computing (in ``workers`` processes) only the uncached ones;
    ``speed`` != 1 gives the speed-perturbed versions (:func:`speed_perturb`).

    Raises ``edge.audio.AudioError`` for an unreadable clip.
    """
    front_end = front_end_hash(params)
    targets = [cache_path(c, params, cache_dir, speed, front_end) for c in clips]
    missing = [i for i, t in enumerate(targets) if not t.is_file()]
    what = "features" if speed == 1.0 else f"features at speed {speed:g}"
    logger.info("%s: %d clips, %d cached, %d to compute", what, len(clips), len(clips) - len(missing), len(missing))
    if missing:
        bar = tqdm(total=len(missing), desc=what, unit="clip", disable=not progress)
        if workers > 1 and len(missing) > 8:
            # spawn: the parent may have TensorFlow loaded, which does not survive fork
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = [pool.submit(_compute_to_cache, clips[i].path, params, targets[i], speed) for i in missing]
                for future in concurrent.futures.as_completed(futures):
                    future.result()
                    bar.update()
        else:
            for i in missing:
                _compute_to_cache(clips[i].path, params, targets[i], speed)
                bar.update()
        bar.close()
    out = []
    for clip, target in zip(clips, targets, strict=True):
        with np.load(target) as data:
            out.append(ClipFeatures(clip, data["mfcc"], data["log_energy"]))
    return out


def with_speeds(features: list[ClipFeatures], params: FeatureParams, speeds: tuple[float, ...],
                cache_dir: Path = DEFAULT_CACHE_DIR, workers: int = 2, progress: bool = True) -> list[ClipFeatures]:
    """``features`` with their ``variants`` filled: the clips featurised at each of ``speeds`` (1 skipped)."""
    import dataclasses

    perturbed = []
    for speed in speeds:
        if speed == 1.0:
            continue
        perturbed.append(featurize([f.clip for f in features], params, cache_dir, workers, progress, speed))
    return [dataclasses.replace(f, variants=tuple((p[i].mfcc, p[i].log_energy) for p in perturbed))
            for i, f in enumerate(features)]


def statistics(features: list[ClipFeatures]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-coefficient mean and standard deviation over all frames of ``features`` (float64 sums)."""
    stacked = np.concatenate([f.mfcc for f in features]).astype(np.float64)
    mean = stacked.mean(axis=0)
    std = np.maximum(stacked.std(axis=0), 1e-6)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
