"""The run report: ``runs/NAME-<UTC>/report.md`` and its PNGs, regenerated from ``results.json``.

``ser-train fit`` saves everything the report needs in the run directory's ``results.json`` (fold
table, pooled int8/float metrics, per-fold training history, the MLP baseline, one example clip)
and renders it; ``ser-train report RUN_DIR`` renders it again. Plots use matplotlib's Agg backend.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

RESULTS = "results.json"
CV = "cv.json"
"""The held-out figures, written by ``fit`` as soon as its folds are scored (``RESULTS`` comes after the final model)."""
REPORT = "report.md"

#: Published speaker-independent RAVDESS figures (8 classes, UA), frozen self-supervised features
#: with a probe: EmoBox (Ma et al., Interspeech 2024, arXiv:2406.07162), its RAVDESS folds.
LITERATURE = (
    ("wav2vec2-base (frozen, probe)", 0.543, "EmoBox, Ma et al. 2024, arXiv:2406.07162"),
    ("HuBERT-base (frozen, probe)", 0.654, "EmoBox, Ma et al. 2024, arXiv:2406.07162"),
    ("WavLM-Large (frozen, probe)", 0.720, "EmoBox, Ma et al. 2024, arXiv:2406.07162"),
)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def example_clip(clips) -> dict | None:
    """The first clip of the first test fold's first corpus (deterministic), as a JSON-able dict."""
    return None if not clips else {"path": str(clips[0].path), "label": clips[0].label, "speaker": clips[0].speaker,
                                   "corpus": clips[0].corpus}


def save_results(run_dir: Path, results: dict) -> Path:
    path = Path(run_dir) / RESULTS
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def _has_validation(results: dict) -> bool:
    """Whether any fold recorded a validation UA (none without validation speakers)."""
    return any("val_ua" in r for records in (results.get("histories") or {}).values() for r in records)


def plot_curves(results: dict, out: Path) -> bool:
    histories = results.get("histories") or {}
    if not any(histories.values()):
        return False
    plt = _plt()
    validated = _has_validation(results)
    fig, axes = plt.subplots(1, 2 if validated else 1, figsize=(10 if validated else 5.5, 3.6), squeeze=False)
    ax_loss = axes[0][0]
    for fold, records in sorted(histories.items(), key=lambda kv: int(kv[0])):
        epochs = [r["epoch"] for r in records]
        ax_loss.plot(epochs, [r["loss"] for r in records], label=f"fold {fold}")
        if validated:
            axes[0][1].plot([r["epoch"] for r in records if "val_ua" in r],
                            [r["val_ua"] for r in records if "val_ua" in r], label=f"fold {fold}")
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="cross-entropy")
    if validated:
        axes[0][1].set(title="validation UA (validation speakers)", xlabel="epoch", ylabel="UA", ylim=(0, 1))
    ax_loss.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def plot_confusion(confusion, labels, out: Path, title: str) -> None:
    plt = _plt()
    matrix = np.asarray(confusion, dtype=float)
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 1.6 + 0.55 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, label="row-normalised recall")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _grouped_bars(ax, series: list[tuple[str, list[float]]]) -> None:
    """One bar per (series, group), the series side by side within each group, 0.8 wide in all."""
    width = 0.8 / len(series)
    for k, (name, values) in enumerate(series):
        ax.bar(np.arange(len(values)) + (k - (len(series) - 1) / 2) * width, values, width, label=name)


def plot_recall(results: dict, out: Path) -> None:
    plt = _plt()
    labels = results["labels"]
    series = [("int8", results["metrics"]["int8"]["recall"]), ("float", results["metrics"]["float"]["recall"])]
    if results.get("baseline_mlp"):
        series.append(("MLP baseline", results["baseline_mlp"]["recall"]))
    fig, ax = plt.subplots(figsize=(1.5 + 0.8 * len(labels), 3.6))
    _grouped_bars(ax, [(name, [recall[x] for x in labels]) for name, recall in series])
    ax.axhline(1 / len(labels), color="grey", lw=0.8, ls="--", label="chance")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set(ylabel="recall (pooled test folds)", ylim=(0, 1), title="per-class recall")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_folds(results: dict, out: Path) -> None:
    plt = _plt()
    rows = results["metrics"]["int8"]["folds"]
    folds = [r["fold"] for r in rows]
    series = [("float", [r["float_ua"] for r in rows]), ("int8", [r["ua"] for r in rows])]
    if results.get("baseline_mlp"):
        by_fold = {r["fold"]: r["ua"] for r in results["baseline_mlp"]["folds"]}
        series.append(("MLP baseline", [by_fold.get(f, np.nan) for f in folds]))
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(folds), 3.4))
    _grouped_bars(ax, series)
    ax.set_xticks(range(len(folds)), [f"fold {f}" for f in folds])
    ax.set(ylabel="UA", ylim=(0, 1), title="test UA per fold: float vs int8")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_example(results: dict, out: Path) -> bool:
    """Waveform and log mel spectrogram (``edge.dsp.features``' filterbank and framing) of the example clip."""
    clip = results.get("example_clip")
    if not clip or not Path(clip["path"]).is_file():
        return False
    from edge.audio.io import load_audio
    from edge.dsp.features import (
        FeatureParams,
        analysis_window,
        dc_removed_frames,
        mel_energies,
        preemphasize,
        stream_start_previous,
    )

    params = FeatureParams.from_dict({k: v for k, v in results["features"].items() if k not in ("mean", "std")})
    samples = load_audio(clip["path"], params.sample_rate_hz)
    n = params.n_frames(samples.size)
    if params.remove_dc_offset:
        frames = dc_removed_frames(samples, params, stream_start_previous(samples, params))
    else:
        emphasized = preemphasize(samples, params.preemphasis)
        frames = np.lib.stride_tricks.sliding_window_view(emphasized, params.frame_length)[::params.hop_length][:n]
    power = (np.abs(np.fft.rfft(frames * analysis_window(params.window, params.frame_length), params.n_fft)) ** 2
             / params.n_fft).astype(np.float32)
    mel = np.log(np.maximum(mel_energies(np.ascontiguousarray(power.T), params), 1e-10))
    plt = _plt()
    fig, (ax_wave, ax_mel) = plt.subplots(2, 1, figsize=(8, 4.6), sharex=True)
    ax_wave.plot(np.arange(samples.size) / params.sample_rate_hz, samples, lw=0.4)
    ax_wave.set(ylabel="amplitude", title=f"{Path(clip['path']).name} ({clip['corpus']}, {clip['label']})")
    ax_mel.imshow(mel, origin="lower", aspect="auto", cmap="magma",
                  extent=(0, params.frame_end_s(max(n - 1, 0)), 0, params.n_mels))
    ax_mel.set(xlabel="time (s)", ylabel=f"mel band (of {params.n_mels})", title="log mel energies (edge.dsp.features)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def _fmt(value) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"


def training_summary(tp: dict) -> str:
    """One line naming the training recipe in ``tp`` (``dataclasses.asdict(TrainParams)`` of the final model)."""
    early = tp.get("early_stopping", True)  # manifests before the fixed schedule stopped early
    source = "the folds' median best epoch" if early else "the folds' schedule"
    parts = [f"final model {tp['epochs']} epochs ({source}), batch {tp['batch_size']}, "
             f"Adam with cosine decay from {tp['learning_rate']:g}, seed {tp['seed']}"]
    if early:
        parts.append(f"folds stop early on validation-speaker UA (patience {tp['patience']})")
    if tp.get("ema_decay"):
        parts.append(f"weight EMA {tp['ema_decay']:g}")
    if tp.get("speed_factors"):
        parts.append("speed perturbation " + "/".join(f"{v:g}" for v in tp["speed_factors"]))
    if tp.get("noise_variants"):
        low, high = tp["noise_snr_db"]
        parts.append(f"{tp['noise_variants']} pink-noise versions per clip at {low:g}-{high:g} dB SNR")
    if tp.get("gain_db"):
        parts.append(f"gain ±{tp['gain_db']:g} dB")
    parts.append(f"SpecAugment masks ({tp['time_masks']}×≤{tp['time_mask_frames']} frames, "
                 f"{tp['coefficient_masks']}×≤{tp['coefficient_mask_width']} coefficients)")
    if tp.get("mixup_alpha"):
        parts.append(f"mixup {tp['mixup_alpha']:g}")
    if tp.get("label_smoothing"):
        parts.append(f"label smoothing {tp['label_smoothing']:g}")
    if tp.get("windows_per_epoch"):
        by = tp.get("corpus_balance", "clips")
        parts.append(f"{tp['windows_per_epoch']} windows per epoch drawn balanced across classes and corpora "
                     f"(corpora by the square root of their {by})")
    else:
        parts.append("class weights")
    return "; ".join(parts)


def plot_reliability(calibration: dict, out: Path) -> None:
    """Reliability diagram (Guo et al. 2017): accuracy against confidence per bin, before and after
    temperature scaling, with the unsure threshold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":", label="perfect calibration")
    for key, name, marker in (("reliability_before", "before", "o"), ("reliability_after", "after", "s")):
        rows = calibration.get(key) or []
        ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker=marker,
                label=f"{name} (T={calibration['temperature']:.2f})" if name == "after" else name)
    ax.axvline(calibration["unsure_below"], color="tab:red", lw=1, ls="--", label="unsure below")
    ax.set(xlabel="confidence (top probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title="reliability, held-out corpora (int8)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_loco(loco: dict, out: Path) -> None:
    """UA per held-out corpus: clean and far-field, int8 and float."""
    plt = _plt()
    corpora = [r["corpus"] for r in loco["clean"]["int8"]["corpora"]]
    series = [("clean, int8", [r["ua"] for r in loco["clean"]["int8"]["corpora"]]),
              ("clean, float", [r["ua"] for r in loco["clean"]["float"]["corpora"]])]
    if loco.get("far"):
        series += [("far-field, int8", [r["ua"] for r in loco["far"]["int8"]["corpora"]]),
                   ("far-field, float", [r["ua"] for r in loco["far"]["float"]["corpora"]])]
    fig, ax = plt.subplots(figsize=(1.5 + 1.3 * len(corpora), 3.6))
    _grouped_bars(ax, series)
    ax.set_xticks(range(len(corpora)), corpora)
    ax.set(ylabel="UA (held-out corpus)", ylim=(0, 1), title="leave-one-corpus-out")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def headline_section(loco: dict) -> list[str]:
    """The headline table (issue 17): per held-out corpus the emotion4 UA, int8, clean and far-field, beside
    issue 8's (:data:`trainer.generalization.ISSUE8_LOCO`), then the headline rows: the mean over the
    four-emotion corpora, their lowest, the mean over issue 8's five; EmoSpeech's UA over its classes and
    CORAA-SER's natural-neutral figures."""
    from trainer.generalization import FOUR_EMOTION_CORPORA, ISSUE8_LOCO

    clean, far = loco["clean"]["int8"], (loco.get("far") or {}).get("int8")
    if "headline" not in clean:  # a run older than the headline
        return []
    far_rows = {r["corpus"]: r for r in (far or {}).get("corpora", [])}
    lines = ["### Headline: emotion4 UA, int8, beside issue 8", "",
             "UA on the four emotions (neutral, happy, sad, angry) of each held-out corpus; EmoSpeech over the "
             "classes it has (no sad). CORAA-SER (natural speech, neutral or non-neutral): *neutral recall* = "
             "share of its neutral clips decided neutral, *neutral AUC* = ROC AUC of P(neutral), neutral against "
             "non-neutral clips. Issue 8's figures: its shipped model (`trainer.generalization.ISSUE8_LOCO`).", "",
             "| held-out corpus | clips | UA clean | UA far-field | issue 8 clean | issue 8 far-field | "
             "neutral recall | neutral AUC |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in clean["corpora"]:
        frow = far_rows.get(row["corpus"], {})
        natural = "neutral_auc" in row  # neutral and non-neutral clips: UA would be neutral recall alone
        ua, far_ua = (None, None) if natural else (row.get("e4_ua", row["ua"]), frow.get("e4_ua", frow.get("ua")))
        lines.append(f"| {row['corpus']} | {row['clips']} | {_fmt(ua)} | {_fmt(far_ua)} | "
                     f"{_fmt(ISSUE8_LOCO['clean'].get(row['corpus']))} | {_fmt(ISSUE8_LOCO['far'].get(row['corpus']))} | "
                     f"{_fmt(row.get('neutral_recall'))} | {_fmt(row.get('neutral_auc'))} |")
    h, fh = clean["headline"], (far or {}).get("headline", {})
    lines += [f"| **mean, {len(h['eight_corpora'])} of the {len(FOUR_EMOTION_CORPORA)} four-emotion corpora** "
              f"(the headline) | | **{_fmt(h['mean_e4_ua_eight'])}** | **{_fmt(fh.get('mean_e4_ua_eight'))}** | | | | |",
              f"| lowest of them (clean {h['min_e4_ua_corpus'] or '–'}, far-field {fh.get('min_e4_ua_corpus') or '–'}) "
              f"| | {_fmt(h['min_e4_ua_eight'])} | {_fmt(fh.get('min_e4_ua_eight'))} | | | | |",
              f"| mean, issue 8's five ({len(h['issue8_corpora'])} present) | | {_fmt(h['mean_e4_ua_issue8'])} | "
              f"{_fmt(fh.get('mean_e4_ua_issue8'))} | {_fmt(ISSUE8_LOCO['clean']['mean'])} | "
              f"{_fmt(ISSUE8_LOCO['far']['mean'])} | | |"]
    if h["emospeech_ua"] is not None:
        lines.append(f"| EmoSpeech, UA over {', '.join(h['emospeech_classes'])} | | {_fmt(h['emospeech_ua'])} | "
                     f"{_fmt(fh.get('emospeech_ua'))} | | | | |")
    if h["coraa_clips"] is not None:
        lines.append(f"| CORAA-SER natural neutral ({h['coraa_clips']['neutral']} neutral, "
                     f"{h['coraa_clips']['non_neutral']} non-neutral clips; far-field in brackets) | | | | | | "
                     f"{_fmt(h['coraa_neutral_recall'])} ({_fmt(fh.get('coraa_neutral_recall'))}) | "
                     f"{_fmt(h['coraa_neutral_auc'])} ({_fmt(fh.get('coraa_neutral_auc'))}) |")
    return lines + [""]


def loco_section(loco: dict, labels, run_dir: Path) -> list[str]:
    """The leave-one-corpus-out section: tables, per-corpus confusion matrices, the reliability plot."""
    lines = ["## Leave-one-corpus-out (the headline)", "",
             "Each corpus is scored whole by a model trained on all the others, through the int8 model and the "
             "daemon's own code path, with **exactly the adaptation the daemon applies**: the corpus's clips are "
             "fed in a fixed random order as one device in one place would hear them, the adaptive normalisation "
             "carried from clip to clip. *Far-field*: every test clip through a simulated room (RT60 0.2-0.9 s, "
             "talker 0.5-4 m) with pink, brown or babble noise at 0-20 dB SNR, from the evaluation split of "
             "`trainer.acoustics` (never used in training). e4 = the four emotions every corpus shares.", ""]
    lines += headline_section(loco)
    lines += ["### Every figure", ""]
    head = "| held-out corpus | clips | UA | WA | macro-F1 | e4 UA | far UA | far e4 UA | float UA | float far UA | arousal CCC | valence CCC | valence AUC |"
    lines += [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    clean, far = loco["clean"], loco.get("far")
    rows = list(zip(clean["int8"]["corpora"], clean["float"]["corpora"],
                    far["int8"]["corpora"] if far else [{}] * len(clean["int8"]["corpora"]),
                    far["float"]["corpora"] if far else [{}] * len(clean["int8"]["corpora"]), strict=True))
    for i8, fl, fi8, ffl in rows:
        lines.append(f"| {i8['corpus']} | {i8['clips']} | {_fmt(i8['ua'])} | {_fmt(i8['wa'])} | {_fmt(i8['macro_f1'])} | "
                     f"{_fmt(i8.get('e4_ua'))} | {_fmt(fi8.get('ua'))} | {_fmt(fi8.get('e4_ua'))} | {_fmt(fl['ua'])} | "
                     f"{_fmt(ffl.get('ua'))} | {_fmt(i8.get('arousal_ccc'))} | {_fmt(i8.get('valence_ccc'))} | "
                     f"{_fmt(i8.get('valence_auc'))} |")
    m, fm = clean["int8"]["mean"], (far["int8"]["mean"] if far else {})
    lines.append(f"| **mean** | | **{_fmt(m['ua'])}** | {_fmt(m['wa'])} | {_fmt(m['macro_f1'])} | {_fmt(m.get('e4_ua'))} | "
                 f"**{_fmt(fm.get('ua'))}** | {_fmt(fm.get('e4_ua'))} | {_fmt(clean['float']['mean']['ua'])} | "
                 f"{_fmt(far['float']['mean']['ua'] if far else None)} | {_fmt(m.get('arousal_ccc'))} | "
                 f"{_fmt(m.get('valence_ccc'))} | {_fmt(m.get('valence_auc'))} |")
    pooled = clean["int8"].get("pooled")
    if pooled:
        lines += ["", f"Pooled over all held-out clips (clean, int8): arousal CCC {_fmt(pooled['arousal_ccc'])}, "
                  f"valence CCC {_fmt(pooled['valence_ccc'])}, valence ROC AUC {_fmt(pooled['valence_auc'])} "
                  "(positive against negative utterances; a published self-supervised valence model reached 0.63 on "
                  "CMU-MOSEI)."]
    cal = loco["calibration"]
    lines += ["", "### Calibration", "",
              f"Temperature **{cal['temperature']:.3f}** fitted on the held-out corpora (clean and far-field, int8), "
              "each corpus weighing the same. ECE (15 bins) before and after, each corpus scored with a temperature "
              "fitted on the others:", "",
              "| held-out | ECE before | ECE after | T from the others |", "|---|---:|---:|---:|"]
    lines += [f"| {p['corpus']} | {_fmt(p['ece_before'])} | {_fmt(p['ece_after'])} | {p['temperature_from_others']:.2f} |"
              for p in cal["per_corpus"]]
    lines += [f"| **mean** | {_fmt(cal['ece_before_mean'])} | {_fmt(cal['ece_after_cross_fitted_mean'])} | |", "",
              f"Decisions below a calibrated confidence of **{cal['unsure_below']:.3f}** are flagged `unsure` (where "
              "the isotonic regression of correctness on confidence, each corpus weighing the same, reaches one half): "
              f"{cal['unsure_share']:.0%} of held-out decisions; accuracy {_fmt(cal['accuracy_sure'])} above, "
              f"{_fmt(cal['accuracy_unsure'])} below.", ""]
    plot_reliability(cal, run_dir / "reliability.png")
    plot_loco(loco, run_dir / "loco.png")
    lines += ["![reliability](reliability.png)", "", "![leave-one-corpus-out](loco.png)", ""]
    lines += ["### Confusion matrices per held-out corpus (int8, clean and far-field)", "",
              "Rows = true label, columns = decided; clips with a partial label (non-neutral) are not in them.", ""]
    for corpus, by_condition in loco.get("confusion", {}).items():
        for condition, confusion in by_condition.items():
            name = f"confusion_{corpus}_{condition}.png"
            plot_confusion(confusion, labels, run_dir / name, f"{corpus} held out, {condition}, int8")
            lines += [f"![{corpus} {condition}]({name})"]
    return lines + [""]


def render(run_dir: str | Path) -> Path:
    """Write ``report.md`` and its PNGs in ``run_dir`` from ``run_dir/results.json``; return the report's path.
    Raises ``FileNotFoundError`` if there is no ``results.json``."""
    run_dir = Path(run_dir)
    results = json.loads((run_dir / RESULTS).read_text())
    labels = results["labels"]
    metrics = results.get("metrics") or {}
    lines = [f"# {results['name']}: speaker-independent evaluation", "",
             f"Run `{results.get('command', '')}` on {results.get('date', '')} (git {results.get('git_commit', '?')[:12]}).",
             f"Label scheme **{results['label_scheme']}**: {', '.join(labels)}.", ""]
    lines += ["| corpus | clips | speakers | language | licence | use |", "|---|---:|---:|---|---|---|"]
    lines += [f"| {c.get('kind', c['name'])} | {c['clips']} | {c['speakers']} | {c.get('language', '?')} | "
              f"{c.get('licence', '?')} | {c.get('use', '?')} |" for c in results.get("corpora", [])]
    if results.get("use"):
        lines += ["", f"A model trained on these corpora inherits their terms: **{results['use']}**."]
    if results.get("excluded_clips"):
        lines += ["", "Excluded by the label scheme: " + ", ".join(f"{n} {k}" for k, n in results["excluded_clips"].items()) + "."]
    lines += ["", f"Protocol: {results.get('protocol', '')}. Every fold's test speakers are unseen in its training "
              "(and early-stopping) data. UA = unweighted accuracy (mean per-class recall), WA = weighted accuracy "
              "(plain accuracy). The int8 figures score whole clips through `edge.pipeline.classify_features`, "
              "the daemon's own code path, on the converted int8 TFLite model.", ""]
    if results.get("train_params"):
        lines += [f"Training: {training_summary(results['train_params'])}.", ""]
    if metrics.get("loco"):
        lines += loco_section(metrics["loco"], labels, run_dir)
    if not metrics:
        lines += ["No cross-validation folds were run (`--folds none`): no evaluation figures."]
    else:
        i8, fl = metrics["int8"], metrics["float"]
        mlp = results.get("baseline_mlp")
        lines += ["## Results", "", "| model | pooled UA | pooled WA | macro-F1 | mean of folds UA |", "|---|---:|---:|---:|---:|",
                  f"| this model, int8 | {_fmt(i8['ua'])} | {_fmt(i8['wa'])} | {_fmt(i8.get('macro_f1'))} | {_fmt(i8['mean_fold_ua'])} |",
                  f"| this model, float | {_fmt(fl['ua'])} | {_fmt(fl['wa'])} | {_fmt(fl.get('macro_f1'))} | {_fmt(fl['mean_fold_ua'])} |"]
        if mlp:
            lines.append(f"| MLP baseline (tutorial features) | {_fmt(mlp['ua'])} | {_fmt(mlp['wa'])} | "
                         f"{_fmt(mlp.get('macro_f1'))} | {_fmt(mlp['mean_fold_ua'])} |")
        if metrics.get("per_corpus"):
            lines += ["", "### Per corpus", "", "Each corpus's held-out speakers across the folds (streamed per corpus).", "",
                      "| corpus | clips | int8 UA | int8 WA | int8 mean of folds UA | float UA | float mean of folds UA |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
            for corpus, m in metrics["per_corpus"].items():
                c8, cf = m["int8"], m["float"]
                lines.append(f"| {corpus} | {c8['clips']} | {_fmt(c8['ua'])} | {_fmt(c8['wa'])} | "
                             f"{_fmt(c8['mean_fold_ua'])} | {_fmt(cf['ua'])} | {_fmt(cf['mean_fold_ua'])} |")
        lines += ["", "### Per fold", "", "| fold | test speakers | clips | int8 UA | int8 WA | float UA | float WA | MLP UA | best epoch |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        mlp_folds = {r["fold"]: r["ua"] for r in (mlp or {}).get("folds", [])}
        for row in i8["folds"]:
            speakers = ", ".join(row["test_actors"])
            lines.append(f"| {row['fold']} | {speakers} | {row['clips']} | {_fmt(row['ua'])} | {_fmt(row['wa'])} | "
                         f"{_fmt(row['float_ua'])} | {_fmt(row['float_wa'])} | {_fmt(mlp_folds.get(row['fold']))} | "
                         f"{row['best_epoch']} |")
        figures = []
        plot_confusion(i8["confusion"], labels, run_dir / "confusion_int8.png", "pooled test folds, int8")
        figures.append(("Pooled confusion matrix (int8, counts; colour = row-normalised)", "confusion_int8.png"))
        plot_recall(results, run_dir / "recall.png")
        figures.append(("Per-class recall (pooled test folds)", "recall.png"))
        plot_folds(results, run_dir / "folds.png")
        figures.append(("Float vs int8 UA per fold", "folds.png"))
        if plot_curves(results, run_dir / "curves.png"):
            figures.append(("Training curves per fold (loss" + ("; UA on the fold's validation speakers)"
                                                              if _has_validation(results) else ")"), "curves.png"))
        for caption, name in figures:
            lines += ["", f"### {caption}", "", f"![{caption}]({name})"]
    if plot_example(results, run_dir / "example.png"):
        lines += ["", "### An example clip: waveform and mel spectrogram", "", "![example clip](example.png)"]
    lines += ["", "## Baselines", "",
              "**MLP on clip-mean features** (the approach of the widely copied \"speech emotion recognition with "
              "librosa\" tutorials, e.g. DataFlair's and the Kaggle notebooks after it): mean MFCC(40) + chroma(12) + "
              "mel(128) per clip, standardised, `MLPClassifier(hidden_layer_sizes=(300,), alpha=0.01, batch_size=256, "
              "max_iter=500)`, trained and tested on the **same speaker folds** as above (`trainer/baseline.py`). "
              "The tutorials report it on random splits, where the test actors are also in training."
              if results.get("baseline_mlp") else "MLP baseline: not run (`--no-baseline`).", "",
              "**Published speaker-independent RAVDESS figures** (8 classes, UA; frozen self-supervised features "
              "with a probe, 95-316 M parameters; EmoBox's speaker-independent folds, not ours):", "",
              "| model | UA | source |", "|---|---:|---|"]
    lines += [f"| {name} | {ua:.3f} | {source} |" for name, ua, source in LITERATURE]
    lines += ["", "Accuracies reported elsewhere on *random* splits of RAVDESS (often 70-90 %) let the same actors "
              "into training and test; they measure recognition of known voices and are **not comparable** with "
              "the speaker-independent figures here.", ""]
    report = run_dir / REPORT
    report.write_text("\n".join(lines))
    logger.info("report: %s", report)
    return report
