"""nEMO, Polish emotional speech (Christop 2024, "nEMO: Dataset of Emotional Speech in Polish",
LREC-COLING 2024; github.com/amu-cai/nEMO, CC BY-NC-SA 4.0).

Nine actors, six emotions. Files ``samples/<SPK>_<emotion>_<n>.wav`` with a three-character speaker
id (``EB0``, ``WR0``, ...) and emotion anger, fear, happiness, neutral, sadness, surprised (the native
labels, kept as spelled). The file names carry no gender (``gender`` is ``None``).
"""

from __future__ import annotations

import re
from pathlib import Path

from trainer.corpora.base import Clip, SkipLog, audio_files, finish, require_folder
from trainer.labels import NEMO_EMOTIONS

NEMO_NAME = re.compile(r"^([A-Z0-9]{3})_([a-z]+)_(\d+)\.(wav|flac)$", re.IGNORECASE)


def parse_nemo_name(name: str) -> tuple[str, str] | None:
    """``(emotion, speaker)`` of ``EB0_anger_1.wav`` -> ``("anger", "EB0")``, or ``None`` if the name is
    not ``<SPK>_<emotion>_<n>`` (the emotion is lower-cased, not checked: see
    :data:`trainer.labels.NEMO_EMOTIONS`)."""
    match = NEMO_NAME.match(name)
    if not match:
        return None
    return match.group(2).lower(), match.group(1).upper()


def load_nemo(root: str | Path) -> list[Clip]:
    """All nEMO clips under ``root`` (recursively; ``samples/`` in the release), sorted by path; labels
    as in :data:`trainer.labels.NEMO_EMOTIONS`; speakers ``"nemo:EB0"``; gender ``None``. Other names
    and unknown emotions are skipped with a logged reason; raises :class:`CorpusError` if nothing
    usable is found."""
    kind = "nemo"
    root = require_folder(kind, root)
    clips, skipped = [], SkipLog(kind)
    for path in audio_files(root):
        parsed = parse_nemo_name(path.name)
        if parsed is None:
            skipped.skip("not <SPK>_<emotion>_<n>.wav", path)
            continue
        emotion, speaker = parsed
        if emotion not in NEMO_EMOTIONS:
            skipped.skip(f"unknown emotion {emotion!r} (expected {', '.join(NEMO_EMOTIONS)})", path)
            continue
        clips.append(Clip(path=path, label=emotion, speaker=f"{kind}:{speaker}", corpus=kind))
    return finish(kind, clips, skipped, root, "samples/<SPK>_<emotion>_<n>.wav")
