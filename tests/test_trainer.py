"""The trainer end to end on real RAVDESS clips (../shared/data/ravdess-mini: actors 01 and 02)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.audio import load_audio
from edge.features import mfcc
from edge.model import load_model
from trainer.cli import main
from trainer.corpora import CorpusError, load_ravdess, parse_ravdess_name
from trainer.folds import speaker_folds
from trainer.labels import RAVDESS_EMOTIONS

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MINI = DATA / "ravdess-mini"
RAVDESS8 = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]

needs_data = pytest.mark.skipif(not MINI.is_dir(), reason=f"no test corpus at {MINI}")


def ser_train() -> list[str]:
    installed = Path(sys.executable).with_name("ser-train")
    return [str(installed)] if installed.exists() else [sys.executable, "-m", "trainer.cli"]


def test_ravdess_names():
    assert parse_ravdess_name("03-01-05-02-01-01-12.wav") == ("angry", "12")
    assert parse_ravdess_name("03-01-01-01-02-02-01.flac") == ("neutral", "01")
    assert parse_ravdess_name("03-01-08-02-02-02-24.WAV") == ("surprised", "24")
    assert parse_ravdess_name("03-02-05-02-01-01-12.wav") is None  # song
    assert parse_ravdess_name("01-01-05-02-01-01-12.wav") is None  # audio-video
    assert parse_ravdess_name("OAF_back_angry.wav") is None
    assert list(RAVDESS_EMOTIONS.values()) == RAVDESS8


@needs_data
def test_load_ravdess_mini_and_48k():
    clips = load_ravdess(MINI)
    assert len(clips) == 120  # all 60 speech clips of each of 2 actors
    assert {c.speaker for c in clips} == {"ravdess:01", "ravdess:02"}
    by_name = {c.path.name: c for c in clips}
    assert by_name["03-01-01-01-01-01-01.flac"].label == "neutral"
    assert {c.label for c in clips} == set(RAVDESS8)
    originals = load_ravdess(DATA / "ravdess-48k")
    assert {c.label for c in originals} == set(RAVDESS8)
    assert {c.speaker for c in originals} == {"ravdess:03"}


def test_load_ravdess_empty_folder(tmp_path):
    with pytest.raises(CorpusError, match="no RAVDESS speech files"):
        load_ravdess(tmp_path)


def test_folds_speaker_disjoint():
    actors = [f"ravdess:{a:02d}" for a in range(1, 25)]
    folds = speaker_folds(actors, 6)
    assert [f.test for f in folds][1] == ("ravdess:05", "ravdess:06", "ravdess:07", "ravdess:08")
    tested = [s for f in folds for s in f.test]
    assert sorted(tested) == actors
    for fold in folds:
        assert not set(fold.test) & set(fold.train)
        assert not set(fold.test) & set(fold.validation)
        assert not set(fold.validation) & set(fold.train)
        assert len(fold.validation) == 2
        assert set(fold.test) | set(fold.train) | set(fold.validation) == set(actors)


@needs_data
def test_fit_end_to_end(tmp_path, capsys):
    out = tmp_path / "models" / "mini"
    status = main(["fit", "--corpus", f"ravdess={MINI}", "--out", str(out), "--n-folds", "2", "--quick",
                   "--epochs", "1", "--cache-dir", str(tmp_path / "cache"), "--runs-dir", str(tmp_path / "runs"),
                   "--no-progress"])
    assert status == 0
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["labels"] == RAVDESS8
    assert manifest["label_scheme"] == "native"
    assert manifest["input"] == {"frames": 300, "coefficients": 40, "window_s": 3.015}
    assert [row["fold"] for row in manifest["metrics"]["int8"]["folds"]] == [0, 1]
    assert 0 <= manifest["metrics"]["int8"]["ua"] <= 1
    assert list((tmp_path / "runs").glob("mini-*/config.json"))

    model = load_model(out.with_suffix(".tflite"))
    assert model.input_dtype == np.int8 and model.output_dtype == np.int8
    assert model.labels == tuple(RAVDESS8)
    features = model.manifest.features
    coefficients = mfcc(load_audio(MINI / "Actor_01" / "03-01-05-02-01-01-01.flac", features.sample_rate_hz), features)
    probs = model.predict(coefficients[-300:][None])
    assert probs.shape == (1, 8)
    assert np.all(probs >= 0) and abs(float(probs.sum()) - 1) < 0.05

    capsys.readouterr()
    status = main(["evaluate", "--model", str(out.with_suffix(".tflite")), "--corpus", f"ravdess={MINI}", "--json",
                   "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clips"] == 120
    assert set(report["recall"]) == set(RAVDESS8)
    assert 0 <= report["ua"] <= 1 and len(report["confusion"]) == 8


def test_installed_command_help_and_errors(tmp_path):
    help_run = subprocess.run(ser_train() + ["--help"], capture_output=True, text=True, timeout=120)
    assert help_run.returncode == 0
    assert "fit" in help_run.stdout and "evaluate" in help_run.stdout
    missing = subprocess.run(ser_train() + ["fit", "--corpus", f"ravdess={tmp_path / 'nowhere'}", "--out",
                                            str(tmp_path / "m")], capture_output=True, text=True, timeout=120,
                             cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0, missing.stderr
    assert "ravdess" in missing.stderr
    bad = subprocess.run(ser_train() + ["fit", "--corpus", "timit=/x", "--out", "m"], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0, bad.stderr
