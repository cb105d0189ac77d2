"""Batch MFCCs of corpus clips through the device's own front end (``edge.audio.io`` + ``edge.dsp.frontend``).

Features are cached per clip under ``cache/features/`` as ``.npz``, keyed by the clip's absolute
path, size and mtime, the perturbation (speed, noise), and a hash of the feature parameters (without mean/std)
and of the front end's source (``edge/features.py``, ``edge/audio.py``), so a changed file or
front end is recomputed and nothing stale is reused. Each entry also keeps the clip's count of clipped
samples: the device reader's per-file clipping warning is held back while the trainer reads corpora,
and :func:`report_clipping` sums clipping up per corpus instead (``fit``: ``RUN/clipped.csv``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.dsp.features import FeatureParams
from trainer.acoustics import colored_noise
from trainer.corpora import Clip

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("cache/features")


@dataclass(frozen=True)
class ClipFeatures:
    """``mfcc``: float32 ``(n_frames, n_mfcc)`` raw (unnormalised); ``log_energy``: float32 ``(n_frames,)``, the
    energy the VAD gates on (:class:`edge.dsp.vad.GatingEnergy`, as :mod:`edge.dsp.frontend` pairs them for ``Pipeline.process`` too).
    ``variants``: ``(mfcc, log_energy)`` of perturbed versions of the clip (see :func:`with_variants`)."""

    clip: Clip
    mfcc: np.ndarray
    log_energy: np.ndarray
    variants: tuple[tuple[np.ndarray, np.ndarray], ...] = field(default=(), repr=False)
    clipped_samples: int | None = None
    """Samples of the clip's audio (before any perturbation) at or above ``edge.audio.io.CLIPPING_LEVEL``
    (full scale, the device's clipping test), counted on the front end's input (resampled to the feature
    rate); ``None`` when not known (a perturbed version read from a cache written before the count)."""


def front_end_hash(params: FeatureParams) -> str:
    """Hash of every feature parameter except the normalisation statistics, and of the front end's code."""
    import edge.audio.io
    import edge.audio.resample
    import edge.dsp.features
    import edge.dsp.frontend
    import edge.dsp.vad

    config = params.to_dict()
    config.pop("mean")
    config.pop("std")
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for module in (edge.dsp.features, edge.dsp.frontend, edge.dsp.vad, edge.audio.io, edge.audio.resample):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Perturbation:
    """How a training clip's audio is altered before the front end (the identity by default).

    ``speed``: played this many times faster (:func:`speed_perturb`). ``snr_db``: additive pink
    noise at a signal-to-noise ratio drawn uniformly from this range (dB) per clip; ``seed`` picks
    the noise realisation and the draw, from the clip's file name, so a perturbation is reproducible.
    """

    speed: float = 1.0
    snr_db: tuple[float, float] | None = None
    seed: int = 0
    far_field: str | None = None
    """``"train"`` or ``"eval"``: through a simulated room with noise (:func:`trainer.acoustics.far_field`,
    that split's draws, babble from other speakers of the clip's corpus)."""

    @property
    def is_identity(self) -> bool:
        return self.speed == 1.0 and self.snr_db is None and self.far_field is None

    def key(self) -> str:
        """The perturbation's part of the cache key ("" for the identity, so originals keep their key)."""
        key = f"|speed={self.speed!r}" if self.speed != 1.0 else ""
        key += f"|snr={self.snr_db[0]!r},{self.snr_db[1]!r}|seed={self.seed}" if self.snr_db else ""
        return key + (f"|far={self.far_field}|seed={self.seed}|{acoustics_hash()}" if self.far_field else "")

    def describe(self) -> str:
        parts = [f"speed {self.speed:g}"] if self.speed != 1.0 else []
        if self.snr_db:
            parts.append(f"pink noise at {self.snr_db[0]:g}-{self.snr_db[1]:g} dB SNR (seed {self.seed})")
        if self.far_field:
            parts.append(f"far-field, {self.far_field} rooms (seed {self.seed})")
        return ", ".join(parts) or "original"

    def apply(self, samples: np.ndarray, name: str, babble: list[np.ndarray] | None = None) -> np.ndarray:
        """``samples`` (float32, 1-D, 16 kHz) perturbed; ``name`` (the clip's file name) seeds the draws;
        ``babble``: other speakers' clips for babble noise (far-field only)."""
        if self.speed != 1.0:
            samples = speed_perturb(samples, self.speed)
        if self.snr_db:
            rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
            samples = add_noise(samples, float(rng.uniform(*self.snr_db)), rng)
        if self.far_field:
            from trainer.acoustics import DEFAULT_RIR_CACHE_DIR, far_field

            samples = far_field(samples, 16000, self.far_field, f"{self.seed}:{name}", babble,
                                rir_cache_dir=DEFAULT_RIR_CACHE_DIR)
        return samples


def acoustics_hash() -> str:
    """Hash of :mod:`trainer.acoustics`' source (far-field versions are recomputed when it changes)."""
    import trainer.acoustics

    return hashlib.sha256(Path(trainer.acoustics.__file__).read_bytes()).hexdigest()[:12]


BABBLE_POOL = 12
"""Clips (of distinct speakers where possible) per corpus from which babble noise is made."""


def babble_pool(clips: list[Clip]) -> dict[str, list[tuple[str, Path]]]:
    """Per corpus, up to :data:`BABBLE_POOL` ``(speaker, path)`` pairs, one clip per speaker in turn,
    chosen by a fixed seed (not by content)."""
    pools: dict[str, list[tuple[str, Path]]] = {}
    for corpus in sorted({c.corpus for c in clips}):
        mine = sorted((c for c in clips if c.corpus == corpus), key=lambda c: str(c.path))
        rng = np.random.default_rng(zlib.crc32(corpus.encode()))
        order = rng.permutation(len(mine))
        chosen, seen = [], set()
        for i in order:  # first one clip per speaker, then any
            if mine[i].speaker not in seen:
                chosen.append(mine[i])
                seen.add(mine[i].speaker)
            if len(chosen) >= BABBLE_POOL:
                break
        for i in order:
            if len(chosen) >= BABBLE_POOL:
                break
            if mine[i] not in chosen:
                chosen.append(mine[i])
        pools[corpus] = [(c.speaker, c.path) for c in chosen]
    return pools


class _DropClippingWarning(logging.Filter):
    """Drops the device reader's per-file clipping lines (``edge.audio.io.clipping_logger``: the warning
    and its counts): the trainer reads thousands of clips and reports clipping once per corpus instead
    (:func:`report_clipping`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


_CLIPPING_FILTER = _DropClippingWarning()


@contextlib.contextmanager
def quiet_clipping_warnings() -> Iterator[None]:
    """Within the block, the device reader's per-file clipping lines are not logged (nested blocks are
    fine); batch readers count clipping themselves instead (:attr:`ClipFeatures.clipped_samples`)."""
    from edge.audio.io import clipping_logger

    outermost = _CLIPPING_FILTER not in clipping_logger.filters
    clipping_logger.addFilter(_CLIPPING_FILTER)
    try:
        yield
    finally:
        if outermost:
            clipping_logger.removeFilter(_CLIPPING_FILTER)


def clipped_samples(samples: np.ndarray) -> int:
    """How many of ``samples`` (float, full scale 1.0) are at or above the device's clipping level
    ``edge.audio.io.CLIPPING_LEVEL``."""
    from edge.audio.io import CLIPPING_LEVEL

    return int(np.count_nonzero(np.abs(samples) >= CLIPPING_LEVEL))


@functools.lru_cache(maxsize=64)
def _load_16k(path: Path) -> np.ndarray:
    from edge.audio.io import load_audio

    with quiet_clipping_warnings():
        return load_audio(path, 16000)


def cache_path(clip: Clip, params: FeatureParams, cache_dir: Path, perturbation: Perturbation = Perturbation(),
               front_end: str | None = None) -> Path:
    stat = clip.path.stat()
    key = f"{clip.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{front_end or front_end_hash(params)}"
    key += perturbation.key()
    return cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"


def speed_perturb(samples: np.ndarray, speed: float) -> np.ndarray:
    """``samples`` played ``speed`` times faster (tempo and pitch together, as ``sox speed`` in Kaldi's
    recipe, Ko et al. 2015): polyphase resampling by ``1/speed`` (``scipy.signal.resample_poly``),
    read back at the original rate. float32 ``(round(n / speed),)``."""
    from scipy.signal import resample_poly

    ratio = Fraction(speed).limit_denominator(100)
    return resample_poly(samples, ratio.denominator, ratio.numerator).astype(np.float32)


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``samples`` plus pink noise at ``snr_db`` relative to the clip's mean power (the convention of
    audiomentations' ``AddColorNoise``), clipped to [-1, 1]. float32, same shape. The noise is
    :func:`trainer.acoustics.colored_noise` with exponent 1 and no low-frequency floor."""
    signal_power = float(np.mean(np.square(samples, dtype=np.float64)))
    noise = colored_noise(len(samples), 1.0, rng, floor_hz=0.0) * np.sqrt(signal_power / 10.0 ** (snr_db / 10.0))
    return np.clip(samples + noise, -1.0, 1.0).astype(np.float32)


def compute(path: Path, params: FeatureParams, perturbation: Perturbation = Perturbation(),
            babble: tuple[Path, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """MFCC and log energy of one audio file (:func:`edge.dsp.frontend.compute`), loaded and resampled by
    ``edge.audio.io.load_audio``
    (and perturbed first unless ``perturbation`` is the identity; ``babble``: clips of other speakers)."""
    mfcc, log_energy, _ = _compute(path, params, perturbation, babble)
    return mfcc, log_energy


def _compute(path: Path, params: FeatureParams, perturbation: Perturbation,
             babble: tuple[Path, ...]) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`compute` and the clip's :func:`clipped_samples` before the perturbation."""
    from edge.audio.io import load_audio
    from edge.dsp.frontend import compute as front_end

    with quiet_clipping_warnings():
        sources = [_load_16k(b) for b in babble] if perturbation.far_field else None
        samples = load_audio(path, params.sample_rate_hz)
    clipped = clipped_samples(samples)
    mfcc, log_energy = front_end(perturbation.apply(samples, path.name, sources), params)  # as Pipeline.process pairs them
    return mfcc, log_energy, clipped


def _save(target: Path, **arrays) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.npz")  # two fits sharing a cache never share a tmp file
    np.savez(tmp, **arrays)
    tmp.replace(target)


def _compute_to_cache(path: Path, params: FeatureParams, target: Path, perturbation: Perturbation,
                      babble: tuple[Path, ...] = ()) -> Path:
    mfcc, log_energy, clipped = _compute(path, params, perturbation, babble)
    _save(target, mfcc=mfcc, log_energy=log_energy, clipped_samples=np.int64(clipped))
    return target


def _cached(clip: Clip, target: Path, params: FeatureParams, count_clipping: bool) -> ClipFeatures:
    """The cached features of ``clip``; with ``count_clipping``, an entry cached before the clipping
    count gets it now (the audio read once more) and is rewritten with it."""
    with np.load(target) as data:
        arrays = {key: data[key] for key in data.files}
    if "clipped_samples" not in arrays and count_clipping:
        from edge.audio.io import load_audio

        with quiet_clipping_warnings():
            arrays["clipped_samples"] = np.int64(clipped_samples(load_audio(clip.path, params.sample_rate_hz)))
        _save(target, **arrays)
    clipped = int(arrays["clipped_samples"]) if "clipped_samples" in arrays else None
    return ClipFeatures(clip, arrays["mfcc"], arrays["log_energy"], clipped_samples=clipped)


def featurize(
    clips: list[Clip],
    params: FeatureParams,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    workers: int = 2,
    progress: bool = True,
    perturbation: Perturbation = Perturbation(),
) -> list[ClipFeatures]:
    """Features of every clip, in order, computing (in ``workers`` processes) only the uncached ones;
    a ``perturbation`` gives the clips' perturbed versions (:class:`Perturbation`).

    Raises ``edge.audio.AudioError`` for an unreadable clip.
    """
    front_end = front_end_hash(params)
    targets = [cache_path(c, params, cache_dir, perturbation, front_end) for c in clips]
    pools = babble_pool(clips) if perturbation.far_field else {}

    def babble(clip: Clip) -> tuple[Path, ...]:
        return tuple(path for speaker, path in pools.get(clip.corpus, []) if speaker != clip.speaker)

    # one computation per cache entry: a clip listed twice (e.g. under two labels) is computed once
    first = {t: i for i, t in reversed(list(enumerate(targets)))}
    missing = sorted(i for t, i in first.items() if not t.is_file())
    what = "features" if perturbation.is_identity else f"features ({perturbation.describe()})"
    logger.info("%s: %d clips, %d cached, %d to compute", what, len(clips), len(first) - len(missing), len(missing))
    if missing:
        bar = tqdm(total=len(missing), desc=what, unit="clip", disable=not progress)
        if workers > 1 and len(missing) > 8:
            # spawn: the parent may have TensorFlow loaded, which does not survive fork
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = [pool.submit(_compute_to_cache, clips[i].path, params, targets[i], perturbation,
                                       babble(clips[i])) for i in missing]
                for future in concurrent.futures.as_completed(futures):
                    future.result()
                    bar.update()
        else:
            for i in missing:
                _compute_to_cache(clips[i].path, params, targets[i], perturbation, babble(clips[i]))
                bar.update()
        bar.close()
    return [_cached(clip, target, params, perturbation.is_identity) for clip, target in zip(clips, targets, strict=True)]


CLIPPED_CSV = "clipped.csv"


def report_clipping(features: list[ClipFeatures], run_dir: Path | None = None) -> dict[str, tuple[int, int]]:
    """One warning line per corpus with clipped clips (``"crema-d: 812 of 7442 clips clipped (list in
    RUN/clipped.csv)"``) instead of the device reader's line per file, and, with ``run_dir``, the list in
    ``run_dir/clipped.csv`` (columns path, corpus, speaker, label, clipped_samples; one row per clipped
    clip, sorted by path; written even when empty). Clips whose count is unknown count as not clipped.
    Returns ``{corpus: (clipped clips, clips)}`` for every corpus of ``features``."""
    counts: dict[str, list[int]] = {}
    clipped = []
    for f in features:
        entry = counts.setdefault(f.clip.corpus, [0, 0])
        entry[1] += 1
        if f.clipped_samples:
            entry[0] += 1
            clipped.append(f)
    where = ""
    if run_dir is not None:
        path = Path(run_dir) / CLIPPED_CSV
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["path", "corpus", "speaker", "label", "clipped_samples"])
            for f in sorted(clipped, key=lambda f: str(f.clip.path)):
                writer.writerow([str(f.clip.path), f.clip.corpus, f.clip.speaker, f.clip.label, f.clipped_samples])
        where = f" (list in {path})"
    for corpus, (n_clipped, n) in counts.items():
        if n_clipped:
            logger.warning("%s: %d of %d clips clipped%s", corpus, n_clipped, n, where)
    return {corpus: (n_clipped, n) for corpus, (n_clipped, n) in counts.items()}


def with_variants(features: list[ClipFeatures], params: FeatureParams, perturbations: list[Perturbation],
                  cache_dir: Path = DEFAULT_CACHE_DIR, workers: int = 2, progress: bool = True) -> list[ClipFeatures]:
    """``features`` with their ``variants`` filled: the clips featurised under each of ``perturbations``."""
    import dataclasses

    perturbed = [featurize([f.clip for f in features], params, cache_dir, workers, progress, p) for p in perturbations]
    return [dataclasses.replace(f, variants=tuple((p[i].mfcc, p[i].log_energy) for p in perturbed))
            for i, f in enumerate(features)]


def statistics(features: list[ClipFeatures]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-coefficient mean and standard deviation over all frames of ``features`` (float64 sums)."""
    stacked = np.concatenate([f.mfcc for f in features]).astype(np.float64)
    mean = stacked.mean(axis=0)
    std = np.maximum(stacked.std(axis=0), 1e-6)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
