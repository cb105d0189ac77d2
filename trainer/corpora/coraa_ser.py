"""CORAA-SER, natural spontaneous Brazilian Portuguese labelled neutral vs non-neutral (CORAA SER v1,
the PROPOR 2022 shared task; segments of informal conversations of the C-ORAL-BRASIL corpus;
as mirrored in github.com/mendesLet/speech-emotion-rec-ptbr, whose licence covers its code only:
the CORAA project releases its data for research).

Files ``datasets/coraa-ser/<class>/<recording>_segment<n>_<class>.wav`` with class ``neutral``,
``non-neutral-female``, ``non-neutral-male``. Annotators said only whether a segment is neutral, so
the native labels are ``"neutral"`` and ``"non-neutral"`` (a partial label: some emotion, not
which). The recording id (``bfamcv01``) groups the segments of one conversation, which may hold
several speakers: it is the clip's speaker/group id (``"coraa-ser:bfamcv01"``), so folds never split
a conversation. Gender: the non-neutral classes name the speaker's, neutral segments do not
(``None``). The class in the name decides; a file in a class folder that disagrees is skipped (logged).
"""

from __future__ import annotations

import re
from pathlib import Path

from trainer.corpora.base import Clip, SkipLog, audio_files, finish, require_folder

CORAA_SER_NAME = re.compile(r"^([A-Za-z0-9]+)_segment(\d+)_([a-z-]+)\.(wav|flac)$")
#: Class (folder and name suffix) -> ``(native label, gender)``.
CORAA_SER_CLASSES: dict[str, tuple[str, str | None]] = {
    "neutral": ("neutral", None),
    "non-neutral-female": ("non-neutral", "female"),
    "non-neutral-male": ("non-neutral", "male"),
}


def parse_coraa_ser_name(name: str) -> tuple[str, str] | None:
    """``(class, recording)`` of ``bfamcv01_segment163_neutral.wav`` -> ``("neutral", "bfamcv01")``, or
    ``None`` if the name is not ``<recording>_segment<n>_<class>`` (the class is not checked: see
    :data:`CORAA_SER_CLASSES`)."""
    match = CORAA_SER_NAME.match(name)
    if not match:
        return None
    return match.group(3), match.group(1)


def load_coraa_ser(root: str | Path) -> list[Clip]:
    """All CORAA-SER clips under ``root`` (recursively), sorted by path; labels ``"neutral"`` and
    ``"non-neutral"``; speaker/group ids ``"coraa-ser:<recording>"``; gender from the non-neutral class.
    Other names, unknown classes and classes that disagree with their folder are skipped with a logged
    reason; raises :class:`CorpusError` if nothing usable is found."""
    kind = "coraa-ser"
    root = require_folder(kind, root)
    clips, skipped = [], SkipLog(kind)
    for path in audio_files(root):
        parsed = parse_coraa_ser_name(path.name)
        if parsed is None:
            skipped.skip("not <recording>_segment<n>_<class>.wav", path)
            continue
        cls, recording = parsed
        if cls not in CORAA_SER_CLASSES:
            skipped.skip(f"unknown class {cls!r} (expected {', '.join(CORAA_SER_CLASSES)})", path)
            continue
        if path.parent.name in CORAA_SER_CLASSES and path.parent.name != cls:
            skipped.skip("class in the name disagrees with its class folder", path)
            continue
        label, gender = CORAA_SER_CLASSES[cls]
        clips.append(Clip(path=path, label=label, speaker=f"{kind}:{recording}", corpus=kind, gender=gender))
    return finish(kind, clips, skipped, root, "<class>/<recording>_segment<n>_<class>.wav")
