"""``ser-train evaluate`` on real clips through the shipped int8 model and the daemon's code path."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.paths import CREMA_D_MINI, RAVDESS_48K, SHARED_DATA, SHIPPED_MODEL, TESS_MINI
from trainer.cli import main
from trainer.metrics import NOT_A_CLASS, restricted_argmax, summarize

EMOTION4 = "neutral,happy,sad,angry"
needs_data = pytest.mark.shared_data  # ../shared/data/tess-mini: skipped without it, failed under CI=true (conftest)


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
    # a partial label (NOT_A_CLASS) is in no figure; with nothing else there is no figure, and no error
    partial = summarize(np.array([0, NOT_A_CLASS, 1]), np.array([0, 1, 0]), ("a", "b"))
    assert partial["confusion"] == [[1, 0], [1, 0]] and partial["ua"] == pytest.approx(0.5)
    only = summarize(np.array([NOT_A_CLASS]), np.array([0]), ("a", "b"))
    assert np.isnan(only["ua"]) and only["confusion"] == [[0, 0], [0, 0]]


def _calibrated_sample(n: int, seed: int, temperature: float = 1.0):
    """Four-class logits, labels drawn from ``softmax(logits / temperature)``, and ``softmax(logits)``:
    a model whose scores are calibrated after dividing the logits by ``temperature``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, size=(n, 4))
    truth = np.exp(logits / temperature)
    truth /= truth.sum(axis=1, keepdims=True)
    y = (rng.random(n)[:, None] > truth.cumsum(axis=1)).sum(axis=1)  # one categorical draw per row
    scores = np.exp(logits)
    return scores / scores.sum(axis=1, keepdims=True), y


def test_fit_temperature_recovers_the_temperature_that_calibrates():
    from edge.calibration import temperature_scale
    from trainer.metrics import expected_calibration_error, fit_temperature

    probabilities, y = _calibrated_sample(20000, 0, temperature=2.0)
    temperature = fit_temperature(probabilities, y)
    assert temperature == pytest.approx(2.0, rel=0.05)
    before = expected_calibration_error(probabilities, y)
    after = expected_calibration_error(temperature_scale(probabilities, temperature), y)
    assert before > 0.1 and after < 0.02


def test_expected_calibration_error_is_the_gap_between_confidence_and_accuracy():
    from trainer.metrics import expected_calibration_error

    # every decision at confidence 0.7, six in ten right: ECE = |0.6 - 0.7|
    probabilities = np.tile([0.7, 0.1, 0.1, 0.1], (10, 1))
    y = np.array([0] * 6 + [1] * 4)
    assert expected_calibration_error(probabilities, y) == pytest.approx(0.1)


def test_unsure_threshold_is_where_decisions_become_right_half_the_time():
    from trainer.metrics import unsure_threshold

    probabilities, y = _calibrated_sample(20000, 1)  # calibrated: a decision at confidence c is right with probability c
    threshold = unsure_threshold(probabilities, y)
    assert threshold == pytest.approx(0.5, abs=0.03)
    confidence = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == y
    assert right[confidence < threshold].mean() < 0.5 < right[confidence >= threshold].mean()
    assert unsure_threshold(probabilities, probabilities.argmax(axis=1)) == 0.0  # every decision right
    assert unsure_threshold(probabilities, (probabilities.argmax(axis=1) + 1) % 4) == 1.0  # every decision wrong


def test_corpus_balanced_calibration_weighs_every_corpus_the_same():
    """With ``groups``, a corpus of 1,000 clips calibrated at T = 1 and one of 20,000 at T = 3 give the
    temperature of two equal corpora (between the two, not near 3 as the pooled fit is), and copying one
    corpus's clips five times changes neither the temperature nor the unsure threshold."""
    from trainer.metrics import fit_temperature, group_weights, unsure_threshold

    small_p, small_y = _calibrated_sample(1000, 2, temperature=1.0)
    big_p, big_y = _calibrated_sample(20000, 3, temperature=3.0)
    p, y = np.concatenate([small_p, big_p]), np.concatenate([small_y, big_y])
    groups = np.array(["small"] * 1000 + ["big"] * 20000)
    weights = group_weights(groups, len(y))
    assert weights.sum() == pytest.approx(1.0) and weights[groups == "small"].sum() == pytest.approx(0.5)
    assert group_weights(None, 4).tolist() == [0.25] * 4
    pooled, balanced = fit_temperature(p, y), fit_temperature(p, y, groups)
    assert 1.3 < balanced < pooled - 0.3 and pooled > 2.5
    copied = (np.concatenate([np.tile(small_p, (5, 1)), big_p]), np.concatenate([np.tile(small_y, 5), big_y]),
              np.array(["small"] * 5000 + ["big"] * 20000))
    assert fit_temperature(*copied) == pytest.approx(balanced, rel=1e-3)
    assert fit_temperature(copied[0], copied[1]) < pooled - 0.3  # the pooled fit follows the copies
    assert unsure_threshold(*copied) == pytest.approx(unsure_threshold(p, y, groups), abs=1e-6)


CORAA_MINI = SHARED_DATA / "coraa-ser-mini" / "datasets" / "coraa-ser"


def read_scores(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@needs_data
def test_scores_csv_has_one_row_per_clip_and_the_aucs_are_sklearns_on_its_columns(tmp_path, capsys):
    """The shipped model has arousal/valence outputs: --json gives their ROC AUCs over the clips scored, which
    are sklearn's on the --scores file's own label and arousal/valence columns; the CSV's probabilities,
    decisions and unsure flags are those the figures and the manifest imply."""
    scores_csv = tmp_path / "scores.csv"
    report = run_json(capsys, "--corpus", f"tess={TESS_MINI}", "--corpus", f"crema-d={CREMA_D_MINI}",
                      "--scores", str(scores_csv), "--cache-dir", str(tmp_path))
    rows = read_scores(scores_csv)
    assert len(rows) == report["clips"] == report["ua_clips"] and len({r["path"] for r in rows}) == len(rows)
    labels = report["labels"]
    assert list(rows[0]) == ["path", "corpus", "speaker", "label", "predicted", *(f"p_{x}" for x in labels),
                             "arousal", "valence", "unsure"]
    probabilities = np.array([[float(r[f"p_{x}"]) for x in labels] for r in rows])
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    assert [r["predicted"] for r in rows] == [labels[k] for k in probabilities.argmax(axis=1)]
    confusion = np.zeros((4, 4), dtype=int)
    for r in rows:
        confusion[labels.index(r["label"]), labels.index(r["predicted"])] += 1
    assert confusion.tolist() == report["confusion"]
    unsure_below = json.loads(SHIPPED_MODEL.with_suffix(".json").read_text())["calibration"]["unsure_below"]
    assert [int(r["unsure"]) for r in rows] == (probabilities.max(axis=1) < unsure_below).astype(int).tolist()
    for name, positive, negative in (("arousal", {"angry", "happy"}, {"neutral", "sad"}),
                                     ("valence", {"happy"}, {"angry", "sad"})):
        kept = [r for r in rows if r["label"] in positive | negative]
        expected = roc_auc_score([r["label"] in positive for r in kept], [float(r[name]) for r in kept])
        assert report[f"{name}_auc"] == pytest.approx(expected, abs=1e-9) and report[f"{name}_auc_reason"] is None
        assert report[f"{name}_auc_clips"] == {"positive": sum(r["label"] in positive for r in kept),
                                               "negative": sum(r["label"] in negative for r in kept)}


@needs_data
def test_non_neutral_clips_are_scored_outside_ua_and_counted_in_natural_neutral_figures(tmp_path, capsys):
    """CORAA-SER clips listed by hand, its non-neutral ones with the partial label ``non-neutral``: the model
    cannot say it, so they stay out of UA and the confusion matrix, and the natural-neutral figures (neutral
    recall, ROC AUC of P(neutral)) are those of the scores file. The arousal AUC has no high clip: null with
    its reason."""
    table = tmp_path / "coraa.csv"
    listed = [(p, "neutral") for p in sorted((CORAA_MINI / "neutral").glob("*.wav"))]
    listed += [(p, "non-neutral") for p in sorted(CORAA_MINI.glob("non-neutral-*/*.wav"))]
    table.write_text("path,label,speaker\n" + "".join(f"{p},{label},{p.name.split('_')[0]}\n" for p, label in listed))
    scores_csv = tmp_path / "scores.csv"
    report = run_json(capsys, "--corpus", f"csv={table}", "--scores", str(scores_csv), "--cache-dir", str(tmp_path))
    rows = read_scores(scores_csv)
    neutral = [r for r in rows if r["label"] == "neutral"]
    assert len(rows) == report["clips"] == len(listed) and report["excluded"] == 0
    assert report["ua_clips"] == len(neutral) == np.array(report["confusion"]).sum()
    assert report["per_class"]["neutral"]["recall"] == pytest.approx(
        np.mean([r["predicted"] == "neutral" for r in neutral]))
    natural = report["natural_neutral"]
    assert natural["neutral_clips"] == len(neutral) and natural["non_neutral_clips"] == len(rows) - len(neutral)
    assert natural["neutral_recall"] == pytest.approx(report["per_class"]["neutral"]["recall"])
    assert natural["neutral_auc"] == pytest.approx(
        roc_auc_score([r["label"] == "neutral" for r in rows], [float(r["p_neutral"]) for r in rows]), abs=1e-9)
    assert report["arousal_auc"] is None and "no clip labelled angry" in report["arousal_auc_reason"]


def test_evaluate_help_documents_the_aucs_and_the_scores_file(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("--scores FILE.csv", "one CSV row per scored clip", "arousal_auc", "valence_auc", "unsure",
                  "non-neutral"):
        assert words in text


@needs_data
def test_scores_in_a_missing_folder_is_one_line(tmp_path, capsys):
    status = main(["evaluate", "--model", str(SHIPPED_MODEL), "--corpus", f"tess={TESS_MINI}", "--scores",
                   str(tmp_path / "no" / "scores.csv"), "--cache-dir", str(tmp_path)])
    assert status == 2
    err = capsys.readouterr().err
    assert "--scores: expected a file in an existing folder" in err and err.count("\n") == 1


def test_label_auc_and_natural_neutral_name_what_is_missing():
    from trainer.metrics import AROUSAL_HIGH, AROUSAL_LOW, label_auc, natural_neutral

    empty = label_auc(["sad", "neutral"], np.array([0.1, 0.2]), AROUSAL_HIGH, AROUSAL_LOW)
    assert empty["auc"] is None and empty["negative"] == 2 and "angry" in empty["reason"]
    with pytest.raises(ValueError, match="expected model labels with 'neutral'"):
        natural_neutral(["neutral"], np.array([[1.0, 0.0]]), ("happy", "sad"))
