"""``ser-train evaluate`` on real clips through the shipped int8 model and the daemon's code path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.paths import RAVDESS_48K, SHIPPED_MODEL, TESS_MINI
from trainer.cli import main
from trainer.evaluate import restricted_argmax, summarize

EMOTION4 = "neutral,happy,sad,angry"
needs_data = pytest.mark.skipif(not (TESS_MINI.is_dir() and SHIPPED_MODEL.is_file()),
                                reason="needs ../shared/data/tess-mini and the shipped model")


def run_json(capsys, *argv) -> dict:
    capsys.readouterr()
    assert main(["evaluate", "--model", str(SHIPPED_MODEL), "--json", "--no-progress", *argv]) == 0
    return json.loads(capsys.readouterr().out)


@needs_data
def test_evaluate_tess_on_the_four_shared_emotions(tmp_path, capsys):
    report = run_json(capsys, "--corpus", f"tess={TESS_MINI}", "--cache-dir", str(tmp_path))
    assert report["labels"] == EMOTION4.split(",") and report["label_scheme"] == "emotion4"
    assert report["clips"] == 8 and report["loaded"] == 14 and report["excluded"] == 6  # fear, disgust, surprise
    assert report["excluded_by_reason"]["tess:fear not in the model's emotion4 labels"] == 2
    confusion = np.array(report["confusion"])
    assert confusion.shape == (4, 4) and confusion.sum() == report["clips"]
    assert confusion.sum(axis=1).tolist() == [2] * 4  # one clip per speaker and emotion
    for k, label in enumerate(report["labels"]):
        row = report["per_class"][label]
        assert row["support"] == confusion[k].sum()
        assert row["recall"] == pytest.approx(confusion[k, k] / confusion[k].sum())
    assert report["ua"] == pytest.approx(np.mean([r["recall"] for r in report["per_class"].values()]))
    assert report["wa"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert 0 <= report["macro_f1"] <= 1
    # TESS's speakers are in the shipped model's training data: the report says so
    assert any("tess" in line and "not held-out" in line for line in report["trained_on"])


@needs_data
def test_evaluate_subset_excludes_and_counts(tmp_path, capsys):
    report = run_json(capsys, "--corpus", f"tess={TESS_MINI}", "--corpus", f"ravdess={RAVDESS_48K}",
                      "--labels", "angry,sad", "--cache-dir", str(tmp_path))
    assert report["loaded"] == 22 and report["clips"] == 4 + 2
    assert report["clips"] + report["excluded"] == report["loaded"]
    assert report["excluded_by_reason"]["tess:pleasant_surprise not in the model's emotion4 labels"] == 2
    assert report["excluded_by_reason"]["tess:happy outside --labels"] == 2
    assert np.array(report["confusion"]).sum() == report["clips"]


@needs_data
def test_evaluate_bad_labels_is_one_line(tmp_path, capsys):
    status = main(["evaluate", "--model", str(SHIPPED_MODEL), "--corpus", f"tess={TESS_MINI}", "--labels",
                   "angry,bored", "--cache-dir", str(tmp_path)])
    assert status == 2
    assert "expected at least 2 of the model's labels" in capsys.readouterr().err


def test_restricted_argmax_and_summary():
    scores = np.array([[0.5, 0.3, 0.2], [0.6, 0.1, 0.3]])
    assert restricted_argmax(scores, [1, 2]).tolist() == [0, 1]
    summary = summarize(np.array([0, 1, 1]), np.array([0, 1, 0]), ("a", "b"))
    assert summary["ua"] == pytest.approx(0.75) and summary["wa"] == pytest.approx(2 / 3)
    assert summary["per_class"]["b"] == {"recall": 0.5, "precision": 1.0, "f1": pytest.approx(2 / 3), "support": 2}
