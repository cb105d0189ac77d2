"""Leave-one-corpus-out end to end on real clips of three corpora: the held-out figures (clean and far-field,
int8 and float), arousal/valence, calibration, the report, and the manifest the device reads; and the
headline (issue 17) from real clips of seven corpora scored by the shipped model as held-out folds."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from paths import CREMA_D_MINI, RAVDESS_MINI, SAVEE_MINI, SHIPPED_MODEL, TESS_MINI, TUREV_DB_MINI
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from edge.model import load_model
from edge.pipeline import Pipeline
from trainer.cli import main
from trainer.corpora import load_corpus, load_csv
from trainer.crossval import FAR_FIELD_EVAL, FoldResult, pooled_metrics
from trainer.evaluate import score_clips
from trainer.featurize import Perturbation, featurize
from trainer.generalization import (
    HEADLINE_KEYS,
    ISSUE8_LOCO,
    calibration_from_parts,
    format_loco_table,
    headline,
    loco_metrics,
)
from trainer.labels import NON_NEUTRAL, dimension_targets, map_label
from trainer.metrics import NOT_A_CLASS
from trainer.recipes.runs import json_default
from trainer.report import render, save_results

slow = pytest.mark.slow  # the tests that fit a model (the module's LOCO run, or their own)


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


@slow
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
    headline = loco["clean"]["int8"]["headline"]  # three of the eight four-emotion corpora
    assert headline["eight_corpora"] == ["ravdess", "savee", "turev-db"]
    assert headline["mean_e4_ua_eight"] == pytest.approx(np.mean([r["e4_ua"] for r in loco["clean"]["int8"]["corpora"]]))
    assert "### Headline" in report and f"**{headline['mean_e4_ua_eight']:.3f}**" in report
    for fold in range(3):  # each fold's model, loadable as the device loads it
        assert tuple(load_model(run_dir / "folds" / f"fold{fold}.tflite").labels) == ("neutral", "happy", "sad", "angry")
    scores = np.load(run_dir / "fold_scores.npz")
    assert scores["fold0_int8_scores"].shape == (72, 4) and scores["fold0_far_int8_scores"].shape == (72, 4)


@slow
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


@slow
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


@slow
def test_evaluate_warns_about_speakers_the_model_trained_on(loco_run, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--model", str(loco_run / "m.tflite"), "--corpus", f"savee={SAVEE_MINI}", "--json",
                 "--cache-dir", str(loco_run / "cache"), "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["trained_on"] and "not held-out" in report["trained_on"][0]
    assert 0 <= report["ua"] <= 1 and set(report["per_class"]) <= {"neutral", "happy", "sad", "angry"}


@slow
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


@slow
def test_rescore_refuses_what_it_cannot_score(loco_run, tmp_path, capsys):
    assert main(["rescore", str(tmp_path)]) == 2
    assert "config.json: not found" in capsys.readouterr().err
    run_dir = next((loco_run / "runs").glob("m-*"))
    assert main(["rescore", str(run_dir), "--time-constant", "soon"]) == 2
    assert "--time-constant: expected seconds" in capsys.readouterr().err


@slow
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


# --- the headline (issue 17) from real clips scored by the shipped model, one held-out fold per corpus ---

E4 = ("neutral", "happy", "sad", "angry")
SHARED = RAVDESS_MINI.parent


def _listed(tmp, name: str, rows: list[tuple[Path, str]]) -> list:
    """Clips listed in a CSV (the csv corpus kind), then named as corpus ``name`` (its loader is not in this
    clone): labels from the files' folders or names, as the corpus's README gives them."""
    table = tmp / f"{name}.csv"
    table.write_text("path,label,speaker\n" + "".join(f"{p},{label},{p.stem.split('_')[0]}\n" for p, label in rows))
    return [dataclasses.replace(c, corpus=name) for c in load_csv(table)]


def _fold(index: int, corpus: str, clips: list, tmp, seed: int = 0) -> FoldResult:
    """A held-out fold of ``clips`` scored by the shipped int8 model as ``fit`` scores one (one stream per
    corpus, clean and far-field, in the order ``seed`` draws); the float scores are the int8 ones (the shipped
    model has no float twin)."""
    model = load_model(SHIPPED_MODEL)
    features, frames = model.manifest.features, model.manifest.input.frames
    clips = [dataclasses.replace(c, label=label) for c in clips
             if (label := NON_NEUTRAL if c.label == NON_NEUTRAL else map_label(c, "emotion4"))]
    out = {}
    for condition, perturbation in (("clean", Perturbation()), ("far", FAR_FIELD_EVAL)):
        feats = featurize(clips, features, cache_dir=tmp, workers=1, progress=False, perturbation=perturbation)
        out[condition] = score_clips(feats, model.score, features, frames, seed=seed,
                                     temperature=model.manifest.temperature)
    y_true = np.array([E4.index(c.label) if c.label in E4 else NOT_A_CLASS for c in clips])
    dims_true = np.array([dimension_targets(c) or (np.nan, np.nan) for c in clips], dtype=np.float32)
    (scores, dims), (far_scores, far_dims) = out["clean"], out["far"]
    return FoldResult(index, tuple(sorted({c.speaker for c in clips})), (), 0, y_true, scores, scores,
                      dims_true=dims_true, int8_dims=dims, float_dims=dims,
                      far={"int8_scores": far_scores, "float_scores": far_scores, "int8_dims": far_dims,
                           "float_dims": far_dims},
                      test_corpora=(corpus,), clip_corpora=(corpus,) * len(clips),
                      clip_labels=tuple(c.label for c in clips))


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """Seven corpora's mini subsets as held-out folds: four of the eight four-emotion corpora (CREMA-D's first
    16 four-emotion clips), EmoSpeech (calm, angry, happy; its fearful is outside emotion4) and CORAA-SER with
    its non-neutral clips labelled ``non-neutral``."""
    if not SHIPPED_MODEL.is_file():
        pytest.skip("needs the shipped model")
    tmp = tmp_path_factory.mktemp("headline")
    crema = [c for c in load_corpus("crema-d", CREMA_D_MINI) if map_label(c, "emotion4")][:16]
    ased = [(p, p.parent.name[2:].lower()) for p in sorted((SHARED / "ased-mini").glob("*/*.wav"))]
    emospeech = [(p, p.name.split("-")[2]) for p in sorted((SHARED / "emospeech-mini").glob("*/*.wav"))
                 if p.name.split("-")[2] in ("calm", "angry", "fearful", "happy")]
    coraa = SHARED / "coraa-ser-mini" / "datasets" / "coraa-ser"
    coraa_rows = [(p, "neutral") for p in sorted((coraa / "neutral").glob("*.wav"))]
    coraa_rows += [(p, NON_NEUTRAL) for p in sorted(coraa.glob("non-neutral-*/*.wav"))]
    corpora = [("tess", load_corpus("tess", TESS_MINI)), ("savee", load_corpus("savee", SAVEE_MINI)),
               ("crema-d", crema), ("ased", _listed(tmp, "ased", ased)),
               ("emospeech", _listed(tmp, "emospeech", emospeech)), ("coraa-ser", _listed(tmp, "coraa-ser", coraa_rows)),
               ("turev-db", load_corpus("turev-db", TUREV_DB_MINI))]
    results = [_fold(k, name, clips, tmp) for k, (name, clips) in enumerate(corpora)]
    return results, loco_metrics(results, E4), (corpora, tmp)


def test_headline_is_the_mean_over_the_four_emotion_corpora_present(held_out):
    results, loco, _ = held_out
    for condition in ("clean", "far"):
        rows = {r["corpus"]: r for r in loco[condition]["int8"]["corpora"]}
        h = loco[condition]["int8"]["headline"]
        assert h["eight_corpora"] == ["crema-d", "tess", "savee", "turev-db", "ased"]  # FOUR_EMOTION_CORPORA order
        e4 = [rows[c]["e4_ua"] for c in h["eight_corpora"]]
        assert h["mean_e4_ua_eight"] == pytest.approx(np.mean(e4))
        assert h["min_e4_ua_eight"] == min(e4) and rows[h["min_e4_ua_corpus"]]["e4_ua"] == min(e4)
        assert h["issue8_corpora"] == ["crema-d", "tess", "savee", "turev-db"]
        assert h["mean_e4_ua_issue8"] == pytest.approx(np.mean([rows[c]["e4_ua"] for c in h["issue8_corpora"]]))
        assert h["issue8_mean_e4_ua"] == ISSUE8_LOCO[condition]["mean"]
        # EmoSpeech: UA over the classes it has, decisions over all four labels
        fold = next(r for r in results if r.test_corpora == ("emospeech",))
        scores = fold.int8_scores if condition == "clean" else fold.far["int8_scores"]
        assert h["emospeech_classes"] == ["neutral", "happy", "angry"]
        assert h["emospeech_ua"] == pytest.approx(balanced_accuracy_score(fold.y_true, scores.argmax(axis=1)))
        assert set(HEADLINE_KEYS) == set(h)
    assert loco["calibration"]["per_corpus"] and 0.05 <= loco["calibration"]["temperature"] <= 20


def test_non_neutral_clips_are_outside_ua_and_in_the_natural_neutral_figures(held_out):
    results, loco, _ = held_out
    fold = next(r for r in results if r.test_corpora == ("coraa-ser",))
    neutral = np.array([label == "neutral" for label in fold.clip_labels])
    assert neutral.sum() == 4 and (fold.y_true[~neutral] == NOT_A_CLASS).all()
    assert np.array(loco["confusion"]["coraa-ser"]["clean"]).sum() == neutral.sum()
    p_neutral = fold.int8_scores[:, E4.index("neutral")]
    recall = float(np.mean(fold.int8_scores[neutral].argmax(axis=1) == E4.index("neutral")))
    row = next(r for r in loco["clean"]["int8"]["corpora"] if r["corpus"] == "coraa-ser")
    assert row["ua"] == pytest.approx(recall) and row["classes"] == ["neutral"]
    h = loco["clean"]["int8"]["headline"]
    assert h["coraa_neutral_recall"] == pytest.approx(recall)
    assert h["coraa_neutral_auc"] == pytest.approx(roc_auc_score(neutral, p_neutral))
    assert h["coraa_clips"] == {"neutral": 4, "non_neutral": 8}
    assert "neutral_auc" not in next(r for r in loco["clean"]["int8"]["corpora"] if r["corpus"] == "tess")
    # its scored clips share one dimension target (neutral: arousal 0, valence 0): CCC would be 0 whatever the
    # model said, so it is undefined there and the means are over the corpora whose targets vary
    assert np.isnan(row["arousal_ccc"]) and np.isnan(row["valence_ccc"])
    others = [r["arousal_ccc"] for r in loco["clean"]["int8"]["corpora"] if r["corpus"] != "coraa-ser"]
    assert all(np.isfinite(others))
    assert loco["clean"]["int8"]["mean"]["arousal_ccc"] == pytest.approx(np.mean(others))
    # the calibration is fitted on the clips with a class only
    known = [(scores[r.y_true != NOT_A_CLASS], r.y_true[r.y_true != NOT_A_CLASS], r.test_corpora[0])
             for r in results for scores in (r.int8_scores, r.far["int8_scores"])]
    assert loco["calibration"]["temperature"] == pytest.approx(calibration_from_parts(known)["temperature"])


def test_fit_summary_and_report_show_the_headline_beside_issue_8(held_out, tmp_path):
    results, loco, _ = held_out
    h, fh = loco["clean"]["int8"]["headline"], loco["far"]["int8"]["headline"]
    text = format_loco_table(loco)
    assert f"emotion4 UA mean {h['mean_e4_ua_eight']:.3f} over 5 four-emotion corpora" in text
    assert f"(issue 8: {ISSUE8_LOCO['clean']['mean']:.3f})" in text and "coraa-ser natural neutral" in text
    save_results(tmp_path, {"name": "m", "labels": list(E4), "label_scheme": "emotion4",
                            "metrics": json.loads(json.dumps({**pooled_metrics(results, E4), "loco": loco},
                                                             default=json_default))})
    report = render(tmp_path).read_text()
    table = report[report.index("### Headline"):report.index("### Every figure")]
    assert f"**{h['mean_e4_ua_eight']:.3f}** | **{fh['mean_e4_ua_eight']:.3f}**" in table
    assert f"| {ISSUE8_LOCO['clean']['mean']:.3f} | {ISSUE8_LOCO['far']['mean']:.3f} |" in table
    assert f"| {h['coraa_neutral_recall']:.3f} | {h['coraa_neutral_auc']:.3f} |" in table
    for corpus in ("tess", "savee", "crema-d", "ased", "emospeech", "coraa-ser", "turev-db"):
        assert f"| {corpus} |" in table
        for condition in ("clean", "far"):
            png = f"confusion_{corpus}_{condition}.png"
            assert (tmp_path / png).stat().st_size > 0 and f"]({png})" in report


def test_report_compares_runs_by_their_headline_mean_and_spread(held_out, tmp_path, capsys, caplog):
    """Two runs of one recipe, here the same held-out folds heard in the stream orders of seeds 0 and 1 (the
    order the adaptation meets the clips in, which a fit's seed sets): ``ser-train report RUN RUN`` gives each
    run's headline and their mean and spread, and refuses a folder that is not a run."""
    results, loco, (corpora, tmp) = held_out
    other = loco_metrics([_fold(k, name, clips, tmp, seed=1) for k, (name, clips) in enumerate(corpora)], E4)
    runs = []
    for seed, figures in ((0, loco), (1, other)):
        runs.append(tmp_path / f"m-seed{seed}")
        runs[-1].mkdir()
        saved = json.loads(json.dumps({"loco": figures}, default=json_default))
        if seed == 1:  # a run older than the headline: it is recomputed from the corpus rows
            for condition in ("clean", "far"):
                del saved["loco"][condition]["int8"]["headline"]
        save_results(runs[-1], {"name": "m", "seed": seed, "labels": list(E4), "label_scheme": "emotion4",
                                "metrics": saved})
    capsys.readouterr()
    assert main(["report", *map(str, runs), "--json"]) == 0
    comparison = json.loads(capsys.readouterr().out)
    assert [r["seed"] for r in comparison["runs"]] == [0, 1]
    for name, condition, key in (("clean_mean_e4_ua_eight", "clean", "mean_e4_ua_eight"),
                                 ("far_mean_e4_ua_issue8", "far", "mean_e4_ua_issue8"),
                                 ("clean_coraa_neutral_auc", "clean", "coraa_neutral_auc")):
        values = [figures[condition]["int8"]["headline"][key] for figures in (loco, other)]
        assert [r["figures"][name] for r in comparison["runs"]] == pytest.approx(values)
        assert comparison["mean"][name] == pytest.approx(np.mean(values))
        assert comparison["spread"][name] == pytest.approx(max(values) - min(values))
    assert comparison["spread"]["clean_mean_e4_ua_eight"] > 0  # the order alone moves the headline
    assert main(["report", *map(str, runs)]) == 0
    table = capsys.readouterr().out
    assert "| m-seed0 | 0 |" in table and "| spread (max - min) |" in table
    assert f"{comparison['mean']['clean_mean_e4_ua_eight']:.3f}" in table.split("**mean**")[1].splitlines()[0]
    assert main(["report", str(runs[0]), str(tmp_path)]) == 2
    assert "expected a run directory with results.json" in capsys.readouterr().err
    # a fit stopped after its folds has cv.json (the folds' figures) and config.json (its seed), no results.json
    stopped = tmp_path / "m-stopped"
    stopped.mkdir()
    (stopped / "cv.json").write_text(json.dumps({"loco": json.loads(json.dumps(other, default=json_default))}))
    (stopped / "config.json").write_text(json.dumps({"train_params": {"seed": 1}}))
    assert main(["report", str(runs[0]), str(stopped), "--json"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert both["runs"][1]["seed"] == 1 and both["runs"][1]["figures"] == comparison["runs"][1]["figures"]
    # the stopped run skipped EmoSpeech's fold: its figure has one value (no spread), the others stay comparable
    saved = json.loads((stopped / "cv.json").read_text())
    for condition in ("clean", "far"):
        for kind in ("int8", "float"):
            block = saved["loco"][condition][kind]
            block["corpora"] = [r for r in block["corpora"] if r["corpus"] != "emospeech"]
            block["headline"] = headline(block["corpora"], condition)
    (stopped / "cv.json").write_text(json.dumps(saved))
    with caplog.at_level(logging.INFO, logger="trainer.seeds"):
        assert main(["report", str(runs[0]), str(stopped), "--json"]) == 0
    partial = json.loads(capsys.readouterr().out)
    assert partial["spread"]["clean_emospeech_ua"] is None and partial["std"]["clean_emospeech_ua"] is None
    assert partial["mean"]["clean_emospeech_ua"] == pytest.approx(comparison["runs"][0]["figures"]["clean_emospeech_ua"])
    assert partial["spread"]["clean_mean_e4_ua_eight"] == pytest.approx(comparison["spread"]["clean_mean_e4_ua_eight"])
    assert "not comparable" not in caplog.text and "held out by some of the runs only: emospeech" in caplog.text
