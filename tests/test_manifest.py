"""The model + manifest contract: every mismatch is refused with one line naming both values."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from paths import RAVDESS_48K, SHIPPED_MODEL

from edge.manifest import ManifestError, load_manifest, sha256_file
from edge.model import ModelError, load_model


@pytest.fixture
def model_copy(tmp_path):
    """The shipped model and manifest copied to tmp_path as m.tflite / m.json."""
    tflite = tmp_path / "m.tflite"
    shutil.copy(SHIPPED_MODEL, tflite)
    manifest = json.loads(SHIPPED_MODEL.with_suffix(".json").read_text())
    manifest["model_file"] = "m.tflite"
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    return tflite


def _edit(tflite, change):
    path = tflite.with_suffix(".json")
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_shipped_model_loads_with_its_manifest():
    model = load_model(SHIPPED_MODEL)
    manifest = model.manifest
    assert manifest.sha256 == sha256_file(SHIPPED_MODEL)
    assert len(manifest.labels) == len(set(manifest.labels)) >= 2
    assert manifest.input.coefficients == manifest.features.n_features
    window = np.zeros((manifest.input.frames, manifest.input.coefficients), np.float32) + np.asarray(
        manifest.features.mean, np.float32)
    probabilities = model.predict(window)
    assert probabilities.shape == (len(manifest.labels),)
    assert abs(float(probabilities.sum()) - 1) < 0.05
    assert manifest.model_id == f"{manifest.name}@{manifest.sha256[:12]}"


def _toggle_pitch(features: dict) -> None:
    """Turn the manifest's pitch columns on or off, with statistics of the matching length."""
    if features.get("pitch"):
        features.update(pitch=False, mean=features["mean"][:-2], std=features["std"][:-2])
    else:
        features.update(pitch=True, mean=features["mean"] + [0.0, 0.0], std=features["std"] + [1.0, 1.0])


@pytest.mark.parametrize("change, error, message", [
    (lambda d: d.update(sha256="0" * 64), ModelError, "sha256 mismatch: file has [0-9a-f]+…, manifest m.json expects 0000"),
    (lambda d: d.update(labels=d["labels"][:-1]), ModelError, r"output sizes \[[\d, ]+\] do not match the manifest's \d+ labels"),
    (lambda d: d["input"].update(frames=d["input"]["frames"] + 10, window_s=d["input"]["window_s"] + 0.1),
     ModelError, r"input shape \[1, \d+, \d+\] does not match the manifest's \[1, \d+, \d+\]"),
    (lambda d: d["input"].update(coefficients=13), ManifestError, r"input.coefficients 13 != 4[02] \(features.n_mfcc"),
    (lambda d: _toggle_pitch(d["features"]), ManifestError, r"input.coefficients (40 != 42 \(features.n_mfcc \+ 2 pitch|42 != 40)"),
    (lambda d: d["input"].update(window_s=9.0), ManifestError, "manifest says window_s 9.0"),
    (lambda d: d.update(schema=99), ManifestError, "unknown manifest schema: expected 1, got 99"),
    (lambda d: d.update(model_file="other.tflite"), ManifestError, "manifest for another model: model_file 'other.tflite', expected 'm.tflite'"),
    (lambda d: d.pop("labels"), ManifestError, "missing field"),
    (lambda d: d["features"].update(n_melz=40), ManifestError, "unknown feature parameter"),
    (lambda d: d["features"].update(mean=[]), ManifestError, "mean/std"),
])
def test_mismatches_are_refused(model_copy, change, error, message):
    _edit(model_copy, change)
    with pytest.raises(error, match=message) as info:
        load_model(model_copy)
    assert "\n" not in str(info.value)


def test_missing_manifest_and_model(tmp_path, model_copy):
    with pytest.raises(ManifestError, match="model manifest not found"):
        load_model(tmp_path / "nothing.tflite")
    model_copy.unlink()
    with pytest.raises(ModelError, match="model file not found"):
        load_model(model_copy)


def test_manifest_that_is_not_json(model_copy):
    model_copy.with_suffix(".json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(model_copy)


@pytest.mark.parametrize("corrupt", [
    lambda data: data[: len(data) // 2],  # truncated
    lambda data: bytes(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8)),  # garbage
    lambda data: b"",  # empty
])
def test_corrupt_tflite_with_matching_sha_is_refused(model_copy, corrupt):
    model_copy.write_bytes(corrupt(model_copy.read_bytes()))
    _edit(model_copy, lambda d: d.update(sha256=sha256_file(model_copy)))
    with pytest.raises(ModelError, match="not a loadable TFLite model") as info:
        load_model(model_copy)
    assert "\n" not in str(info.value)


def test_cli_reports_a_bad_model_in_one_line(model_copy):
    _edit(model_copy, lambda d: d.update(sha256="f" * 64))
    clip = sorted(RAVDESS_48K.glob("*.wav"))[0]
    result = subprocess.run([sys.executable, "-m", "edge.cli", "replay", str(clip), "--sink", "stdout",
                             "--model", str(model_copy)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "sha256 mismatch" in result.stderr and "Traceback" not in result.stderr


def test_the_shipped_model_states_its_training_corpora_licences_and_use():
    """The model card in the manifest: every training corpus with its licence, and the use it inherits."""
    manifest = load_manifest(SHIPPED_MODEL)
    corpora = manifest.training["corpora"]
    assert {c["kind"] for c in corpora} == {"ravdess", "crema-d", "tess", "savee", "turev-db"}
    for corpus in corpora:
        assert {"kind", "name", "language", "licence", "use"} <= set(corpus), corpus
        assert corpus["licence"] and corpus["use"] and corpus["language"]
    summary = manifest.use_summary()
    assert "\n" not in summary
    assert summary.startswith(manifest.training["use"])
    for corpus in corpora:
        assert f"{corpus['name']} {corpus['licence']}" in summary
    # the fields are provenance: the sha256 covers the .tflite alone, so adding them kept the model loadable
    assert manifest.sha256 == sha256_file(SHIPPED_MODEL)


@pytest.mark.parametrize("change", [
    lambda t: (t.pop("use"), [c.pop("licence") for c in t["corpora"]]),
    lambda t: t.clear(),
    lambda t: t.update(corpora=["ravdess", 3], use=""),
], ids=["no-use-no-licences", "no-training", "malformed"])
def test_a_manifest_without_a_model_card_says_the_licence_is_not_stated(model_copy, change):
    _edit(model_copy, lambda d: change(d["training"]))
    assert load_manifest(model_copy).use_summary() == "licence: not stated in the manifest"


def test_a_corpus_without_a_licence_is_named_as_such(model_copy):
    def drop_savee_licence(data):
        next(c for c in data["training"]["corpora"] if c["kind"] == "savee").pop("licence")
    _edit(model_copy, drop_savee_licence)
    summary = load_manifest(model_copy).use_summary()
    assert "SAVEE licence not stated" in summary and "RAVDESS CC BY-NC-SA 4.0" in summary


@pytest.mark.parametrize("licences", [False, True], ids=["without-licences", "with-licences"])
def test_manifest_with_or_without_the_training_corpora_licences(model_copy, licences):
    """Manifests written before ``training.corpora`` carried each corpus's licence (``{"name": kind,
    "clips", "speakers"}``, no ``training.use``) load as well as those with it; both keep the block as
    written, and ``evaluate`` finds the trained corpora by kind in either."""
    pytest.importorskip("sklearn", reason="ser-train evaluate needs the train extra (a device install has none)")
    from trainer.corpora import Clip
    from trainer.corpora.licences import corpus_record, most_restrictive_use
    from trainer.recipes.evaluate import seen_in_training

    kinds = ("ravdess", "crema-d", "emovo")
    if licences:
        corpora = [{**corpus_record(kind), "clips": 10, "speakers": 2} for kind in kinds]
        training = {"corpora": corpora, "use": most_restrictive_use(kinds)}
    else:
        training = {"corpora": [{"name": kind, "clips": 10, "speakers": 2} for kind in kinds]}
    _edit(model_copy, lambda d: d.update(training=training))
    manifest = load_model(model_copy).manifest
    assert manifest.training == training
    assert json.loads(json.dumps(manifest.to_dict()))["training"] == training
    clips = [Clip(path=None, label="sad", speaker="emovo:f1", corpus="emovo"),
             Clip(path=None, label="sad", speaker="nemo:EB0", corpus="nemo")]
    assert [line.split(":")[0] for line in seen_in_training(clips, manifest.training)] == ["emovo"]
    if licences:
        assert manifest.training["use"] == "non-commercial research use only"  # EMOVO's, the most restrictive
