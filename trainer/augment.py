"""Training windows and their augmentation: random crops or crops where the daemon's windows end, one
version per clip drawn among its perturbed ones, Gaussian noise, gain and SpecAugment-style masks.

All work on normalised float32 features, ``(n_frames, n_mfcc)`` per clip, ``(n, frames, n_mfcc)`` per batch.
"""

from __future__ import annotations

import numpy as np

from trainer.config import TrainParams
from trainer.net import window_ending_at


def random_windows(normalized: list[np.ndarray], frames: int, rng: np.random.Generator, min_end: int,
                   daemon_ends: list[np.ndarray] | None = None, daemon_fraction: float = 0.0,
                   jitter: int = 0) -> np.ndarray:
    """One window per clip ending at a uniformly random frame in ``[min(min_end, n), n]``; or, with
    probability ``daemon_fraction``, at one of the clip's ``daemon_ends`` (where the daemon's windows
    end, see :func:`trainer.streams.daemon_window_ends`) moved by up to ``jitter`` frames either way."""
    out = np.empty((len(normalized), frames, normalized[0].shape[1]), dtype=np.float32)
    for i, x in enumerate(normalized):
        n = x.shape[0]
        if daemon_ends is not None and daemon_fraction > 0 and rng.random() < daemon_fraction:
            end = int(rng.choice(daemon_ends[i])) + int(rng.integers(-jitter, jitter + 1))
            end = min(max(end, 1), n)
        else:
            end = int(rng.integers(min(min_end, n), n + 1))
        out[i] = window_ending_at(x, max(end, 1), frames)
    return out


def draw_versions(train_x, daemon_ends, variants, rng: np.random.Generator):
    """One version per clip: the original or one of its ``variants``, uniformly."""
    xs, ends = [], []
    for i, x in enumerate(train_x):
        k = int(rng.integers(0, len(variants[i]) + 1))
        if k == 0:
            xs.append(x)
            ends.append(daemon_ends[i] if daemon_ends is not None else None)
        else:
            xs.append(variants[i][k - 1][0])
            ends.append(variants[i][k - 1][1])
    return xs, (ends if daemon_ends is not None else None)


def augment(batch: np.ndarray, params: TrainParams, rng: np.random.Generator,
            energy_per_db: float | None = None) -> np.ndarray:
    """Gaussian noise in normalised feature space, a random gain (``params.gain_db``; needs
    ``energy_per_db``, the change of normalised coefficient 0 per dB, ``ln(10) / 10 / std[0]`` when it
    is the log energy) and SpecAugment-style masks (Park et al. 2019):
    ``time_masks`` runs of up to ``time_mask_frames`` frames and ``coefficient_masks`` runs of up to
    ``coefficient_mask_width`` coefficients set to 0 (the mean). In place; returns ``batch``.
    The gain is applied before the masks, so masked cells stay at the mean."""
    n, frames, coefficients = batch.shape
    batch += rng.normal(0.0, params.noise_std, batch.shape).astype(np.float32)
    if params.gain_db > 0 and energy_per_db:
        batch[:, :, 0] += (rng.uniform(-params.gain_db, params.gain_db, n) * energy_per_db)[:, None].astype(np.float32)
    for i in range(n):
        for _ in range(params.time_masks):
            width = int(rng.integers(0, params.time_mask_frames + 1))
            start = int(rng.integers(0, frames - width + 1))
            batch[i, start : start + width] = 0.0
        for _ in range(params.coefficient_masks):
            width = int(rng.integers(0, params.coefficient_mask_width + 1))
            start = int(rng.integers(0, coefficients - width + 1))
            batch[i, :, start : start + width] = 0.0
    return batch
