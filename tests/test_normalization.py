"""The normalisation that adapts on the device (edge.dsp.normalize.AdaptiveNormalizer), on real speech."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from paths import RAVDESS_MINI

from edge.audio.io import load_audio
from edge.dsp.features import FeatureParams, mfcc_with_energy
from edge.dsp.normalize import AdaptiveNormalizer, normalize

CLIP = RAVDESS_MINI / "Actor_01" / "03-01-05-02-01-01-01.flac"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """MFCCs of a real RAVDESS clip's loud frames (the utterance), float32 (k, 40)."""
    coefficients, log_energy = mfcc_with_energy(load_audio(CLIP, 16000), FeatureParams())
    return coefficients[log_energy > np.percentile(log_energy, 40)]


def params(mean: np.ndarray, std: np.ndarray, time_constant_s: float, prior_s: float = 10.0) -> FeatureParams:
    return FeatureParams(mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),
                         adapt_time_constant_s=time_constant_s, adapt_prior_s=prior_s)


def test_without_a_time_constant_it_is_the_fixed_training_normalisation(speech):
    fixed = params(speech.mean(axis=0) + 1.0, speech.std(axis=0) * 2, 0.0)
    normalizer = AdaptiveNormalizer(fixed)
    before = normalizer.apply(speech)
    normalizer.update(speech * 3.0)  # no effect without adaptation
    np.testing.assert_allclose(normalizer.apply(speech), before)
    np.testing.assert_allclose(before, normalize(speech, fixed), rtol=1e-5, atol=1e-5)


def test_a_louder_room_is_learnt_at_the_documented_rate(speech):
    """A prior from the clip itself, then the same speech 20 dB louder (log energy + 2 ln 10): after the prior's
    weight in speech the energy mean has moved half-way, and with long speech it converges, bounded by the cap."""
    prior = params(speech.mean(axis=0), speech.std(axis=0), time_constant_s=60.0, prior_s=10.0)
    normalizer = AdaptiveNormalizer(prior)
    louder = speech.copy()
    louder[:, 0] += 2 * np.log(10)  # c0 is the log frame energy: +20 dB
    shift = 2 * np.log(10)
    frames_per_s = 1 / prior.hop_s
    fed = 0
    while fed < 10 * frames_per_s:  # 10 s of louder speech = the prior's weight
        normalizer.update(louder)
        fed += len(louder)
    moved = normalizer.mean[0] - prior.mean[0]
    assert moved == pytest.approx(shift * fed / (fed + 10 * frames_per_s), rel=1e-6)
    assert normalizer.mean[1:] == pytest.approx(np.asarray(prior.mean[1:]), abs=1e-4)  # other coefficients unmoved
    for _ in range(200):
        normalizer.update(louder)
    assert normalizer.mean[0] - prior.mean[0] == pytest.approx(shift, rel=0.01)
    assert normalizer.count == pytest.approx(60.0 * frames_per_s)  # capped at the time constant
    # the louder speech now normalises as the original did under the prior
    np.testing.assert_allclose(normalizer.apply(louder).mean(axis=0)[0], 0.0, atol=0.05)


def test_one_long_angry_speaker_moves_the_statistics_by_at_most_its_share(speech):
    prior = params(speech.mean(axis=0), speech.std(axis=0), time_constant_s=120.0)
    normalizer = AdaptiveNormalizer(prior)
    for _ in range(int(120 / 0.01 / len(speech)) + 1):  # warm up on normal speech: the count reaches the cap
        normalizer.update(speech)
    start = normalizer.mean[0]
    shouting = speech.copy()
    shouting[:, 0] += 2.0
    normalizer.update(shouting[: int(10 / prior.hop_s)])  # 10 s of one loud utterance
    assert normalizer.mean[0] - start <= 2.0 * 10 / 120 + 1e-6


def test_state_round_trips_and_bad_state_is_refused(speech):
    prior = params(speech.mean(axis=0), speech.std(axis=0), time_constant_s=30.0)
    a = AdaptiveNormalizer(prior)
    a.update(speech * 1.5)
    b = AdaptiveNormalizer(prior)
    b.load_state(a.state())
    np.testing.assert_array_equal(a.apply(speech), b.apply(speech))
    with pytest.raises(ValueError, match="coefficients"):
        b.load_state({**a.state(), "mean": [0.0] * 3})
    with pytest.raises(ValueError, match="finite"):
        b.load_state({**a.state(), "count": float("nan")})
    b.reset()
    np.testing.assert_allclose(b.apply(speech), normalize(speech, prior), rtol=1e-5, atol=1e-5)


def test_bad_adaptation_parameters_are_refused():
    with pytest.raises(ValueError, match="adapt_time_constant_s"):
        FeatureParams(adapt_time_constant_s=float("nan"))
    with pytest.raises(ValueError, match="adapt_prior_s"):
        FeatureParams(adapt_prior_s=0.0)
    with pytest.raises(ValueError, match="mean: expected finite"):
        dataclasses.replace(FeatureParams(), mean=(float("nan"),) * 40, std=(1.0,) * 40)


def test_the_adapted_state_survives_a_restart_for_the_same_model_only(speech, tmp_path):
    from edge.dsp.normalize import restore_adaptation, save_adaptation

    prior = params(speech.mean(axis=0), speech.std(axis=0), time_constant_s=120.0)
    before = AdaptiveNormalizer(prior)
    louder = speech.copy()
    louder[:, 0] += 3.0
    for _ in range(5):
        before.update(louder)
    path = tmp_path / "adaptation.json"
    save_adaptation(path, before, "m@1")
    after = AdaptiveNormalizer(prior)
    assert "restored" in restore_adaptation(path, after, "m@1")
    np.testing.assert_array_equal(after.apply(speech), before.apply(speech))
    fresh = AdaptiveNormalizer(prior)
    assert "not used" in restore_adaptation(path, fresh, "other@2")
    np.testing.assert_allclose(fresh.apply(speech), normalize(speech, prior), rtol=1e-5, atol=1e-5)
    path.write_text("{not json")
    assert "unusable" in restore_adaptation(path, fresh, "m@1")
    assert "no adaptation state" in restore_adaptation(tmp_path / "none.json", fresh, "m@1")
