"""Leave-one-corpus-out end to end on real clips of three corpora: the held-out figures (clean and far-field,
int8 and float), arousal/valence, calibration, the report, and the manifest the device reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from paths import RAVDESS_MINI, SAVEE_MINI, TUREV_DB_MINI

from edge.model import load_model
from edge.pipeline import Pipeline
from trainer.cli import main

pytestmark = pytest.mark.slow  # every test here fits a model (the module's LOCO run, or its own)


@pytest.fixture(scope="module")
def loco_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loco")
    status = main(["fit", "--corpus", f"ravdess={RAVDESS_MINI}", "--corpus", f"savee={SAVEE_MINI}",
                   "--corpus", f"turev-db={TUREV_DB_MINI}", "--labels", "emotion4", "--out", str(tmp / "m"),
                   "--quick", "--epochs", "1", "--windows-per-epoch", "64", "--far-field-variants", "1",
                   "--allow-chance", "--no-baseline", "--no-progress", "--jobs", "2",
                   "--cache-dir", str(tmp / "cache"), "--runs-dir", str(tmp / "runs")])
    assert status == 0
    return tmp


def test_every_corpus_is_held_out_whole_clean_and_far_field(loco_run):
    run_dir = next((loco_run / "runs").glob("m-*"))
    loco = json.loads((run_dir / "cv.json").read_text())["loco"]
    for condition in ("clean", "far"):
        for kind in ("int8", "float"):
            rows = loco[condition][kind]["corpora"]
            assert [r["corpus"] for r in rows] == ["ravdess", "savee", "turev-db"]
            assert [r["clips"] for r in rows] == [72, 5, 8]  # emotion4 clips of each subset, all scored
            for row in rows:
                assert 0 <= row["ua"] <= 1 and 0 <= row["e4_ua"] <= 1
                assert -1 <= row["arousal_ccc"] <= 1
            mean = loco[condition][kind]["mean"]["ua"]
            assert mean == pytest.approx(np.mean([r["ua"] for r in rows]))
    calibration = loco["calibration"]
    assert 0.05 <= calibration["temperature"] <= 20 and 0 <= calibration["unsure_below"] <= 1
    assert {p["corpus"] for p in calibration["per_corpus"]} == {"ravdess", "savee", "turev-db"}
    report = (run_dir / "report.md").read_text()
    for png in ("reliability.png", "loco.png", "confusion_savee_far.png"):
        assert (run_dir / png).stat().st_size > 0 and f"]({png})" in report
    assert "Leave-one-corpus-out" in report and "exactly the adaptation the daemon applies" in report
    for fold in range(3):  # each fold's model, loadable as the device loads it
        assert tuple(load_model(run_dir / "folds" / f"fold{fold}.tflite").labels) == ("neutral", "happy", "sad", "angry")
    scores = np.load(run_dir / "fold_scores.npz")
    assert scores["fold0_int8_scores"].shape == (72, 4) and scores["fold0_far_int8_scores"].shape == (72, 4)


def test_the_manifest_carries_dimensions_calibration_and_adaptation(loco_run):
    manifest = json.loads((loco_run / "m.json").read_text())
    assert manifest["labels"] == ["neutral", "happy", "sad", "angry"]
    assert manifest["dimensions"] == ["arousal", "valence"] and manifest["output"] == "logits"
    cv = json.loads(next((loco_run / "runs").glob("m-*/cv.json")).read_text())["loco"]["calibration"]
    assert manifest["calibration"] == {"temperature": cv["temperature"], "unsure_below": cv["unsure_below"]}
    assert manifest["features"]["adapt_time_constant_s"] > 0
    assert "ravdess:01" in manifest["training"]["speakers"]
    model = load_model(loco_run / "m.tflite")
    pipeline = Pipeline.for_model(model)
    from edge.audio.io import load_audio

    decisions = pipeline.process(load_audio(RAVDESS_MINI / "Actor_01" / "03-01-05-02-01-01-01.flac", 16000))
    decisions += pipeline.flush()
    assert decisions
    for d in decisions:
        assert -1 <= d.arousal <= 1 and -1 <= d.valence <= 1
        assert abs(float(d.scores.sum()) - 1) < 1e-3
        assert d.unsure == (d.confidence < manifest["calibration"]["unsure_below"])
    assert pipeline.normalizer.speech_frames > 0  # the device's statistics moved towards this speech


def test_fit_refuses_a_model_at_chance(tmp_path, capsys):
    """The held-out corpus is one real clip under all four labels: any model is exactly at chance on it."""
    clip = next(RAVDESS_MINI.glob("Actor_01/*.flac"))
    table = tmp_path / "same.csv"
    table.write_text("path,label,speaker\n" + "".join(f"{clip},{label},x\n" for label in ("neutral", "happy", "sad", "angry")))
    out = tmp_path / "m"
    status = main(["fit", "--corpus", f"csv={table}", "--corpus", f"ravdess={RAVDESS_MINI}", "--labels", "emotion4",
                   "--out", str(out), "--folds", "0", "--quick", "--epochs", "1", "--windows-per-epoch", "32",
                   "--far-field-variants", "0", "--no-far-field-eval", "--no-dimensions", "--no-baseline",
                   "--no-progress", "--jobs", "1", "--cache-dir", str(tmp_path / "cache"),
                   "--runs-dir", str(tmp_path / "runs")])
    assert status == 2
    err = capsys.readouterr().err
    assert "chance level" in err and "--allow-chance" in err and err.strip().count("\n") == 0
    assert not out.with_suffix(".tflite").exists()


def test_evaluate_warns_about_speakers_the_model_trained_on(loco_run, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--model", str(loco_run / "m.tflite"), "--corpus", f"savee={SAVEE_MINI}", "--json",
                 "--cache-dir", str(loco_run / "cache"), "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["trained_on"] and "not held-out" in report["trained_on"][0]
    assert 0 <= report["ua"] <= 1 and set(report["per_class"]) <= {"neutral", "happy", "sad", "angry"}


def test_rescore_reproduces_the_held_out_figures_and_varies_the_adaptation(loco_run, capsys):
    """``ser-train rescore`` with the fit's own adaptation settings gives exactly the run's held-out UA
    (clean and far-field, every fold's kept int8 model); other settings give one row each."""
    run_dir = next((loco_run / "runs").glob("m-*"))
    loco = json.loads((run_dir / "cv.json").read_text())["loco"]
    cache = ["--cache-dir", str(loco_run / "cache"), "--no-progress"]
    for condition, flags in (("clean", []), ("far", ["--far-field"])):
        assert main(["rescore", str(run_dir), "--json", *flags, *cache]) == 0
        rows = json.loads(capsys.readouterr().out)["rows"]
        expected = {r["corpus"]: r["ua"] for r in loco[condition]["int8"]["corpora"]}
        assert {r["corpus"]: r["ua"] for r in rows} == pytest.approx(expected, abs=1e-12)
    assert main(["rescore", str(run_dir), "--time-constant", "0,120", "--prior", "3", "--json", *cache]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert sorted((r["corpus"], r["time_constant_s"]) for r in rows) == [
        (c, t) for c in ("ravdess", "savee", "turev-db") for t in (0.0, 120.0)]
    assert all(0 <= r["first_accuracy"] <= 1 and r["prior_s"] == 3.0 for r in rows)


def test_rescore_refuses_what_it_cannot_score(loco_run, tmp_path, capsys):
    assert main(["rescore", str(tmp_path)]) == 2
    assert "config.json: not found" in capsys.readouterr().err
    run_dir = next((loco_run / "runs").glob("m-*"))
    assert main(["rescore", str(run_dir), "--time-constant", "soon"]) == 2
    assert "--time-constant: expected seconds" in capsys.readouterr().err


def test_calibrate_refits_from_the_kept_scores_into_the_manifest(loco_run, tmp_path, capsys):
    """``ser-train calibrate`` rebuilds the fit's calibration from the run's files alone (fold_scores.npz):
    the same temperature and threshold as the fit computed in memory. With --model it writes them into a
    copy of the run's manifest whose calibration was spoilt, the model still loads with the same sha256,
    and a manifest of another run is refused."""
    import shutil

    run_dir = next((loco_run / "runs").glob("m-*"))
    fitted = json.loads((run_dir / "cv.json").read_text())["loco"]["calibration"]
    assert main(["calibrate", str(run_dir), "--json"]) == 0
    refit = json.loads(capsys.readouterr().out)
    for key in ("temperature", "unsure_below", "ece_after_cross_fitted_mean", "ece_before_mean"):
        assert refit[key] == pytest.approx(fitted[key], rel=1e-9), key
    for name in ("m.tflite", "m.json"):
        shutil.copy(loco_run / name, tmp_path / name)
    manifest = json.loads((tmp_path / "m.json").read_text())
    manifest["calibration"] = {"temperature": 9.5, "unsure_below": 0.99}
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    assert main(["calibrate", str(run_dir), "--model", str(tmp_path / "m.json")]) == 0
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["calibration"] == {"temperature": pytest.approx(fitted["temperature"], rel=1e-9),
                                      "unsure_below": pytest.approx(fitted["unsure_below"], rel=1e-9)}
    assert written["training"]["calibration_refit"]["run"] == run_dir.name
    assert "each corpus" in written["training"]["calibration_rule"]
    model = load_model(tmp_path / "m.tflite")
    assert model.manifest.temperature == pytest.approx(fitted["temperature"])
    assert model.manifest.sha256 == manifest["sha256"]
    written["training"]["command"] = "ser-train fit --something-else"
    (tmp_path / "m.json").write_text(json.dumps(written))
    capsys.readouterr()
    assert main(["calibrate", str(run_dir), "--model", str(tmp_path / "m.json")]) == 2
    assert "not the final model of" in capsys.readouterr().err
    assert json.loads((tmp_path / "m.json").read_text())["training"]["command"] == "ser-train fit --something-else"
