"""Golden test: known clips through the shipped int8 model give the recorded decisions.

The recording (tests/golden/<model>.json, made by tests/record_golden.py) pins the model's sha256:
retraining the model means re-recording, on purpose, never silently.
"""

from __future__ import annotations

import json
import platform

import pytest
from paths import RAVDESS_48K, REPO, SHIPPED_MODEL
from record_golden import main_decision

from edge.model import load_model

GOLDEN = json.loads((REPO / "tests" / "golden" / f"{SHIPPED_MODEL.stem}.json").read_text())
# RAVDESS file names carry the acted emotion (Livingstone & Russo 2018): 03-01-EE-...
RAVDESS_EMOTION = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
                   "07": "disgust", "08": "surprised"}


#: The recording was made on x86-64. On another CPU the interpreter may take other kernels: `make pi-check`
#: on 2026-12-06 measured confidence 0.4144 on arm64 against 0.4042 recorded (0.0102; labels, times and
#: `unsure` identical) while the emulated system lacked /sys (LiteRT's cpuinfo then fails); with /sys
#: bound, the replay's scores were identical to x86's. So 0.01 where it was recorded, 0.02 elsewhere.
SCORE_TOLERANCE = 0.01 if platform.machine() in ("x86_64", "AMD64") else 0.02


@pytest.fixture(scope="module")
def model():
    return load_model(SHIPPED_MODEL)


def test_golden_file_is_for_the_shipped_model(model):
    assert GOLDEN["sha256"] == model.manifest.sha256, "model changed: run tests/record_golden.py and review"
    assert GOLDEN["model"] == model.manifest.model_id


@pytest.fixture(scope="module")
def heard(model) -> dict:
    """What the shipped model decides now on each golden clip (each alone: a cold start)."""
    return {name: main_decision(model, RAVDESS_48K / name) for name in GOLDEN["clips"]}


@pytest.mark.parametrize("name", sorted(GOLDEN["clips"]))
def test_known_clip_gives_the_recorded_decision(model, heard, name):
    expected = GOLDEN["clips"][name]
    decision = heard[name]
    assert model.labels[decision.top] == expected["label"]
    assert decision.confidence == pytest.approx(expected["confidence"], abs=SCORE_TOLERANCE)
    assert (round(decision.start_s, 3), round(decision.end_s, 3)) == (expected["start_s"], expected["end_s"])
    assert decision.unsure == expected["unsure"]
    for key in ("arousal", "valence"):
        assert getattr(decision, key) == pytest.approx(expected[key], abs=SCORE_TOLERANCE)


def test_arousal_follows_the_acted_emotions(heard):
    """Actor 03 is in the shipped model's training data: a sanity check, not an evaluation. Each clip alone (a
    cold start: the training statistics, no adaptation yet), run through the shipped model now: the angry clip
    is heard as more aroused than the neutral and sad ones, as the circumplex places them, and as recorded."""
    by_emotion = {RAVDESS_EMOTION[name.split("-")[2]]: decision for name, decision in heard.items()}
    assert by_emotion["angry"].arousal > max(by_emotion["neutral"].arousal, by_emotion["sad"].arousal)
    for name, decision in heard.items():
        assert decision.arousal == pytest.approx(GOLDEN["clips"][name]["arousal"], abs=0.01), name
