"""Label schemes and per-corpus label maps: the one place where emotion names are spelled.

The model's output order is the order of the scheme's tuple; the manifest records it, and the
device reads labels from the manifest only.
"""

from __future__ import annotations

#: RAVDESS emotion code (third field of ``03-01-EE-II-SS-RR-AA``) -> label
#: (Livingstone & Russo 2018, PLoS ONE 13(5): e0196391).
RAVDESS_EMOTIONS: dict[str, str] = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}

#: Label schemes: name -> labels in model output order.
SCHEMES: dict[str, tuple[str, ...]] = {
    "native": tuple(RAVDESS_EMOTIONS.values()),
}
