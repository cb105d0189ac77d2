"""``ser-train report``: a run's report regenerated from its saved ``results.json``; with several runs (one
per training seed), their headlines side by side with the mean and the spread (:mod:`trainer.seeds`)."""

from __future__ import annotations

import json

from trainer.config import UsageError


def report(args) -> int:
    """``ser-train report RUN_DIR``: ``report.md`` and its PNGs rendered again from ``results.json``; prints
    the report's path. ``ser-train report RUN_DIR RUN_DIR ...``: prints the runs' LOCO headlines, their mean
    and spread as a Markdown table (``--json``: :func:`trainer.seeds.compare_runs`), rendering nothing.
    Returns 0. :raises UsageError: for a folder without ``results.json`` (or, to compare, without LOCO figures)."""
    from trainer.report import RESULTS, render
    from trainer.seeds import compare_runs, format_comparison

    if len(args.run_dir) > 1 or args.json:
        comparison = compare_runs(args.run_dir)
        print(json.dumps(comparison, indent=2) if args.json else format_comparison(comparison))
        return 0
    run_dir = args.run_dir[0]
    if not (run_dir / RESULTS).is_file():
        raise UsageError(f"expected a run directory with {RESULTS}, got {run_dir}")
    print(render(run_dir))
    return 0
