"""MFCC: agreement with python_speech_features on real speech, streaming chunk invariance, fuzzing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import assert_streaming_equals_batch
from hypothesis import given, settings
from hypothesis import strategies as st
from paths import RAVDESS_48K, RAVDESS_MINI, TESS_MINI
from python_speech_features import mfcc as psf_mfcc

from edge.audio.io import load_audio
from edge.dsp.features import FeatureParams, StreamingMFCC, analysis_window, mfcc, mfcc_with_energy

REAL_CLIPS = [
    RAVDESS_MINI / "Actor_01" / "03-01-05-02-01-01-01.flac",  # angry, strong, male, 16 kHz FLAC
    RAVDESS_MINI / "Actor_02" / "03-01-04-01-02-02-02.flac",  # sad, female
    RAVDESS_48K / "03-01-08-02-01-01-03.wav",  # surprised, 48 kHz original
    TESS_MINI / "YAF_happy" ,  # a directory: first file in it, 24 414 Hz original
]


def _clip(path):
    if path.is_dir():
        path = sorted(path.glob("*.wav"))[0]
    return load_audio(path, 16000)


def _reference(signal: np.ndarray, p: FeatureParams) -> np.ndarray:
    return psf_mfcc(
        signal.astype(np.float64), samplerate=p.sample_rate_hz, winlen=p.window_ms / 1000, winstep=p.hop_ms / 1000,
        numcep=p.n_mfcc, nfilt=p.n_mels, nfft=p.n_fft, lowfreq=p.low_hz, highfreq=p.high_hz,
        preemph=p.preemphasis, ceplifter=p.lifter, appendEnergy=p.append_energy,
        winfunc=lambda n: analysis_window(p.window, n).astype(np.float64),
    )


@pytest.mark.parametrize("path", REAL_CLIPS, ids=lambda p: p.name)
@pytest.mark.parametrize("params", [
    FeatureParams(),  # the shipped configuration
    FeatureParams(n_mels=26, n_mfcc=13, window="boxcar"),  # python_speech_features' own defaults
    FeatureParams(n_mels=40, n_mfcc=20, append_energy=False, lifter=0, window="hann", low_hz=60, high_hz=7600),
], ids=["shipped", "psf-defaults", "variant"])
def test_mfcc_agrees_with_python_speech_features(path, params):
    signal = _clip(path)
    ours = mfcc(signal, params)
    reference = _reference(signal, params)
    # python_speech_features zero-pads one last partial frame; we emit complete frames only
    assert ours.shape == (params.n_frames(signal.size), params.n_mfcc)
    assert reference.shape[0] - ours.shape[0] in (0, 1)
    np.testing.assert_allclose(ours, reference[: ours.shape[0]], rtol=0, atol=1e-3)


DC = FeatureParams(remove_dc_offset=True)
STREAMING_PARAMS = [FeatureParams(), FeatureParams(pitch=True), DC, FeatureParams(pitch=True, remove_dc_offset=True)]
STREAMING_IDS = ["mfcc", "mfcc+pitch", "dc-removed", "dc-removed+pitch"]


@pytest.mark.parametrize("path", REAL_CLIPS[:3], ids=lambda p: p.name)
@pytest.mark.parametrize("params", STREAMING_PARAMS, ids=STREAMING_IDS)
def test_streaming_chunks_equal_whole_signal(path, params):
    signal = _clip(path)
    whole, whole_energy = mfcc_with_energy(signal, params)
    stream = StreamingMFCC(params)
    for chunk in (160, 1024, 4000):
        stream.reset()
        parts = [stream.process(signal[i : i + chunk]) for i in range(0, signal.size, chunk)]
        coefficients = np.concatenate([p[0] for p in parts])
        energy = np.concatenate([p[1] for p in parts])
        assert_streaming_equals_batch(coefficients, whole)  # bit-identical, not merely close (unless FTZ)
        assert_streaming_equals_batch(energy, whole_energy)
        assert stream.frames_emitted == whole.shape[0]


def test_silence_is_finite():
    params = FeatureParams()
    out = mfcc(np.zeros(16000, dtype=np.float32), params)
    assert out.shape == (98, 40)
    assert np.all(np.isfinite(out))


def test_short_signal_gives_no_frames():
    params = FeatureParams()
    assert mfcc(np.zeros(params.frame_length - 1, dtype=np.float32), params).shape == (0, 40)
    assert mfcc(np.zeros(params.frame_length, dtype=np.float32), params).shape == (1, 40)


@pytest.mark.parametrize("kwargs, message", [
    ({"hop_ms": 30.0}, "hop_ms"),
    ({"n_fft": 256}, "n_fft"),
    ({"n_mfcc": 41}, "n_mfcc"),
    ({"high_hz": 9000.0}, "high_hz"),
    ({"window": "no-such-window"}, "window"),
    ({"mean": (0.0,), "std": (1.0,)}, "mean/std"),
    ({"pitch": True, "pitch_min_hz": 60.0}, "pitch_min_hz"),  # two 60 Hz periods do not fit in 25 ms
    ({"pitch": True, "pitch_max_hz": 5000.0}, "pitch_max_hz"),
    ({"pitch": True, "mean": (0.0,) * 40, "std": (1.0,) * 40}, "expected 42 values"),
])
def test_feature_params_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FeatureParams(**kwargs)


def test_feature_params_round_trip():
    params = FeatureParams(mean=tuple(float(i) for i in range(40)), std=tuple(1.0 + i for i in range(40)))
    assert FeatureParams.from_dict(params.to_dict()) == params
    dc = dataclasses.replace(params, remove_dc_offset=True)
    assert FeatureParams.from_dict(dc.to_dict()) == dc
    # a manifest written before the field (the shipped model's) means off: its front end is unchanged
    older = {k: v for k, v in dc.to_dict().items() if k != "remove_dc_offset"}
    assert FeatureParams.from_dict(older) == params
    with pytest.raises(ValueError, match="unknown feature parameter"):
        FeatureParams.from_dict({**params.to_dict(), "n_melz": 3})


@pytest.mark.parametrize("params", STREAMING_PARAMS, ids=STREAMING_IDS)
@settings(max_examples=60, deadline=None)
@given(
    # no subnormal samples (below 1.2e-38; 16-bit audio's step is 3e-5): where the CPU flushes them to zero
    # (the armv7l tflite-runtime) hypothesis cannot draw them and errors
    samples=st.lists(st.floats(-1.0, 1.0, width=32, allow_subnormal=False), min_size=0, max_size=3000),
    chunks=st.lists(st.integers(1, 700), min_size=1, max_size=20),
)
def test_fuzz_streaming_matches_batch(params, samples, chunks):
    signal = np.asarray(samples, dtype=np.float32)
    whole = mfcc(signal, params)
    stream = StreamingMFCC(params)
    parts, position, i = [], 0, 0
    while position < signal.size:
        size = chunks[i % len(chunks)]
        parts.append(stream.process(signal[position : position + size])[0])
        position += size
        i += 1
    got = np.concatenate(parts) if parts else np.zeros((0, params.n_features), np.float32)
    assert got.shape == whole.shape == (params.n_frames(signal.size), params.n_features)
    assert_streaming_equals_batch(got, whole)
    assert np.all(np.isfinite(got))


def test_rejects_multichannel_input():
    with pytest.raises(ValueError, match="expected a 1-D signal"):
        mfcc(np.zeros((100, 2), dtype=np.float32), FeatureParams())


def _harmonic_tone(f0: float, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    """Seven harmonics of ``f0`` with 1/k amplitudes and arbitrary phases (a voiced-speech-like source)."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.1 * sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in range(1, 8))).astype(np.float32)


@pytest.mark.parametrize("f0", [82.0, 120.0, 196.0, 310.0, 480.0])
def test_pitch_of_a_harmonic_tone_is_its_fundamental(f0):
    params = FeatureParams(pitch=True)
    features = mfcc(_harmonic_tone(f0), params)
    assert features.shape[1] == params.n_features == params.n_mfcc + 2
    np.testing.assert_array_equal(features[:, :params.n_mfcc], mfcc(_harmonic_tone(f0), FeatureParams()))
    estimated = 100.0 * 2.0 ** features[:, params.n_mfcc]
    np.testing.assert_allclose(estimated, f0, rtol=0.005)  # every frame, within 9 cents
    # clarity: periodic (frame 0 holds the pre-emphasis onset, y[0] = x[0], a step the tone does not repeat)
    assert features[1:, params.n_mfcc + 1].min() > 0.95


def test_pitch_clarity_separates_noise_and_silence_from_voice():
    params = FeatureParams(pitch=True)
    noise = np.random.default_rng(0).normal(0.0, 0.1, 16000).astype(np.float32)
    assert np.median(mfcc(noise, params)[:, -1]) < 0.5
    silence = mfcc(np.zeros(16000, np.float32), params)
    assert np.all(np.isfinite(silence)) and np.all(silence[:, -1] == 0.0)


def test_pitch_of_real_speech_is_lower_for_the_male_actor():
    """RAVDESS actor 1 (male) and actor 2 (female), both neutral-to-sad speech: the median F0 of the
    clearly voiced frames lies in each voice's usual range (Titze 1994: about 100-150 Hz male,
    180-250 Hz female), the male one well below the female one."""
    params = FeatureParams(pitch=True)
    median = {}
    for actor, name in (("01", "03-01-01-01-01-01-01.flac"), ("02", "03-01-04-01-02-02-02.flac")):
        features = mfcc(load_audio(RAVDESS_MINI / f"Actor_{actor}" / name, 16000), params)
        voiced = features[:, -1] > 0.7
        assert voiced.sum() > 20
        median[actor] = float(np.median(100.0 * 2.0 ** features[voiced, -2]))
    assert 80 < median["01"] < 160 < 170 < median["02"] < 300, median


INT16_FULL_SCALE = 32768
DC_TOLERANCE = 1e-3
"""MFCC units; float64 rounding of the frame mean, seen through float32 features."""


@pytest.fixture(scope="module")
def speech_int16() -> np.ndarray:
    """A real 16-bit clip at 16 kHz, as the integers its samples are (a microphone's int16 stream)."""
    samples = load_audio(REAL_CLIPS[0], 16000)
    as_int = np.round(samples * INT16_FULL_SCALE)
    assert np.array_equal(as_int / INT16_FULL_SCALE, samples)  # on the int16 grid: adding an offset is exact
    return as_int.astype(np.int32)


@settings(max_examples=40, deadline=None)
@given(start_s=st.floats(0.0, 2.5), offset=st.integers(INT16_FULL_SCALE // 20, INT16_FULL_SCALE // 2),
       sign=st.sampled_from([-1, 1]))
def test_frame_dc_offset_removal_makes_mfcc_blind_to_a_constant_offset(speech_int16, start_s, offset, sign):
    """A constant offset of 0.05-0.5 full scale added to half a second of real speech (anywhere in the clip):
    with ``remove_dc_offset`` every frame's MFCCs stay what they were; without it, coefficient 0 (the frame's
    log energy, which pre-emphasis does not protect) moves."""
    start = int(start_s * 16000)
    excerpt = speech_int16[start : start + 8000]
    clean = (excerpt / INT16_FULL_SCALE).astype(np.float32)
    shifted = ((excerpt + sign * offset) / INT16_FULL_SCALE).astype(np.float32)
    np.testing.assert_allclose(mfcc(shifted, DC), mfcc(clean, DC), rtol=0, atol=DC_TOLERANCE)
    off = FeatureParams()
    assert np.abs(mfcc(shifted, off)[:, 0] - mfcc(clean, off)[:, 0]).max() > DC_TOLERANCE
