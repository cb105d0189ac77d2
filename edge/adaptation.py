"""Persistence of the adaptive normalisation across restarts (the daemon's state directory).

Measured on the leave-one-corpus-out streams, the adaptation needs speech to warm up: the first 50
clips of each held-out stream (about 2 minutes of speech) were right 44 % of the time, clips 100-200
53 %. A device that restarts (an update, a power cut) would pay that again each time; so the daemon
keeps the statistics in its state directory and restores them at start when they belong to the
same model. A device moved to another room re-adapts within the time constant (120 s of speech).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edge.features import AdaptiveNormalizer

ADAPTATION_STATE_FILE = "adaptation.json"
"""File name of the persisted normalisation state in the daemon's state directory."""


def save_adaptation(path: str | Path, normalizer: AdaptiveNormalizer, model_id: str) -> None:
    """Write ``normalizer``'s statistics to ``path`` as JSON tagged with ``model_id``, atomically
    (a temporary file renamed over the old one, so a power cut leaves the old or the new state)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"model": model_id, **normalizer.state()}), encoding="utf-8")
    os.replace(tmp, path)


def restore_adaptation(path: str | Path, normalizer: AdaptiveNormalizer, model_id: str) -> str:
    """Load statistics saved by :func:`save_adaptation` into ``normalizer`` if they are for ``model_id``.

    Returns what happened, one line for the log: restored (with the seconds of speech behind them),
    or why the training statistics are used instead (no file, another model, unreadable). Never raises
    for a bad file: a damaged state only costs the warm-up.
    """
    path = Path(path)
    if not path.is_file():
        return f"no adaptation state at {path}: starting from the training statistics"
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("model") != model_id:
            return f"adaptation state {path} is for model {state.get('model')!r}, not {model_id}: not used"
        normalizer.load_state(state)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"adaptation state {path} unusable ({exc}): starting from the training statistics"
    return (f"adaptation state restored from {path}: {normalizer.speech_frames * normalizer.params.hop_s:.0f} s "
            "of speech heard before")
