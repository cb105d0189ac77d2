"""TESS, the Toronto emotional speech set (Dupuis & Pichora-Fuller 2010; borealisdata.ca).

Layout: folders ``OAF_angry``, ``YAF_pleasant_surprise``, ... (speaker OAF = older, YAF =
younger talker, both female), files ``OAF_back_angry.wav`` with pleasant surprise as ``_ps``.
The release misnames one file ``OAF_neutral/OA_bite_neutral.wav``: the folder decides, so it
belongs to OAF. The emotion is taken from the folder and checked against the file name's suffix.
"""

from __future__ import annotations

import re
from pathlib import Path

from trainer.corpora.base import Clip, SkipLog, audio_files, finish, require_folder
from trainer.labels import TESS_EMOTIONS

TESS_FOLDER = re.compile(r"^(OAF|YAF)_(.+)$", re.IGNORECASE)
TESS_SPEAKERS = ("OAF", "YAF")


def parse_tess_path(path: Path) -> tuple[str, str] | None:
    """``(label, speaker)`` of a TESS file from its folder (``OAF_fear/OAF_back_fear.wav`` ->
    ``("fear", "OAF")``), or ``None`` if the folder is not ``OAF_*``/``YAF_*`` or the emotion is
    unknown or disagrees with the file name's suffix."""
    match = TESS_FOLDER.match(path.parent.name)
    if not match:
        return None
    speaker, emotion = match.group(1).upper(), match.group(2).lower()
    label = TESS_EMOTIONS.get(emotion)
    suffix = TESS_EMOTIONS.get(path.stem.rsplit("_", 1)[-1].lower())
    if label is None or suffix != label:
        return None
    return label, speaker


def load_tess(root: str | Path) -> list[Clip]:
    """All TESS clips under ``root`` (recursively), sorted by path; speakers ``"tess:OAF"`` and
    ``"tess:YAF"``, gender female. Files outside ``OAF_*``/``YAF_*`` folders or whose emotion is
    unknown are skipped with a logged reason; raises :class:`CorpusError` if nothing usable is found."""
    kind = "tess"
    root = require_folder(kind, root)
    clips, skipped = [], SkipLog(kind)
    for path in audio_files(root):
        parsed = parse_tess_path(path)
        if parsed is None:
            skipped.skip("not in an OAF_<emotion>/YAF_<emotion> folder with a matching _<emotion> suffix", path)
            continue
        label, speaker = parsed
        clips.append(Clip(path=path, label=label, speaker=f"tess:{speaker}", corpus=kind, gender="female"))
    return finish(kind, clips, skipped, root, "OAF_<emotion>/*.wav, YAF_<emotion>/*.wav")
