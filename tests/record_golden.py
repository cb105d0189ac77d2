"""Record the golden decisions of the shipped model (run after retraining; commit the result).

    .venv/bin/python tests/record_golden.py

For each 48 kHz RAVDESS original in ../shared/data/ravdess-48k, the longest utterance's label,
confidence and times through the daemon's pipeline, written to tests/golden/<model name>.json
with the model's sha256. tests/test_golden.py replays them and compares.
"""

from __future__ import annotations

import json
import sys

from paths import RAVDESS_48K, REPO, SHIPPED_MODEL

from edge.audio.io import load_audio
from edge.model import load_model
from edge.pipeline import Pipeline


def main_decision(model, path):
    samples = load_audio(path, model.manifest.features.sample_rate_hz)
    pipeline = Pipeline.for_model(model)
    decisions = pipeline.process(samples) + pipeline.flush()
    return max(decisions, key=lambda d: d.end_frame - d.start_frame)


def record() -> dict:
    model = load_model(SHIPPED_MODEL)
    clips = {}
    for path in sorted(RAVDESS_48K.glob("*.wav")):
        d = main_decision(model, path)
        clips[path.name] = {"label": model.labels[d.top], "confidence": round(d.confidence, 4),
                            "start_s": round(d.start_s, 3), "end_s": round(d.end_s, 3), "unsure": d.unsure,
                            "arousal": None if d.arousal is None else round(d.arousal, 4),
                            "valence": None if d.valence is None else round(d.valence, 4)}
    return {"model": model.manifest.model_id, "sha256": model.manifest.sha256, "clips": clips}


if __name__ == "__main__":
    golden = record()
    out = REPO / "tests" / "golden" / f"{SHIPPED_MODEL.stem}.json"
    out.write_text(json.dumps(golden, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
