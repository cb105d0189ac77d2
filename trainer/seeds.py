"""Several runs of one recipe side by side: the headline of each (one training seed each, issue 17) with
the mean and the spread, so a recipe is chosen on differences larger than what a seed alone moves.

Reads each run folder's ``results.json`` (``ser-train fit``), or its ``cv.json`` when the fit was stopped
after its folds (a seed's spread needs no final model); the headline is
:func:`trainer.generalization.headline` of its leave-one-corpus-out int8 rows (recomputed from the rows
for runs older than the headline). ``ser-train report RUN_DIR RUN_DIR ...`` prints it.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path

from trainer.config import UsageError

logger = logging.getLogger(__name__)

SEED_FIGURES = (
    ("clean", "mean_e4_ua_eight", "e4 UA mean (four-emotion corpora)"),
    ("far", "mean_e4_ua_eight", "far-field e4 UA mean"),
    ("clean", "min_e4_ua_eight", "lowest corpus e4 UA"),
    ("clean", "mean_e4_ua_issue8", "e4 UA mean, issue 8's five"),
    ("far", "mean_e4_ua_issue8", "far-field, issue 8's five"),
    ("clean", "emospeech_ua", "EmoSpeech UA"),
    ("clean", "coraa_neutral_recall", "CORAA-SER neutral recall"),
    ("clean", "coraa_neutral_auc", "CORAA-SER neutral AUC"),
)
"""The figures compared across runs: ``(condition, headline key, column name)``, int8."""


def run_headline(run_dir: Path) -> dict:
    """``{"run", "seed", "corpora", "figures": {"<condition>_<key>": value or None}}`` of one LOCO run folder.

    :raises UsageError: for a folder without ``results.json`` or ``cv.json``, or without leave-one-corpus-out
        figures.
    """
    from trainer.generalization import headline
    from trainer.report import CV, RESULTS

    run_dir = Path(run_dir)
    if (run_dir / RESULTS).is_file():
        source = RESULTS
        results = json.loads((run_dir / RESULTS).read_text())
    elif (run_dir / CV).is_file():  # a fit stopped after its folds: their figures, its config's seed
        source, config = CV, run_dir / "config.json"
        results = {"metrics": json.loads((run_dir / CV).read_text()),
                   "train_params": (json.loads(config.read_text()) if config.is_file() else {}).get("train_params")}
    else:
        raise UsageError(f"expected a run directory with {RESULTS} (or {CV}), got {run_dir}")
    loco = (results.get("metrics") or {}).get("loco")
    if not loco:
        raise UsageError(f"{run_dir}: expected a leave-one-corpus-out run, got no LOCO figures in {source}")
    figures, corpora = {}, []
    for condition, key, _ in SEED_FIGURES:
        int8 = (loco.get(condition) or {}).get("int8")
        if int8 is None:
            figures[f"{condition}_{key}"] = None
            continue
        h = int8.get("headline") or headline(int8["corpora"], condition)
        figures[f"{condition}_{key}"] = h.get(key)
        corpora = corpora or [r["corpus"] for r in int8["corpora"]]
    return {"run": run_dir.name, "seed": results.get("seed", (results.get("train_params") or {}).get("seed")),
            "corpora": corpora, "figures": figures}


def compare_runs(run_dirs: list[Path]) -> dict:
    """:func:`run_headline` of each run, and per figure over the runs that have it: ``mean``, ``spread``
    (max - min) and ``std`` (sample standard deviation), both None with one value. ``{"runs": [...],
    "mean": {...}, "spread": {...}, "std": {...}}``; a warning is logged when the runs held out different four-emotion corpora (their means are then not
    comparable), an INFO line names corpora only some of them held out."""
    from trainer.generalization import FOUR_EMOTION_CORPORA

    runs = [run_headline(d) for d in run_dirs]
    held = [set(r["corpora"]) for r in runs]
    if len({frozenset(h & set(FOUR_EMOTION_CORPORA)) for h in held}) > 1:
        logger.warning("the runs held out different four-emotion corpora: their means are not comparable (%s)",
                       "; ".join(f"{r['run']}: {','.join(r['corpora'])}" for r in runs))
    elif some := set.union(*held) - set.intersection(*held):
        logger.info("held out by some of the runs only: %s (their figures come from those runs)", ", ".join(sorted(some)))
    out = {"runs": runs, "mean": {}, "spread": {}, "std": {}}
    for condition, key, _ in SEED_FIGURES:
        name = f"{condition}_{key}"
        values = [r["figures"][name] for r in runs if r["figures"][name] is not None]
        out["mean"][name] = statistics.fmean(values) if values else None
        out["spread"][name] = max(values) - min(values) if len(values) > 1 else None
        out["std"][name] = statistics.stdev(values) if len(values) > 1 else None
    return out


def format_comparison(comparison: dict) -> str:
    """:func:`compare_runs` as a Markdown table: one row per run, then the mean, the spread and the std."""
    def fmt(value) -> str:
        return "–" if value is None else f"{value:.3f}"

    names = [f"{condition}_{key}" for condition, key, _ in SEED_FIGURES]
    lines = ["| run | seed | " + " | ".join(column for _, _, column in SEED_FIGURES) + " |",
             "|---|---:|" + "---:|" * len(SEED_FIGURES)]
    for run in comparison["runs"]:
        lines.append(f"| {run['run']} | {run['seed'] if run['seed'] is not None else '?'} | "
                     + " | ".join(fmt(run["figures"][n]) for n in names) + " |")
    for row in ("mean", "spread", "std"):
        label = {"mean": "**mean**", "spread": "spread (max - min)", "std": "standard deviation"}[row]
        lines.append(f"| {label} | | " + " | ".join(fmt(comparison[row][n]) for n in names) + " |")
    return "\n".join(lines)
