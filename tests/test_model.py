"""The Conv1D model's fixed front layers and the daemon-placed training windows."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from paths import RAVDESS_MINI

from edge.dsp.features import FeatureParams
from edge.pipeline import classify_features
from trainer.augment import random_windows
from trainer.corpora import Clip
from trainer.featurize import ClipFeatures, compute
from trainer.net import _delta_layer, build_model
from trainer.streams import daemon_window_ends

MINI = RAVDESS_MINI


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


def test_daemon_window_ends_are_where_the_pipeline_ends_its_windows():
    params = FeatureParams()
    path = MINI / "Actor_01" / "03-01-05-02-01-01-01.flac"
    mfcc, log_energy = compute(path, params)
    # frame i carries the value i, so each window's last row names the window's end
    numbered = np.repeat(np.arange(mfcc.shape[0], dtype=np.float32)[:, None], mfcc.shape[1], axis=1)
    seen: list[int] = []

    def score(windows):
        seen.extend(int(w[-1, 0]) + 1 for w in windows)
        return np.full((len(windows), 2), 0.5, dtype=np.float32), None

    frames = 120  # shorter than the clip's speech, so the pipeline adds strided windows
    identity = dataclasses.replace(params, mean=(0.0,) * params.n_mfcc, std=(1.0,) * params.n_mfcc)  # x stays x
    classify_features(numbered, log_energy, score, identity, frames)
    clip = ClipFeatures(Clip(path, "angry", "ravdess:01", "ravdess"), mfcc, log_energy)
    ends = daemon_window_ends(clip, params, frames)
    assert len(seen) > 1
    assert sorted(ends.tolist()) == sorted(seen)
    windows = random_windows([numbered], frames, np.random.default_rng(0), frames // 2, [ends], 1.0, jitter=0)
    assert int(windows[0, -1, 0]) + 1 in set(seen)


@pytest.mark.parametrize("speed", [0.9, 1.1])
def test_speed_perturbation_scales_duration_and_spectrum(speed):
    from scipy.signal import welch

    from edge.audio.io import load_audio
    from trainer.featurize import speed_perturb

    rate = 16000
    samples = load_audio(MINI / "Actor_02" / "03-01-03-02-01-01-02.flac", rate)
    perturbed = speed_perturb(samples, speed)
    assert perturbed.dtype == np.float32
    assert abs(len(perturbed) - len(samples) / speed) <= 1

    def median_frequency(x):
        freqs, power = welch(x, rate, nperseg=1024)
        cumulative = np.cumsum(power)
        return freqs[np.searchsorted(cumulative, cumulative[-1] / 2)]

    # playing faster moves every spectral component up by the speed factor
    assert median_frequency(perturbed) == pytest.approx(speed * median_frequency(samples), rel=0.05)


def test_perturbed_versions_are_cached_apart_from_the_original(tmp_path):
    from trainer.featurize import Perturbation, featurize, with_variants

    params = FeatureParams()
    clips = [Clip(MINI / "Actor_01" / name, "angry", "ravdess:01", "ravdess")
             for name in ("03-01-05-02-01-01-01.flac", "03-01-05-01-02-02-01.flac")]
    perturbations = [Perturbation(speed=0.9), Perturbation(speed=1.1), Perturbation(snr_db=(10.0, 10.0)),
                     Perturbation(snr_db=(10.0, 10.0), seed=1)]
    feats = with_variants(featurize(clips, params, tmp_path, workers=1, progress=False), params, perturbations,
                          tmp_path, workers=1, progress=False)
    assert len(list(tmp_path.glob("*.npz"))) == 5 * len(clips)
    for f in feats:
        assert len(f.variants) == 4
        (slow, _), (fast, _), (noisy, noisy_energy), (other_noise, _) = f.variants
        n = f.mfcc.shape[0]
        assert abs(slow.shape[0] - n / 0.9) <= 2 and abs(fast.shape[0] - n / 1.1) <= 2
        assert noisy.shape == f.mfcc.shape and not np.allclose(noisy, other_noise)
        # noise at 10 dB below the clip's mean power fills the pauses: the quietest frames get louder
        assert np.percentile(noisy_energy, 10) > np.percentile(f.log_energy, 10) + 1.0
    again = with_variants(featurize(clips, params, tmp_path, workers=1, progress=False), params, perturbations[::-1],
                          tmp_path, workers=1, progress=False)
    assert len(list(tmp_path.glob("*.npz"))) == 5 * len(clips)
    np.testing.assert_array_equal(again[0].variants[3][0], feats[0].variants[0][0])


def test_a_clip_listed_many_times_is_computed_once_by_parallel_workers(tmp_path, caplog):
    """Twelve rows naming one file (a csv corpus may list a clip under several labels) share one cache
    entry: two worker processes once raced on its temporary file and lost it."""
    import logging

    from trainer.featurize import featurize

    path = MINI / "Actor_01" / "03-01-05-02-01-01-01.flac"
    clips = [Clip(path, label, "x", "csv") for label in ("neutral", "happy", "sad", "angry") * 3]
    with caplog.at_level(logging.INFO, logger="trainer.featurize"):
        feats = featurize(clips, FeatureParams(), tmp_path, workers=2, progress=False)
    assert "1 to compute" in caplog.text
    assert len(list(tmp_path.glob("*.npz"))) == 1 and not list(tmp_path.glob("*.tmp.npz"))
    assert all(np.array_equal(f.mfcc, feats[0].mfcc) for f in feats) and len(feats) == 12


def test_noise_is_added_at_the_requested_snr_and_is_pink():
    from scipy.signal import welch

    from edge.audio.io import load_audio
    from trainer.acoustics import colored_noise
    from trainer.featurize import Perturbation, add_noise

    samples = load_audio(MINI / "Actor_01" / "03-01-05-02-01-01-01.flac", 16000)
    noisy = add_noise(samples, 15.0, np.random.default_rng(0))
    noise = noisy.astype(np.float64) - samples
    snr = 10 * np.log10(np.mean(samples.astype(np.float64) ** 2) / np.mean(noise**2))
    assert snr == pytest.approx(15.0, abs=0.1)
    # 1/f: 10 dB less power per decade (3 dB per octave), fitted over 100 Hz - 7 kHz
    freqs, power = welch(colored_noise(1 << 18, 1.0, np.random.default_rng(1), floor_hz=0.0), 16000, nperseg=4096)
    band = (freqs >= 100) & (freqs <= 7000)
    slope = np.polyfit(np.log10(freqs[band]), 10 * np.log10(power[band]), 1)[0]
    assert slope == pytest.approx(-10.0, abs=0.5)
    # the same perturbation of the same file is the same noise; another seed is another
    p = Perturbation(snr_db=(10.0, 30.0), seed=3)
    np.testing.assert_array_equal(p.apply(samples, "a.wav"), p.apply(samples, "a.wav"))
    assert not np.array_equal(p.apply(samples, "a.wav"), Perturbation(snr_db=(10.0, 30.0), seed=4).apply(samples, "a.wav"))


def test_gain_augmentation_shifts_coefficient_0_as_a_real_gain_does():
    import math

    from edge.audio.io import load_audio
    from edge.dsp.features import mfcc_with_energy
    from edge.dsp.normalize import normalize
    from trainer.augment import augment
    from trainer.config import TrainParams

    params = FeatureParams()
    samples = load_audio(MINI / "Actor_01" / "03-01-05-02-01-01-01.flac", 16000)
    quiet = samples * 10 ** (-6 / 20)  # -6 dB
    (loud_mfcc, _), (quiet_mfcc, _) = mfcc_with_energy(samples, params), mfcc_with_energy(quiet, params)
    std = np.full(params.n_mfcc, 2.0)
    stats = FeatureParams(mean=tuple(np.zeros(params.n_mfcc)), std=tuple(std))
    loud_n, quiet_n = normalize(loud_mfcc, stats), normalize(quiet_mfcc, stats)
    energy_per_db = math.log(10) / 10 / std[0]
    audible = quiet_mfcc[:, 0] > np.log(np.finfo(np.float32).eps)  # digital silence stays at the log floor
    assert audible.mean() > 0.5
    np.testing.assert_allclose(quiet_n[audible, 0] - loud_n[audible, 0], -6 * energy_per_db, atol=1e-3)
    np.testing.assert_allclose(quiet_n[audible, 1:], loud_n[audible, 1:], atol=1e-3)

    no_other = TrainParams(gain_db=6.0, noise_std=0.0, time_masks=0, coefficient_masks=0)
    batch = np.repeat(loud_n[None, :300].astype(np.float32), 64, axis=0)
    out = augment(batch.copy(), no_other, np.random.default_rng(0), energy_per_db)
    shift = out[:, :, 0] - batch[:, :, 0]
    assert np.allclose(shift, shift[:, :1], atol=1e-5)  # one gain per window
    assert np.abs(shift).max() <= 6 * energy_per_db + 1e-6 and np.abs(shift).max() > 3 * energy_per_db
    np.testing.assert_array_equal(out[:, :, 1:], batch[:, :, 1:])


@pytest.mark.slow  # trains a model
def test_weight_average_follows_the_warmed_up_decay_every_step():
    from trainer.net import WeightAverage

    model = build_model(32, 4, 2, width=8)
    average = WeightAverage(model, decay=0.9)
    start = [np.asarray(w, dtype=np.float64) for w in model.get_weights()]
    model.set_weights([np.full_like(w, 1.0) for w in model.get_weights()])
    average.update()  # t = 1: decay min(0.9, 2/11)
    decay = 2 / 11
    for got, w0 in zip(average.average, start, strict=True):
        np.testing.assert_allclose(got, decay * w0 + (1 - decay) * 1.0, rtol=1e-12)
    with average.swapped():
        np.testing.assert_allclose(model.get_weights()[0], average.average[0].astype(np.float32))
    assert np.all(model.get_weights()[0] == 1.0)

    # every training step updates the average from that step's weights
    import keras

    model.compile(optimizer="adam", loss="categorical_crossentropy")
    average = WeightAverage(model, decay=0.5)
    expected = [w.copy() for w in average.average]
    snapshots = []

    class Snapshot(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            snapshots.append(model.get_weights())

    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 32, 4)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(24) % 2]
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[Snapshot(), average.callback()])
    assert len(snapshots) == 3 and average.updates == 3
    for t, weights in enumerate(snapshots, start=1):
        decay = min(0.5, (1 + t) / (10 + t))
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, weights, strict=True)]
    for got, want in zip(average.average, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


@pytest.mark.slow  # trains a model
def test_training_with_weight_average_returns_the_averaged_model():
    from trainer.config import TrainParams
    from trainer.train import train

    rng = np.random.default_rng(0)
    x = [rng.normal(size=(40, 4)).astype(np.float32) + (k % 2) for k in range(16)]
    y = np.arange(16) % 2
    runs = {}
    for decay in (0.0, 0.99):
        params = TrainParams(epochs=2, width=8, ema_decay=decay, daemon_windows=0.0, mixup_alpha=0.0,
                             coefficient_mask_width=2)
        model, epochs, history = train(x, y, 2, 32, params, progress=False)
        assert epochs == 2 and len(history) == 2
        runs[decay] = model.get_weights()
    # same seed, same steps: only the averaging differs, and the average lags the last step's weights
    differs = [not np.allclose(a, b) for a, b in zip(runs[0.0], runs[0.99], strict=True)]
    assert sum(differs) >= len(differs) // 2


def test_gradient_reversal_is_the_identity_forward_and_reverses_the_corpus_gradient():
    """The corpus loss reaches the shared layers multiplied by ``-strength``: strength 2 gives -2 times the
    gradient an ordinary (strength -1, i.e. +1) connection gives, and nothing at strength 0."""
    import keras
    import tensorflow as tf

    from trainer.net import adversary_strength, with_corpus_head

    model = build_model(32, 4, 3, width=8, n_dims=2, deltas=True, attention_pooling=True)
    trained, reversal = with_corpus_head(model, 3)
    x = np.random.default_rng(2).normal(size=(6, 32, 4)).astype(np.float32)
    corpus = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv1D))
    grads, outputs = {}, {}
    for strength in (-1.0, 0.0, 2.0):
        reversal.strength.assign(strength)
        with tf.GradientTape() as tape:
            out = trained([x], training=False)
            value = loss(corpus, out["corpus"])
        grads[strength] = np.asarray(tape.gradient(value, conv.kernel))
        outputs[strength] = np.asarray(out["corpus"])
    assert np.abs(grads[-1.0]).max() > 0
    np.testing.assert_allclose(grads[2.0], -2.0 * grads[-1.0], rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(grads[0.0], 0.0)
    np.testing.assert_allclose(outputs[2.0], outputs[-1.0], rtol=1e-5, atol=1e-6)
    assert sorted(model.output_names) == ["dimensions", "scores"]  # the exported model has no corpus head
    assert sorted(trained.output_names) == ["corpus", "dimensions", "scores"]
    # Ganin et al. (2016) eq. 14: 0 at the start, the full weight by the end, half of it at p = ln(3) / 10
    assert adversary_strength(0.5, 0.0) == 0.0
    assert adversary_strength(0.5, 1.0) == pytest.approx(0.5, abs=1e-4)
    assert adversary_strength(0.5, np.log(3) / 10) == pytest.approx(0.25)


def test_numpys_flush_to_zero_warning_is_silenced_and_no_other():
    """The armv7l tflite-runtime turns on flush-to-zero for the process, and numpy then warns "The value of the
    smallest subnormal for <class 'numpy.float64'> type is zero." on every replay: edge.model silences that
    one warning (numpy's exact text, raised here as numpy raises it) and leaves every other UserWarning."""
    code = "\n".join([
        "import warnings, numpy, edge.model",
        "warnings.warn(\"The value of the smallest subnormal for <class 'numpy.float64'> type is zero.\", UserWarning)",
        "warnings.warn('another warning', UserWarning)",
    ])
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "smallest subnormal" not in done.stderr
    assert "UserWarning: another warning" in done.stderr
