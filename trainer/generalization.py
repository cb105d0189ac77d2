"""Figures that predict the device on voices, languages and rooms it never heard.

Leave-one-corpus-out (LOCO): each corpus is scored whole by a model trained on all the others, clean
and in the far-field condition (:data:`trainer.crossval.FAR_FIELD_EVAL`), int8 through the edge runtime
and float, on the shipped labels and on ``emotion4`` (for models with more labels, argmax over those
four). Arousal: Lin's CCC against the circumplex targets (:func:`trainer.labels.dimension_targets`);
valence: ROC AUC of positive against negative utterances. Calibration: one temperature fitted on
the held-out corpora, each weighing the same (the shipped one); its ECE is reported cross-fitted
(each corpus scored with a temperature fitted on the other held-out corpora), beside the
uncalibrated ECE.

The headline (:func:`headline`, issue 17) is the mean ``emotion4`` UA over the eight corpora that have
all four emotions (:data:`FOUR_EMOTION_CORPORA`, those of them in the run), with the mean over issue 8's
five (:data:`ISSUE8_CORPORA`) so the issues compare (:data:`ISSUE8_LOCO`), and the lowest corpus;
EmoSpeech (no sad) gets UA over its classes present; CORAA-SER (natural speech, ``neutral`` and the
partial label ``non-neutral``) gets the natural-neutral figures (:func:`trainer.metrics.natural_neutral`).
Its keys are :data:`HEADLINE_KEYS`.
"""

from __future__ import annotations

import numpy as np

from edge.calibration import temperature_scale
from trainer.labels import EMOTION4, NEUTRAL, NON_NEUTRAL
from trainer.metrics import (
    NOT_A_CLASS,
    ccc,
    expected_calibration_error,
    fit_temperature,
    natural_neutral,
    reliability,
    restricted_argmax,
    summarize,
    unsure_threshold,
    valence_auc,
)

CONDITIONS = ("clean", "far")

FOUR_EMOTION_CORPORA = ("ravdess", "crema-d", "tess", "savee", "turev-db", "ased", "nemo", "emovo")
"""Corpus kinds with all four emotions of ``emotion4``: the headline's corpora (issue 17)."""
ISSUE8_CORPORA = FOUR_EMOTION_CORPORA[:5]
"""Issue 8's five acted corpora: their mean compares this run with issue 8's model."""
THREE_CLASS_CORPORA = ("emospeech",)
"""Corpus kinds without sad (EmoSpeech): UA over the classes they have, not in the headline's mean."""
NATURAL_NEUTRAL_CORPORA = ("coraa-ser",)
"""Corpus kinds of natural speech labelled ``neutral`` / ``non-neutral`` (CORAA-SER): natural-neutral figures."""

#: Issue 8's leave-one-corpus-out figures: emotion4 UA per held-out corpus, int8 through the device's
#: path, clean and far-field, rounded to 0.001. Source: the shipped model of issue 8,
#: ``models/emotion4-conv1d.json`` (git commit 09f6bf5 of its training run), ``metrics.loco.clean.int8``
#: and ``metrics.loco.far.int8`` (``e4_ua`` per corpus and ``mean``); the clean mean, 0.494, is the
#: figure issue 17 quotes.
ISSUE8_LOCO = {
    "clean": {"ravdess": 0.539, "crema-d": 0.506, "tess": 0.560, "savee": 0.402, "turev-db": 0.461, "mean": 0.494},
    "far": {"ravdess": 0.500, "crema-d": 0.475, "tess": 0.583, "savee": 0.377, "turev-db": 0.411, "mean": 0.469},
}

HEADLINE_KEYS = {
    "mean_e4_ua_eight": "mean emotion4 UA over the four-emotion corpora present (FOUR_EMOTION_CORPORA)",
    "min_e4_ua_eight": "the lowest emotion4 UA among them",
    "min_e4_ua_corpus": "the corpus with that lowest UA",
    "eight_corpora": "the four-emotion corpora present (the mean is over these)",
    "mean_e4_ua_issue8": "mean emotion4 UA over issue 8's five corpora present (ISSUE8_CORPORA)",
    "issue8_corpora": "issue 8's corpora present",
    "issue8_mean_e4_ua": "issue 8's own figure over its five (ISSUE8_LOCO), for comparison",
    "emospeech_ua": "EmoSpeech: UA over the emotion4 classes it has (no sad; mean recall, decisions over all four)",
    "emospeech_classes": "those classes",
    "coraa_neutral_recall": "CORAA-SER: share of its neutral clips decided neutral",
    "coraa_neutral_auc": "CORAA-SER: ROC AUC of P(neutral) for neutral against non-neutral clips",
    "coraa_clips": "CORAA-SER: {neutral, non_neutral} clip counts",
}
"""The headline's keys (:func:`headline`) and what each figure is; a figure is None (JSON null) when its
corpora are not in the run."""


def _scores(result, condition: str, kind: str):
    if condition == "clean":
        return getattr(result, f"{kind}_scores"), getattr(result, f"{kind}_dims")
    return result.far[f"{kind}_scores"], result.far[f"{kind}_dims"]


def corpus_row(result, labels: tuple[str, ...], condition: str, kind: str) -> dict:
    """UA/WA/macro-F1 on the shipped labels and on emotion4, arousal CCC and valence AUC of one fold."""
    scores, dims = _scores(result, condition, kind)
    scored = result.y_true != NOT_A_CLASS  # clips with one class (a partial label has NOT_A_CLASS)
    row = {"corpus": ",".join(result.test_corpora), "clips": int(scored.sum())}
    shipped = summarize(result.y_true[scored], scores[scored].argmax(axis=1), labels)
    row.update(ua=shipped["ua"], wa=shipped["wa"], macro_f1=shipped["macro_f1"],
               classes=[labels[k] for k in sorted(set(result.y_true[scored].tolist()))])
    four = [labels.index(label) for label in EMOTION4 if label in labels]
    if len(four) == len(EMOTION4):
        keep = np.isin(result.y_true, four)
        y4 = np.array([four.index(y) for y in result.y_true[keep]])
        e4 = summarize(y4, restricted_argmax(scores[keep], four), EMOTION4)
        row.update(e4_ua=e4["ua"], e4_wa=e4["wa"], e4_macro_f1=e4["macro_f1"])
    if dims is not None and result.dims_true is not None:
        row["arousal_ccc"] = ccc(result.dims_true[:, 0], dims[:, 0])
        row["valence_ccc"] = ccc(result.dims_true[:, 1], dims[:, 1])
        row["valence_auc"] = valence_auc(result.dims_true[:, 1], dims[:, 1])
    clip_labels = clip_labels_of(result, labels)
    if NEUTRAL in labels and (NON_NEUTRAL in clip_labels or row["corpus"] in NATURAL_NEUTRAL_CORPORA):
        natural = natural_neutral(clip_labels, scores, labels)
        row.update(neutral_recall=natural["neutral_recall"], neutral_auc=natural["neutral_auc"],
                   neutral_clips=natural["neutral_clips"], non_neutral_clips=natural["non_neutral_clips"])
    return row


def clip_labels_of(result, labels: tuple[str, ...]) -> list[str]:
    """The label string of each test clip of a fold (its ``clip_labels``; for results without them, from
    ``y_true``)."""
    if result.clip_labels:
        return list(result.clip_labels)
    return [labels[k] if k != NOT_A_CLASS else NON_NEUTRAL for k in result.y_true.tolist()]


def headline(rows: list[dict], condition: str = "clean") -> dict:
    """The headline figures (:data:`HEADLINE_KEYS`) from one condition's LOCO rows (:func:`corpus_row`: each
    with ``corpus``, ``e4_ua`` or ``ua``, ``classes``, and for natural speech ``neutral_recall``/``neutral_auc``);
    ``condition`` (``clean`` or ``far``) picks issue 8's figure to compare with."""
    by = {r["corpus"]: r for r in rows}

    def e4(corpus: str) -> float:
        return by[corpus].get("e4_ua", by[corpus]["ua"])

    eight = [c for c in FOUR_EMOTION_CORPORA if c in by]
    five = [c for c in ISSUE8_CORPORA if c in by]
    lowest = min(eight, key=e4) if eight else None
    out = {"mean_e4_ua_eight": float(np.mean([e4(c) for c in eight])) if eight else None,
           "min_e4_ua_eight": e4(lowest) if lowest else None, "min_e4_ua_corpus": lowest, "eight_corpora": eight,
           "mean_e4_ua_issue8": float(np.mean([e4(c) for c in five])) if five else None, "issue8_corpora": five,
           "issue8_mean_e4_ua": ISSUE8_LOCO[condition]["mean"],
           "emospeech_ua": None, "emospeech_classes": [],
           "coraa_neutral_recall": None, "coraa_neutral_auc": None, "coraa_clips": None}
    for corpus in THREE_CLASS_CORPORA:
        if corpus in by:
            out.update(emospeech_ua=e4(corpus), emospeech_classes=by[corpus].get("classes", []))
    for corpus in NATURAL_NEUTRAL_CORPORA:
        if corpus in by and "neutral_auc" in by[corpus]:
            r = by[corpus]
            out.update(coraa_neutral_recall=r["neutral_recall"], coraa_neutral_auc=r["neutral_auc"],
                       coraa_clips={"neutral": r["neutral_clips"], "non_neutral": r["non_neutral_clips"]})
    return out


def _mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if key in r and np.isfinite(r[key])]
    return float(np.mean(values)) if values else float("nan")


def loco_metrics(results: list, labels: tuple[str, ...]) -> dict:
    """The whole LOCO picture: ``{"clean"|"far": {"int8"|"float": {"corpora": [rows], "mean": {...},
    "headline": {...}}}}`` (the headline: :func:`headline`),
    ``"calibration"`` (temperature, unsure threshold, ECE before/after, reliability bins) and
    ``"confusion"`` per corpus (int8, clean and far)."""
    out: dict = {}
    keys = ("ua", "wa", "macro_f1", "e4_ua", "e4_wa", "e4_macro_f1", "arousal_ccc", "valence_ccc", "valence_auc")
    for condition in CONDITIONS:
        if condition == "far" and any(r.far is None for r in results):
            continue
        out[condition] = {}
        for kind in ("int8", "float"):
            rows = [corpus_row(r, labels, condition, kind) for r in results]
            out[condition][kind] = {"corpora": rows, "mean": {k: _mean(rows, k) for k in keys},
                                    "headline": headline(rows, condition)}
        # pooled dimensions over all held-out clips
        scores_dims = [_scores(r, condition, "int8")[1] for r in results]
        if all(d is not None for d in scores_dims) and all(r.dims_true is not None for r in results):
            true = np.concatenate([r.dims_true for r in results])
            pred = np.concatenate(scores_dims)
            out[condition]["int8"]["pooled"] = {"arousal_ccc": ccc(true[:, 0], pred[:, 0]),
                                                "valence_ccc": ccc(true[:, 1], pred[:, 1]),
                                                "valence_auc": valence_auc(true[:, 1], pred[:, 1])}
    out["confusion"] = {}
    for r in results:
        name = ",".join(r.test_corpora)
        out["confusion"][name] = {c: summarize(r.y_true[r.y_true >= 0], _scores(r, c, "int8")[0][r.y_true >= 0].argmax(axis=1),
                                               labels)["confusion"]
                                  for c in CONDITIONS if c == "clean" or r.far is not None}
    out["calibration"] = calibration(results)
    return out


CALIBRATION_RULE = ("one temperature minimising the NLL averaged within each held-out corpus (clean and far-field), "
                    "then over the corpora; the unsure threshold where the isotonic regression of correctness on "
                    "calibrated confidence, each corpus weighing the same, reaches one half")
"""The calibration rule, in words (the manifest's ``training.calibration_rule``)."""


def calibration(results: list) -> dict:
    """:func:`calibration_from_parts` of the folds' held-out int8 scores, clean and far-field."""
    parts = []
    for r in results:
        parts.append((r.int8_scores, r.y_true, ",".join(r.test_corpora)))
        if r.far is not None:
            parts.append((r.far["int8_scores"], r.y_true, ",".join(r.test_corpora)))
    return calibration_from_parts(parts)


def calibration_from_parts(parts: list[tuple[np.ndarray, np.ndarray, str]]) -> dict:
    """Temperature scaling fitted on the held-out corpora, each corpus weighing the same
    (:func:`trainer.metrics.fit_temperature` with ``groups``), the unsure threshold derived from the
    calibrated decisions the same way, and ECE before and after (after = cross-fitted per held-out
    corpus, and pooled in-sample). ``parts``: ``(probabilities (n, k), y_true (n,), corpus)``, a corpus
    may have several parts (clean and far-field). Clips with ``y_true`` :data:`NOT_A_CLASS` (a partial
    label, no single class) are left out."""
    parts = [(p[y != NOT_A_CLASS], y[y != NOT_A_CLASS], c) for p, y, c in parts]
    parts = [part for part in parts if len(part[1])]
    probabilities = np.concatenate([p for p, _, _ in parts])
    y_true = np.concatenate([y for _, y, _ in parts])
    corpora = np.concatenate([[c] * len(y) for _, y, c in parts])
    temperature = fit_temperature(probabilities, y_true, corpora)
    calibrated = temperature_scale(probabilities, temperature)
    per_corpus = []
    for name in sorted(set(corpora)):
        mine = corpora == name
        t_other = fit_temperature(probabilities[~mine], y_true[~mine], corpora[~mine]) if (~mine).any() else temperature
        per_corpus.append({"corpus": name, "temperature_from_others": t_other,
                           "ece_before": expected_calibration_error(probabilities[mine], y_true[mine]),
                           "ece_after": expected_calibration_error(temperature_scale(probabilities[mine], t_other),
                                                                   y_true[mine])})
    threshold = unsure_threshold(calibrated, y_true, corpora)
    confidence = calibrated.max(axis=1)
    correct = calibrated.argmax(axis=1) == y_true
    sure = confidence >= threshold
    return {
        "temperature": temperature,
        "unsure_below": threshold,
        "ece_before": expected_calibration_error(probabilities, y_true),
        "ece_after_in_sample": expected_calibration_error(calibrated, y_true),
        "ece_after_cross_fitted_mean": float(np.mean([p["ece_after"] for p in per_corpus])),
        "ece_before_mean": float(np.mean([p["ece_before"] for p in per_corpus])),
        "per_corpus": per_corpus,
        "reliability_before": reliability(probabilities, y_true),
        "reliability_after": reliability(calibrated, y_true),
        "unsure_share": float(1 - sure.mean()),
        "accuracy_sure": float(correct[sure].mean()) if sure.any() else float("nan"),
        "accuracy_unsure": float(correct[~sure].mean()) if (~sure).any() else float("nan"),
    }


def format_loco_table(metrics: dict) -> str:
    """The LOCO table as plain text (held-out corpus, clean and far-field, int8 and float)."""
    lines = ["held-out corpus    clips   int8 UA  e4 UA  far UA  far e4  float UA  float far  arousal CCC  val AUC"]
    clean, far = metrics["clean"], metrics.get("far")
    for k, row in enumerate(clean["int8"]["corpora"]):
        frow = far["int8"]["corpora"][k] if far else {}
        fl = clean["float"]["corpora"][k]
        flf = far["float"]["corpora"][k] if far else {}
        lines.append(f"{row['corpus']:<17} {row['clips']:>6} {row['ua']:>8.3f} {row.get('e4_ua', np.nan):>6.3f} "
                     f"{frow.get('ua', np.nan):>7.3f} {frow.get('e4_ua', np.nan):>7.3f} {fl['ua']:>9.3f} "
                     f"{flf.get('ua', np.nan):>10.3f} {row.get('arousal_ccc', np.nan):>12.3f} "
                     f"{row.get('valence_auc', np.nan):>8.3f}")
    m, fm = clean["int8"]["mean"], (far["int8"]["mean"] if far else {})
    lines.append(f"{'mean':<17} {'':>6} {m['ua']:>8.3f} {m['e4_ua']:>6.3f} {fm.get('ua', np.nan):>7.3f} "
                 f"{fm.get('e4_ua', np.nan):>7.3f} {clean['float']['mean']['ua']:>9.3f} "
                 f"{(far['float']['mean']['ua'] if far else np.nan):>10.3f} {m['arousal_ccc']:>12.3f} "
                 f"{m['valence_auc']:>8.3f}")
    lines += format_headline(metrics)
    cal = metrics["calibration"]
    lines.append(f"calibration: temperature {cal['temperature']:.2f}, ECE {cal['ece_before_mean']:.3f} -> "
                 f"{cal['ece_after_cross_fitted_mean']:.3f} (mean over held-out corpora, cross-fitted); "
                 f"unsure below {cal['unsure_below']:.3f} ({cal['unsure_share']:.0%} of decisions)")
    return "\n".join(lines)


def _figure(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"


def format_headline(loco: dict) -> list[str]:
    """The headline (int8, clean and far-field) as plain-text lines, beside issue 8's figures."""
    lines = []
    for condition in CONDITIONS:
        if condition not in loco:
            continue
        h = loco[condition]["int8"]["headline"]
        name = "clean" if condition == "clean" else "far-field"
        lines.append(f"headline ({name}, int8): emotion4 UA mean {_figure(h['mean_e4_ua_eight'])} over "
                     f"{len(h['eight_corpora'])} four-emotion corpora (min {_figure(h['min_e4_ua_eight'])}, "
                     f"{h['min_e4_ua_corpus'] or '-'}); issue 8's five {_figure(h['mean_e4_ua_issue8'])} "
                     f"(issue 8: {h['issue8_mean_e4_ua']:.3f})")
        if h["emospeech_ua"] is not None:
            lines.append(f"  emospeech UA over {','.join(h['emospeech_classes'])}: {_figure(h['emospeech_ua'])}")
        if h["coraa_neutral_auc"] is not None or h["coraa_neutral_recall"] is not None:
            lines.append(f"  coraa-ser natural neutral: recall {_figure(h['coraa_neutral_recall'])}, "
                         f"ROC AUC of P(neutral) {_figure(h['coraa_neutral_auc'])}")
    return lines
