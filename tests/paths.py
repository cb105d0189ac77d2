"""Where tests find real audio (../shared/data beside the repository) and the shipped model."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
RAVDESS_MINI = SHARED_DATA / "ravdess-mini"
RAVDESS_48K = SHARED_DATA / "ravdess-48k"
TESS_MINI = SHARED_DATA / "tess-mini"
CREMA_D_MINI = SHARED_DATA / "crema-d-mini"
SAVEE_MINI = SHARED_DATA / "savee-mini"
TUREV_DB_MINI = SHARED_DATA / "turev-db-mini"
ASED_MINI = SHARED_DATA / "ased-mini"
NEMO_MINI = SHARED_DATA / "nemo-mini"
EMOVO_MINI = SHARED_DATA / "emovo-mini"
EMOSPEECH_MINI = SHARED_DATA / "emospeech-mini"
CORAA_SER_MINI = SHARED_DATA / "coraa-ser-mini"
#: The full corpora, extracted by ../shared/tools/corpus-from-mirror (git-ignored; absent in CI).
FULL_DATA = Path(os.environ.get("SER_EDGE_DATA", REPO / "data"))
#: CREMA-D's one clip of digital silence (../shared/data/README.md), in the full corpus only.
CREMA_D_SILENT_CLIP = FULL_DATA / "crema-d" / "AudioWAV" / "1076_MTI_SAD_XX.wav"
SHIPPED_MODEL = Path(os.environ.get("SER_EDGE_TEST_MODEL", REPO / "models" / "emotion4-conv1d.tflite"))
SAMPLE = REPO / "edge" / "samples" / "speech-sample.wav"


def ravdess_mini_clips() -> list[Path]:
    return sorted(RAVDESS_MINI.glob("Actor_*/*.flac"))
