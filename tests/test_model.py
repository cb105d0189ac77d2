"""The Conv1D model's fixed front layers and the daemon-placed training windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.features import FeatureParams
from edge.pipeline import classify_features
from trainer.corpora import Clip
from trainer.featurize import ClipFeatures, compute
from trainer.model import _delta_layer, build_model, random_windows
from trainer.train import daemon_window_ends

MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ravdess-mini"


def regression_delta(x: np.ndarray, n: int = 2) -> np.ndarray:
    """python_speech_features.base.delta (edge-replicated), on ``(frames, coefficients)``."""
    padded = np.pad(x, ((n, n), (0, 0)), mode="edge")
    denominator = 2 * sum(i * i for i in range(1, n + 1))
    frames = x.shape[0]
    return sum(i * (padded[n + i : n + i + frames] - padded[n - i : n - i + frames]) for i in range(1, n + 1)) / denominator


def test_delta_layer_is_the_regression_delta_away_from_the_edges():
    x = np.random.default_rng(0).normal(size=(1, 50, 6)).astype(np.float32)
    layer = _delta_layer(6, "delta")
    got = np.asarray(layer(x))[0]
    np.testing.assert_allclose(got[2:-2], regression_delta(x[0])[2:-2], atol=1e-5)
    assert not layer.trainable_weights


def test_model_with_deltas_and_attention_pooling_outputs_probabilities():
    model = build_model(64, 5, 3, width=8, deltas=True, attention_pooling=True, instance_norm=True)
    probs = np.asarray(model(np.random.default_rng(1).normal(size=(2, 64, 5)).astype(np.float32)))
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)


@pytest.mark.skipif(not MINI.is_dir(), reason=f"no test corpus at {MINI}")
def test_daemon_window_ends_are_where_the_pipeline_ends_its_windows():
    params = FeatureParams()
    path = MINI / "Actor_01" / "03-01-05-02-01-01-01.flac"
    mfcc, log_energy = compute(path, params)
    # frame i carries the value i, so each window's last row names the window's end
    numbered = np.repeat(np.arange(mfcc.shape[0], dtype=np.float32)[:, None], mfcc.shape[1], axis=1)
    seen: list[int] = []

    def predict(windows):
        seen.extend(int(w[-1, 0]) + 1 for w in windows)
        return np.full((len(windows), 2), 0.5, dtype=np.float32)

    frames = 120  # shorter than the clip's speech, so the pipeline adds strided windows
    classify_features(numbered, log_energy, predict, params, frames)
    clip = ClipFeatures(Clip(path, "angry", "ravdess:01", "ravdess"), mfcc, log_energy)
    ends = daemon_window_ends(clip, params, frames)
    assert len(seen) > 1
    assert sorted(ends.tolist()) == sorted(seen)
    windows = random_windows([numbered], frames, np.random.default_rng(0), frames // 2, [ends], 1.0, jitter=0)
    assert int(windows[0, -1, 0]) + 1 in set(seen)
