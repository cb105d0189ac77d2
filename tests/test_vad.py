"""Direct tests of the speech gating (:class:`edge.dsp.vad.EnergyVAD`) on real speech from ../shared/data:
onset and hangover, chunk invariance, the DC blocker and the stationary-noise check (issue 10), and
the same two failures through ``ser-edge replay`` on real files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from paths import RAVDESS_48K, SAMPLE, SHIPPED_MODEL, ravdess_mini_clips

from edge.audio.io import load_audio
from edge.dsp.features import FeatureParams, mfcc_with_energy
from edge.dsp.vad import DCBlocker, EnergyVAD, GatingEnergy, VadParams
from edge.manifest import load_manifest

RATE = 16000


@pytest.fixture(scope="module")
def features() -> FeatureParams:
    return load_manifest(SHIPPED_MODEL).features


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Our synthetic four-sentence sample (edge/samples): four utterances with 1.5 s pauses."""
    return load_audio(SAMPLE, RATE)


def segments(samples: np.ndarray, features: FeatureParams, chunk: int | None = None, **vad: float):
    detector = EnergyVAD(VadParams(**vad), features, max_utterance_frames=1000)
    chunks = [samples] if chunk is None else [samples[i:i + chunk] for i in range(0, samples.size, chunk)]
    found = [s for c in chunks for s in detector.process(detector.frame_energy(c))] + detector.flush()
    return [(s.start, s.end) for s in found], detector


def test_the_sample_gives_its_four_sentences(speech, features):
    found, _ = segments(speech, features)
    assert len(found) == 4, found
    pauses_s = [(b[0] - a[1]) * features.hop_s for a, b in zip(found, found[1:], strict=False)]
    assert all(1.0 < p < 2.0 for p in pauses_s), pauses_s  # the 1.5 s pauses, give or take the onset/hangover


@pytest.mark.parametrize("chunk", [160, 1024, 4000])
def test_gating_energy_and_segments_do_not_depend_on_chunking(speech, features, chunk):
    whole = GatingEnergy(features).process(speech)
    gating = GatingEnergy(features)
    parts = np.concatenate([gating.process(speech[i:i + chunk]) for i in range(0, speech.size, chunk)])
    np.testing.assert_array_equal(parts, whole)
    assert whole.size == mfcc_with_energy(speech, features)[1].size  # the features' framing
    assert segments(speech, features, chunk)[0] == segments(speech, features)[0]


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_the_numpy_dc_blocker_is_scipys_one_pole_filter_in_any_chunking(speech, rate):
    """DCBlocker stands in for scipy.signal.lfilter (not imported by the daemon: ~80 MB resident)."""
    import scipy.signal

    x = speech.astype(np.float64) + 0.1  # a USB microphone's DC offset
    pole = np.exp(-2 * np.pi * 20.0 / rate)
    reference = scipy.signal.lfilter([1.0, -1.0], [1.0, -pole], x)
    blocker = DCBlocker(pole)
    whole = blocker.process(x)
    np.testing.assert_allclose(whole, reference, rtol=0, atol=1e-12 * np.abs(reference).max())
    for chunk in (1, 7, 160, blocker.block, blocker.block + 1, 4000):
        blocker.reset()
        parts = np.concatenate([blocker.process(x[i:i + chunk]) for i in range(0, x.size, chunk)])
        np.testing.assert_array_equal(parts, whole)  # bit-identical: the blocks are aligned on the stream


def test_gating_energy_matches_the_features_energy_without_dc(speech, features):
    ours = GatingEnergy(features).process(speech)
    theirs = mfcc_with_energy(speech, features)[1].astype(np.float64)
    loud = theirs > np.log(1e-6)  # skip digital silence, where both sit at the floor
    assert np.median(np.abs(ours[loud] - theirs[loud])) < 0.05  # nats: under 0.2 dB


def test_a_short_click_is_not_speech_and_short_pauses_stay_inside(speech, features):
    silence = np.zeros(RATE, np.float32)
    click = silence.copy()
    click[8000:8016] = 0.5  # 1 ms: in 3 overlapping 25 ms frames, below the 50 ms (5-frame) onset
    assert segments(np.concatenate([silence, click, silence]), features)[0] == []
    start, end = segments(speech, features)[0][0]
    first = speech[start * features.hop_length:end * features.hop_length]
    gap = np.zeros(int(0.2 * RATE), np.float32)  # shorter than the 400 ms hangover
    joined = np.concatenate([silence, first, gap, first, silence])
    assert len(segments(joined, features)[0]) == 1


def test_dc_offset_does_not_hide_speech(speech, features):
    """Issue 10: an offset of 0.4 (a cheap USB microphone) made the VAD miss all speech."""
    quiet = (0.5 * speech).astype(np.float32)
    clean, _ = segments(quiet, features)
    offset, _ = segments(quiet + np.float32(0.4), features)
    assert offset == clean and len(clean) == 4
    # without the blocker (gating on the features' energy) the same audio has no speech at all
    plain = EnergyVAD(VadParams(), features, max_utterance_frames=1000)
    energy = mfcc_with_energy(quiet + np.float32(0.4), features)[1]
    assert plain.process(energy) + plain.flush() == []


@pytest.mark.parametrize("amplitude", [0.01, 0.1, 0.3])
def test_stationary_noise_after_silence_is_not_speech(features, amplitude):
    """Issue 10: white noise right after silence gave 14 "angry" events before the floor adapted."""
    noise = np.random.default_rng(0).standard_normal(20 * RATE).astype(np.float32) * np.float32(amplitude)
    audio = np.concatenate([np.zeros(RATE, np.float32), noise])
    found, detector = segments(audio, features)
    assert found == [] and detector.noise_onsets == 1
    unchecked, _ = segments(audio, features, stationary_db=0.0)
    assert sum(end - start for start, end in unchecked) >= 1900  # what the check prevents: 19 s of "speech"


def test_speech_after_a_stationary_noise_onset_is_still_found(speech, features):
    """Silence, then a noise onset (rejected), then the sample's speech over that noise: every
    sentence is found, nothing before the speech is."""
    lead, noisy = RATE, 3 * RATE
    noise = np.random.default_rng(1).standard_normal(lead + noisy + speech.size).astype(np.float32) * np.float32(0.003)
    noise[:lead] = 0
    audio = noise.copy()
    audio[lead + noisy:] += speech
    found, detector = segments(audio, features)
    assert detector.noise_onsets == 1
    offset = (lead + noisy) // features.hop_length
    assert found and all(start >= offset for start, _ in found), found
    for start, end in segments(speech, features)[0]:  # each sentence overlaps a segment found in the noise
        assert any(s < end + offset and start + offset < e for s, e in found), (start + offset, end + offset, found)


def test_the_stationarity_check_leaves_real_speech_alone(features):
    clips = ravdess_mini_clips()[:20] + sorted(RAVDESS_48K.glob("*.wav"))
    assert clips, "no clips in ../shared/data"
    for clip in clips:
        audio = load_audio(clip, RATE)
        assert segments(audio, features)[0] == segments(audio, features, stationary_db=0.0)[0], clip


def _replay(path, tmp_path) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "edge.cli", "replay", str(path), "--sink", "stdout", "--model",
                           str(SHIPPED_MODEL), "--device-id", "vad-test"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.slow
def test_replay_of_real_files_with_dc_offset_and_with_noise(speech, tmp_path):
    dc = tmp_path / "dc.wav"
    soundfile.write(str(dc), 0.5 * speech + 0.4, RATE, subtype="FLOAT")
    assert len(_replay(dc, tmp_path)) == 4
    noise = tmp_path / "noise.wav"
    white = np.random.default_rng(2).standard_normal(20 * RATE) * 0.1
    soundfile.write(str(noise), np.concatenate([np.zeros(RATE), white]), RATE, subtype="FLOAT")
    assert _replay(noise, tmp_path) == []
