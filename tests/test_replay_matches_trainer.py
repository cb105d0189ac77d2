"""The daemon's replay of a stream gives the same decisions as the trainer's scoring of the same audio.

One stream of real speech from four corpora (with pauses), so the adaptive normalisation moves from
utterance to utterance: ``ser-edge replay`` (file blocks, streaming resampler, streaming MFCC and gating
energy, the installed command) against the trainer's path (``trainer.featurize.compute`` on the whole
file, then the pipeline over the cached frames, as ``ser-train evaluate`` and the LOCO scoring run it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from helpers import model_with_features
from paths import CREMA_D_MINI, RAVDESS_48K, SAVEE_MINI, SHIPPED_MODEL, TESS_MINI

from edge.audio.io import load_audio
from edge.dsp.features import FeatureParams
from edge.model import load_model
from edge.pipeline import Pipeline
from trainer.featurize import compute

# sorted(...)[:1]: empty, not StopIteration at collection, when ../shared/data is absent (the tests skip then)
SOURCES = [*sorted(RAVDESS_48K.glob("*-05-*.wav"))[:1], CREMA_D_MINI / "AudioWAV" / "1001_IEO_HAP_HI.wav",
           *sorted(TESS_MINI.rglob("*_sad.wav"))[:1], SAVEE_MINI / "AudioData" / "DC" / "n01.wav",
           CREMA_D_MINI / "AudioWAV" / "1002_DFA_ANG_XX.wav"]
DIMENSIONS = ("arousal", "valence")


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    rate = FeatureParams().sample_rate_hz
    pause = np.zeros(int(0.8 * rate), dtype=np.float32)
    parts = [np.concatenate([load_audio(path, rate), pause]) for path in SOURCES]
    out = tmp_path_factory.mktemp("stream") / "stream.wav"
    soundfile.write(out, np.concatenate(parts), rate, subtype="PCM_16")
    return out


@pytest.fixture(scope="module", params=["shipped", "dc-removed"])
def model_path(request, tmp_path_factory) -> Path:
    """The shipped model, and a copy whose manifest turns on ``remove_dc_offset`` (the feature path of
    new fits), so both front ends are compared."""
    if request.param == "shipped":
        return SHIPPED_MODEL
    return model_with_features(SHIPPED_MODEL, tmp_path_factory.mktemp("model"), remove_dc_offset=True)


def test_replay_and_trainer_scoring_decide_alike(stream, model_path):
    model = load_model(model_path)
    assert set(model.manifest.dimensions) == set(DIMENSIONS)  # else this test proves nothing about them
    mfcc, log_energy = compute(stream, model.manifest.features)  # the trainer's cached features
    pipeline = Pipeline.for_model(model)
    decisions = pipeline.process_frames(mfcc, log_energy) + pipeline.flush()

    command = Path(sys.executable).with_name("ser-edge")
    replay = subprocess.run([str(command), "replay", str(stream), "--sink", "stdout", "--model", str(model_path)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert replay.returncode == 0, replay.stderr
    events = [json.loads(line) for line in replay.stdout.splitlines() if line.startswith("{")]
    assert len(decisions) >= len(SOURCES) - 1 and len(events) == len(decisions)
    for event, decision in zip(events, decisions, strict=True):
        assert (event["start_s"], event["end_s"]) == (round(decision.start_s, 3), round(decision.end_s, 3))
        assert event["label"] == model.labels[decision.top]
        expected = {label: round(float(score), 4) for label, score in zip(model.labels, decision.scores, strict=True)}
        assert event["scores"] == pytest.approx(expected, abs=1e-4)
        assert event["unsure"] == decision.unsure
        for key in DIMENSIONS:  # present and equal where the model has the output, null on both sides where not
            if key in model.manifest.dimensions:
                assert event[key] is not None and getattr(decision, key) is not None, key
                assert event[key] == pytest.approx(getattr(decision, key), abs=1e-3), key
            else:
                assert event[key] is None and getattr(decision, key) is None, key
    assert pipeline.normalizer.speech_frames > 0 or not model.manifest.features.adapt_time_constant_s
