"""SAVEE, Surrey Audio-Visual Expressed Emotion (Haq & Jackson 2009; kahlan.eps.surrey.ac.uk/savee).

Four male speakers DC, JE, JK, KL; file names ``<code><nn>.wav`` with code a anger, d disgust,
f fear, h happiness, n neutral, sa sadness, su surprise. The official release keeps them as
``AudioData/DC/a01.wav``; widely shared copies flatten them to ``DC_a01.wav``. Both are read.
"""

from __future__ import annotations

import re
from pathlib import Path

from trainer.corpora.base import Clip, SkipLog, audio_files, finish, require_folder
from trainer.labels import SAVEE_EMOTIONS

SAVEE_SPEAKERS = ("DC", "JE", "JK", "KL")
SAVEE_FLAT = re.compile(r"^([A-Z]{2})_([a-z]+)(\d\d)\.(wav|flac)$", re.IGNORECASE)
SAVEE_NESTED = re.compile(r"^([a-z]+)(\d\d)\.(wav|flac)$", re.IGNORECASE)


def parse_savee_path(path: Path) -> tuple[str, str] | None:
    """``(code, speaker)`` of ``DC_a01.wav`` or ``DC/a01.wav``, or ``None`` if neither layout
    matches a known speaker (the code is not checked: see :data:`trainer.labels.SAVEE_EMOTIONS`)."""
    flat = SAVEE_FLAT.match(path.name)
    if flat and flat.group(1).upper() in SAVEE_SPEAKERS:
        return flat.group(2).lower(), flat.group(1).upper()
    nested = SAVEE_NESTED.match(path.name)
    if nested and path.parent.name.upper() in SAVEE_SPEAKERS:
        return nested.group(1).lower(), path.parent.name.upper()
    return None


def load_savee(root: str | Path) -> list[Clip]:
    """All SAVEE clips under ``root`` (recursively, either layout); speakers ``"savee:DC"`` ...,
    gender male. Unknown codes and other names are skipped with a logged reason; raises
    :class:`CorpusError` if nothing usable is found."""
    kind = "savee"
    root = require_folder(kind, root)
    clips, skipped = [], SkipLog(kind)
    for path in audio_files(root):
        parsed = parse_savee_path(path)
        if parsed is None:
            skipped.skip("not DC_a01.wav or DC/a01.wav (speakers DC, JE, JK, KL)", path)
            continue
        code, speaker = parsed
        if code not in SAVEE_EMOTIONS:
            skipped.skip(f"unknown emotion code {code!r} (expected {', '.join(SAVEE_EMOTIONS)})", path)
            continue
        clips.append(Clip(path=path, label=SAVEE_EMOTIONS[code], speaker=f"savee:{speaker}", corpus=kind,
                          gender="male"))
    return finish(kind, clips, skipped, root, "DC_a01.wav or AudioData/DC/a01.wav")
