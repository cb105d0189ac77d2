"""Feature normalisation: the manifest's fixed ``(x - mean) / std``, the adaptive normaliser that
follows the device's speech, and the persistence of its statistics across restarts.

Persistence: measured on the leave-one-corpus-out streams, the adaptation needs speech to warm up:
the first 50 clips of each held-out stream (about 2 minutes of speech) were right 44 % of the time,
clips 100-200 53 %. A device that restarts (an update, a power cut) would pay that again each time;
so the daemon keeps the statistics in its state directory and restores them at start when they
belong to the same model. A device moved to another room re-adapts within the time constant (120 s
of speech).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from edge.dsp.features import FeatureParams
from edge.validate import atomic_write_text

ADAPTATION_STATE_FILE = "adaptation.json"
"""File name of the persisted normalisation state in the daemon's state directory."""


def normalize(features: np.ndarray, params: FeatureParams) -> np.ndarray:
    """Apply the manifest's per-coefficient ``(x - mean) / std``; float32, same shape.

    Raises ``ValueError`` if the parameters carry no statistics.
    """
    if not params.mean:
        raise ValueError("expected feature parameters with mean/std statistics, got none")
    mean = np.asarray(params.mean, dtype=np.float32)
    std = np.asarray(params.std, dtype=np.float32)
    return (features - mean) / std


class AdaptiveNormalizer:
    """Per-coefficient normalisation ``(x - mean) / std`` whose statistics adapt to the device's speech.

    The device hears one room, one microphone and a few voices; corpora differ from it in level,
    channel and speaker, and a fixed training mean reads a louder room as anger. The statistics
    here start at the training ``mean``/``std`` of ``params`` (the prior) and follow the MFCCs of
    the *speech* frames the device has heard (the VAD's utterances, never silence or noise between
    them): a cumulative mean and second moment in which the prior counts as ``adapt_prior_s`` of
    speech, with the effective count capped at ``adapt_time_constant_s`` of speech, so that after
    warm-up the statistics are an exponential moving average with that time constant (cepstral
    mean and variance normalisation, Viikki & Laurila 1998, "Cepstral domain segmental feature
    vector normalization for noise robust speech recognition", Speech Communication 25; here over
    utterances, causally). One update per utterance: with a time constant of minutes, one long
    angry speaker moves the statistics by at most ``utterance / time constant`` of the way.

    With ``adapt_time_constant_s == 0`` the statistics stay at the prior (fixed normalisation).
    The daemon (:class:`edge.pipeline.Pipeline`) and the trainer use this one class: windows are
    normalised with the state *before* their utterance, then the utterance's speech frames update it.
    """

    def __init__(self, params: FeatureParams) -> None:
        if not params.mean:
            raise ValueError("expected feature parameters with mean/std statistics, got none")
        self.params = params
        self._prior_mean = np.asarray(params.mean, dtype=np.float64)
        self._prior_var = np.square(np.asarray(params.std, dtype=np.float64))
        self._prior_frames = params.adapt_prior_s / params.hop_s
        self._cap_frames = params.adapt_time_constant_s / params.hop_s
        self._floor_var = self._prior_var * 1e-2  # a std never below a tenth of the training one
        self.reset()

    @property
    def adaptive(self) -> bool:
        return self._cap_frames > 0

    def reset(self) -> None:
        """Back to the training statistics (the prior)."""
        self.count = self._prior_frames
        self.mean = self._prior_mean.copy()
        self.second = self._prior_var + np.square(self._prior_mean)
        self.speech_frames = 0
        self._refresh()

    def _refresh(self) -> None:
        var = np.maximum(self.second - np.square(self.mean), self._floor_var)
        self._mean32 = self.mean.astype(np.float32)
        self._inv_std32 = (1.0 / np.sqrt(var)).astype(np.float32)

    def update(self, speech: np.ndarray) -> None:
        """Fold speech frames, float ``(k, n_features)`` raw MFCCs, into the statistics (no-op if not adaptive)."""
        k = speech.shape[0]
        if not self.adaptive or k == 0:
            return
        x = speech.astype(np.float64)
        weight = k / (self.count + k)
        self.mean += weight * (x.mean(axis=0) - self.mean)
        self.second += weight * (np.square(x).mean(axis=0) - self.second)
        self.count = min(self.count + k, max(self._cap_frames, self._prior_frames))
        self.speech_frames += k
        self._refresh()

    def apply(self, features: np.ndarray) -> np.ndarray:
        """``(features - mean) / std`` with the current statistics; float32, same shape (``(..., n_features)``)."""
        return (np.asarray(features, dtype=np.float32) - self._mean32) * self._inv_std32

    def state(self) -> dict:
        """The statistics as plain JSON-able values (to persist across restarts)."""
        return {"count": float(self.count), "speech_frames": int(self.speech_frames),
                "mean": self.mean.tolist(), "second": self.second.tolist()}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state`; raises ``ValueError`` for a state of another shape or non-finite values."""
        mean = np.asarray(state["mean"], dtype=np.float64)
        second = np.asarray(state["second"], dtype=np.float64)
        count = float(state["count"])
        if mean.shape != self.mean.shape or second.shape != self.mean.shape:
            raise ValueError(f"expected {self.mean.shape[0]} coefficients, got {mean.shape}/{second.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(second).all() and math.isfinite(count) and count > 0):
            raise ValueError("expected finite normalisation statistics")
        self.mean, self.second, self.count = mean, second, count
        self.speech_frames = int(state.get("speech_frames", 0))
        self._refresh()


def save_adaptation(path: str | Path, normalizer: AdaptiveNormalizer, model_id: str) -> None:
    """Write ``normalizer``'s statistics to ``path`` as JSON tagged with ``model_id``, atomically
    (a temporary file renamed over the old one, so a power cut leaves the old or the new state)."""
    atomic_write_text(path, json.dumps({"model": model_id, **normalizer.state()}))


def restore_adaptation(path: str | Path, normalizer: AdaptiveNormalizer, model_id: str) -> str:
    """Load statistics saved by :func:`save_adaptation` into ``normalizer`` if they are for ``model_id``.

    Returns what happened, one line for the log: restored (with the seconds of speech behind them),
    or why the training statistics are used instead (no file, another model, unreadable). Never raises
    for a bad file: a damaged state only costs the warm-up.
    """
    path = Path(path)
    if not path.is_file():
        return f"no adaptation state at {path}: starting from the training statistics"
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("model") != model_id:
            return f"adaptation state {path} is for model {state.get('model')!r}, not {model_id}: not used"
        normalizer.load_state(state)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"adaptation state {path} unusable ({exc}): starting from the training statistics"
    return (f"adaptation state restored from {path}: {normalizer.speech_frames * normalizer.params.hop_s:.0f} s "
            "of speech heard before")
