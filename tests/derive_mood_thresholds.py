"""Derive the mood levels' default thresholds (:class:`edge.mood.MoodParams`) from held-out speech, by the
rule in :mod:`edge.mood`'s docstring (run after retraining; put the printed values into ``MoodParams`` and
the table into the docstring).

    .venv/bin/python tests/derive_mood_thresholds.py [MODEL.tflite]

Every clip of CREMA-D actors 1001 and 1002 (``../shared/data/crema-d-mini/AudioWAV``, held out of the
shipped model's training), in name order, through one :class:`edge.pipeline.Pipeline` (adaptation carried,
as ``ser-edge replay ../shared/data/crema-d-mini/AudioWAV/*.wav`` hears them; each file's end closes its
utterance). Each utterance's arousal, grouped by the acted emotion: low = neutral, sad; high = angry, happy.
Rule: ``calm_enter`` = P75 of low, ``agitated_enter`` = P25 of high, ``rest_arousal`` = midpoint of the two
medians, each leave threshold halfway between its enter threshold and the rest (all rounded to 0.01).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from paths import CREMA_D_MINI, SHIPPED_MODEL
from sklearn.metrics import roc_auc_score

from edge.audio.io import load_audio
from edge.model import load_model
from edge.pipeline import Pipeline

LOW, HIGH = ("NEU", "SAD"), ("ANG", "HAP")
PERCENTILES = (10, 25, 50, 75, 90)


def utterance_arousal(model_path: Path) -> dict[str, list[float]]:
    """Arousal of every utterance of the CREMA-D mini clips, by group (``"low"``, ``"high"``)."""
    model = load_model(model_path)
    pipeline = Pipeline.for_model(model)
    rate = model.manifest.features.sample_rate_hz
    groups: dict[str, list[float]] = {"low": [], "high": []}
    for path in sorted((CREMA_D_MINI / "AudioWAV").glob("*.wav")):
        decisions = pipeline.process(load_audio(path, rate)) + pipeline.flush()
        emotion = path.stem.split("_")[2]
        group = "low" if emotion in LOW else "high" if emotion in HIGH else None
        if group:
            groups[group] += [d.arousal for d in decisions if d.arousal is not None]
    return groups


def main(argv: list[str]) -> int:
    model_path = Path(argv[0]) if argv else SHIPPED_MODEL
    model = load_model(model_path)
    groups = utterance_arousal(model_path)
    print(f"model {model.manifest.model_id}")
    print(f"{'acted':<22}  {'utterances':>10}  " + "  ".join(f"P{p:<5}" for p in PERCENTILES))
    for name, emotions in (("low", LOW), ("high", HIGH)):
        values = np.percentile(groups[name], PERCENTILES)
        print(f"{name + ': ' + ', '.join(emotions):<22}  {len(groups[name]):>10}  " +
              "  ".join(f"{v:6.3f}" for v in values))
    auc = roc_auc_score([0] * len(groups["low"]) + [1] * len(groups["high"]), groups["low"] + groups["high"])
    calm_enter = round(float(np.percentile(groups["low"], 75)), 2)
    agitated_enter = round(float(np.percentile(groups["high"], 25)), 2)
    rest = round((float(np.median(groups["low"])) + float(np.median(groups["high"]))) / 2, 2)
    print(f"ROC AUC of arousal, high vs low: {auc:.3f}")
    print(f"calm_enter = {calm_enter}, calm_leave = {round((calm_enter + rest) / 2, 2)}, rest_arousal = {rest}, "
          f"agitated_leave = {round((agitated_enter + rest) / 2, 2)}, agitated_enter = {agitated_enter}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
