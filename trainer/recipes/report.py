"""``ser-train report``: a run's report regenerated from its saved ``results.json``."""

from __future__ import annotations

from trainer.config import UsageError


def report(args) -> int:
    """``ser-train report RUN_DIR``: ``report.md`` and its PNGs rendered again from ``results.json``; prints
    the report's path. Returns 0. :raises UsageError: for a folder without ``results.json``."""
    from trainer.report import RESULTS, render

    if not (args.run_dir / RESULTS).is_file():
        raise UsageError(f"expected a run directory with {RESULTS}, got {args.run_dir}")
    print(render(args.run_dir))
    return 0
