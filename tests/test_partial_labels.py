"""Labels that say less than one class: CORAA-SER's "non-neutral" (a partial label, trained by the summed
probability of its classes) and corpora without a class (EmoSpeech has no sad; ``--missing-classes``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from paths import CREMA_D_MINI, SHARED_DATA

from trainer.corpora import Clip
from trainer.featurize import ClipFeatures
from trainer.labels import EMOTION4, SCHEMES, allowed_labels, apply_scheme, scheme_labels
from trainer.train import allowed_masks, balanced_weights, class_support, class_weights

CORAA_MINI = SHARED_DATA / "coraa-ser-mini" / "datasets" / "coraa-ser"


def _clip(label: str, corpus: str, name: str = "x", gender: str | None = None) -> Clip:
    return Clip(Path(f"/{corpus}/{name}.wav"), label, f"{corpus}:{name}", corpus, gender=gender)


def _features(clips: list[Clip]) -> list[ClipFeatures]:
    return [ClipFeatures(c, np.zeros((1, 1), np.float32), np.zeros(1, np.float32)) for c in clips]


# ---- what a partial label allows -------------------------------------------------------------------------

@pytest.mark.parametrize(("scheme", "expected"), [
    ("emotion4", ("happy", "sad", "angry")),
    ("emotion6", ("happy", "sad", "angry", "fearful", "disgust")),
    ("valence", ("negative", "positive")),
    ("native", ("happy", "sad", "angry", "fearful", "disgust", "surprised")),  # RAVDESS's: calm is not an emotion shown
    ("gender_emotion", tuple(f"female_{e}" for e in ("happy", "sad", "angry", "fearful", "disgust"))),
])
def test_non_neutral_allows_every_class_but_neutral(scheme, expected):
    labels = scheme_labels(scheme, [_clip("angry", "ravdess")])
    assert allowed_labels(_clip("non-neutral", "coraa-ser", gender="female"), scheme, labels) == expected
    # one class for an ordinary clip, native or already relabelled
    assert allowed_labels(_clip("calm", "ravdess"), "emotion4", EMOTION4) == ("neutral",)
    assert allowed_labels(_clip("fearful", "ravdess"), "emotion4", EMOTION4) is None


def test_apply_scheme_keeps_partial_labels_and_native_labels_ignore_them():
    clips = [_clip("non-neutral", "coraa-ser", "a"), _clip("neutral", "coraa-ser", "b"), _clip("calm", "ravdess")]
    mapped, labels, excluded = apply_scheme(clips, "emotion4")
    assert [c.label for c in mapped] == ["non-neutral", "neutral", "neutral"] and not excluded
    assert scheme_labels("native", clips) == SCHEMES["native"]  # non-neutral is not a native class of its own
    _, _, excluded = apply_scheme([_clip("non-neutral", "coraa-ser"), _clip("angry", "ravdess", gender="male")],
                                  "gender_emotion")
    assert excluded == {"coraa-ser:non-neutral": 1}  # without a gender it has no classes there


# ---- the loss --------------------------------------------------------------------------------------------

K = 4
ALLOWED = np.array([[1, 0, 0, 0], [0, 1, 1, 1], [0, 0, 1, 0], [1, 0, 0, 0]], dtype=np.float32)
SUPPORT = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 1, 1]], dtype=np.float32)
"""Four windows: a one-hot clip; a non-neutral clip; a clip of a corpus without class 3; a clip of a
corpus without class 1."""


def _logits() -> np.ndarray:
    return np.random.default_rng(7).normal(size=(len(ALLOWED), K)).astype(np.float32) * 2


def _by_definition(p: np.ndarray, allowed: np.ndarray, support: np.ndarray, smoothing: float) -> np.ndarray:
    """``(1 - e) (-log(sum_A p / sum_S p)) + e mean_{c in S} (-log(p_c / sum_S p))``, one window at a time."""
    out = []
    for row, a, s in zip(p.astype(np.float64), allowed.astype(bool), support.astype(bool), strict=True):
        in_support = row[s].sum()
        partial = -np.log(row[a].sum() / in_support)
        uniform = np.mean([-np.log(row[c] / in_support) for c in np.flatnonzero(s)])
        out.append((1 - smoothing) * partial + smoothing * uniform)
    return np.array(out)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probabilities"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_partial_label_loss_is_its_definition(from_logits, smoothing):
    from trainer.net import pack_label_targets, partial_label_loss_class

    z = _logits()
    p = _softmax(z)
    loss = partial_label_loss_class()(K, smoothing, from_logits=from_logits)
    got = np.asarray(loss.call(pack_label_targets(ALLOWED, SUPPORT), z if from_logits else p))
    np.testing.assert_allclose(got, _by_definition(p, ALLOWED, SUPPORT, smoothing), rtol=1e-5, atol=1e-6)
    # mixup: window i mixed with window perm[i] by lam[i] has the mixed losses
    lam, perm = np.array([0.3, 1.0, 0.5, 0.9], np.float32), np.array([1, 0, 3, 2])
    mixed = np.asarray(loss.call(pack_label_targets(ALLOWED, SUPPORT, lam, perm), z if from_logits else p))
    alone = _by_definition(p, ALLOWED, SUPPORT, smoothing)
    other = _by_definition(p, ALLOWED[perm], SUPPORT[perm], smoothing)
    np.testing.assert_allclose(mixed, lam * alone + (1 - lam) * other, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_one_hot_labels_over_all_classes_give_keras_crossentropy(smoothing):
    import keras

    from trainer.net import pack_label_targets, partial_label_loss_class

    z = _logits()
    one_hot = np.eye(K, dtype=np.float32)[[0, 2, 1, 3]]
    ours = partial_label_loss_class()(K, smoothing)(pack_label_targets(one_hot, np.ones_like(one_hot)), z)
    theirs = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)(one_hot, z)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)


def test_restrict_gives_a_missing_class_no_gradient():
    """A clip of a corpus without class 3 (window 2): with its support (restrict) the loss does not depend on
    class 3's logit at all; over all classes (ignore) it pushes that logit down."""
    import tensorflow as tf

    from trainer.net import pack_label_targets, partial_label_loss_class

    def gradient(support, smoothing):
        z = tf.Variable(_logits())
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(partial_label_loss_class()(K, smoothing).call(pack_label_targets(ALLOWED, support), z))
        return tape.gradient(value, z).numpy()

    for smoothing in (0.0, 0.1):
        restricted = gradient(SUPPORT, smoothing)
        assert restricted[2, 3] == 0.0 and restricted[3, 1] == 0.0  # exactly: no path to the missing class
        assert np.all(restricted[2, :3] != 0) and np.all(restricted[3, [0, 2, 3]] != 0)
    ignored = gradient(np.ones_like(SUPPORT), 0.0)
    assert ignored[2, 3] > 0 and ignored[3, 1] > 0  # "not this class" for a class the corpus lacks


def test_masked_mse_leaves_unknown_targets_out():
    from trainer.net import masked_mse, pack_dimension_targets

    dims = np.array([[0.5, -0.2], [np.nan, np.nan], [0.1, np.nan]], np.float32)
    pred = np.array([[0.0, 0.0], [0.9, -0.9], [0.4, 0.3]], np.float32)
    got = np.asarray(masked_mse(pack_dimension_targets(dims), pred))
    expected = [np.mean((dims[0] - pred[0]) ** 2), 0.0, (dims[2, 0] - pred[2, 0]) ** 2]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


# ---- support and balance ---------------------------------------------------------------------------------

def _three_corpora() -> list[ClipFeatures]:
    """"acted" with all four classes (8 clips each), "emospeech" without sad, "coraa-ser" neutral or non-neutral."""
    clips = [_clip(e, "acted", f"{e}{i}") for e in EMOTION4 for i in range(8)]
    clips += [_clip(e, "emospeech", f"{e}{i}") for e in ("neutral", "happy", "angry") for i in range(5 if e == "angry" else 3)]
    clips += [_clip("neutral", "coraa-ser", f"n{i}") for i in range(6)] + [_clip("non-neutral", "coraa-ser", f"x{i}") for i in range(18)]
    return _features(clips)


def test_class_support_is_what_each_corpus_has():
    feats = _three_corpora()
    allowed = allowed_masks(feats, EMOTION4, "emotion4")
    support = class_support(feats, allowed, "restrict")
    by_corpus = {c.clip.corpus: tuple(row) for c, row in zip(feats, support, strict=True)}
    assert by_corpus == {"acted": (1, 1, 1, 1), "emospeech": (1, 1, 0, 1), "coraa-ser": (1, 1, 1, 1)}
    assert np.all(class_support(feats, allowed, "ignore") == 1)
    non_neutral = [i for i, c in enumerate(feats) if c.clip.label == "non-neutral"]
    assert np.all(allowed[non_neutral] == [0, 1, 1, 1])
    with pytest.raises(ValueError, match="missing_classes"):
        class_support(feats, allowed, "drop")


def test_balance_splits_each_corpus_over_the_labels_it_has():
    """A missing class takes no share of its corpus (EmoSpeech: a third each to neutral, happy, angry); a partial
    label is one label of its corpus (CORAA-SER: half neutral, half non-neutral); corpora still go by the
    square root of their clips."""
    feats = _three_corpora()
    w = balanced_weights(feats, EMOTION4)
    corpora = np.array([c.clip.corpus for c in feats])
    labels = np.array([c.clip.label for c in feats])
    sizes = {k: int((corpora == k).sum()) for k in ("acted", "emospeech", "coraa-ser")}
    total = sum(np.sqrt(n) for n in sizes.values())
    for corpus, n in sizes.items():
        mine = corpora == corpus
        assert w[mine].sum() == pytest.approx(np.sqrt(n) / total)
        present = sorted(set(labels[mine]))
        for label in present:
            assert w[mine & (labels == label)].sum() == pytest.approx(np.sqrt(n) / total / len(present))
    # without sampling, class weights count a non-neutral clip a third towards each of its classes
    allowed = allowed_masks(feats, EMOTION4, "emotion4")
    fractions = allowed / allowed.sum(axis=1, keepdims=True)
    weights = class_weights(allowed, len(EMOTION4))
    for k in range(len(EMOTION4)):
        assert weights[k] == pytest.approx(len(feats) / (len(EMOTION4) * fractions[:, k].sum()))


# ---- a tiny fit with partial labels, through the folds and the held-out figures ----------------------------

@pytest.mark.slow
@pytest.mark.skipif(not CORAA_MINI.is_dir(), reason=f"no test corpus at {CORAA_MINI}")
def test_tiny_loco_fit_with_partial_labels(tmp_path):
    """CREMA-D's mini clips (emotion4) and CORAA-SER's (neutral, and non-neutral built by hand from its real
    files as its loader names them), two leave-one-corpus-out folds and a final model: the partial label
    trains (its loss finite), is scored held out like any clip (``y_true`` -1, left out of UA), and the
    held-out figures and calibration are computed over the clips with one class."""
    from edge.postprocess import DecisionParams
    from trainer.config import FEATURES, FRAMES, TrainParams
    from trainer.crossval import pooled_metrics, run_folds
    from trainer.featurize import featurize
    from trainer.folds import corpus_folds
    from trainer.generalization import loco_metrics
    from trainer.labels import dimension_targets
    from trainer.train import fit_and_convert

    crema = [Clip(p, {"NEU": "neutral", "HAP": "happy", "SAD": "sad", "ANG": "angry"}[p.stem.split("_")[2]],
                  f"crema-d:{p.stem.split('_')[0]}", "crema-d")
             for p in sorted((CREMA_D_MINI / "AudioWAV").glob("*.wav")) if p.stem.split("_")[2] in ("NEU", "HAP", "SAD", "ANG")]
    coraa = [Clip(p, "neutral" if p.parent.name == "neutral" else "non-neutral", f"coraa-ser:{p.stem.split('_')[0]}",
                  "coraa-ser") for p in sorted(CORAA_MINI.glob("*/*.wav"))]
    assert sum(c.label == "non-neutral" for c in coraa) >= 4
    clips, labels, _ = apply_scheme(crema[:24] + coraa, "emotion4")
    dims = {str(c.path): dimension_targets(c) or (float("nan"), float("nan")) for c in clips}
    feats = featurize(clips, FEATURES, cache_dir=tmp_path / "cache", workers=1, progress=False)
    params = TrainParams(epochs=2, width=8, windows_per_epoch=64, far_field_variants=0, speed_factors=(), seed=1)
    folds = corpus_folds(c.clip.speaker for c in feats)
    results = run_folds(folds, feats, labels, FEATURES, FRAMES, params, DecisionParams(), progress=False, jobs=1,
                        cache_dir=tmp_path / "cache", dims=dims, scheme="emotion4")
    coraa_fold = next(r for r in results if r.test_corpora == ("coraa-ser",))
    partial = np.array([label == "non-neutral" for label in coraa_fold.test_labels])
    assert partial.sum() == sum(c.label == "non-neutral" for c in coraa)
    assert np.all(coraa_fold.y_true[partial] == -1) and np.all(coraa_fold.y_true[~partial] == 0)
    assert coraa_fold.int8_scores.shape == (len(coraa), len(labels))  # every clip scored, for neutral-vs-not figures
    assert coraa_fold.row(labels)["clips"] == int((~partial).sum())
    assert all(np.isfinite(r["loss"]) for result in results for r in result.history)
    metrics = loco_metrics(results, labels)
    assert {row["corpus"]: row["clips"] for row in metrics["clean"]["int8"]["corpora"]} == {
        "crema-d": 24, "coraa-ser": int((~partial).sum())}
    assert np.isfinite(metrics["calibration"]["temperature"])
    assert pooled_metrics(results, labels)["int8"]["ua"] >= 0
    history: list[dict] = []
    fit_and_convert(feats, [], labels, FEATURES, FRAMES, params, False, "final", history, dims, "emotion4")
    assert len(history) == 2 and all(np.isfinite(r["loss"]) for r in history)
