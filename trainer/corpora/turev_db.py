"""TurEV-DB, the Turkish Emotional Voice database (Canpolat, Ormanoglu & Zeyrek 2020, "Turkish
Emotion Voice Database (TurEV-DB)", SLTU-CCURL workshop, LREC 2020; github.com/Xeonen/TurEV-DB,
``Sound Source/``, CC BY-NC-ND 4.0).

Six speakers (ids such as ``1234``; the release gives no gender) say single Turkish words, about
1 s each, in four emotions. Files ``<Folder>/<speaker>_<code>_<word>.wav`` with code kz (kizgin,
angry), hl (huzunlu, sad), mt (mutlu, happy), sk (sakin, calm) and folders Angry, Sad, Happy,
Calm. The code decides the label; a file in one of those folders whose code disagrees with it
is skipped (logged), and files outside them (a flattened copy) are read by their code alone.
"""

from __future__ import annotations

import re
from pathlib import Path

from trainer.corpora.base import Clip, SkipLog, audio_files, finish, require_folder
from trainer.labels import TUREV_DB_EMOTIONS

TUREV_DB_NAME = re.compile(r"^(\d+)_([a-z]{2})_(.+)\.(wav|flac)$", re.IGNORECASE)
#: Folder of the release -> the code its files carry.
TUREV_DB_FOLDERS = {"angry": "kz", "sad": "hl", "happy": "mt", "calm": "sk"}


def parse_turev_db_path(path: Path) -> tuple[str, str] | None:
    """``(code, speaker)`` of ``Angry/1234_kz_acik.wav`` -> ``("kz", "1234")``, or ``None`` if the
    name is not ``<digits>_<code>_<word>`` (the code is not checked: see
    :data:`trainer.labels.TUREV_DB_EMOTIONS`)."""
    match = TUREV_DB_NAME.match(path.name)
    if not match:
        return None
    return match.group(2).lower(), match.group(1)


def load_turev_db(root: str | Path) -> list[Clip]:
    """All TurEV-DB clips under ``root`` (recursively), sorted by path; labels angry, sad, happy,
    calm; speakers ``"turev-db:<id>"``; gender ``None`` (not in the release). Other names, unknown
    codes and codes that disagree with their Angry/Sad/Happy/Calm folder are skipped with a logged
    reason; raises :class:`CorpusError` if nothing usable is found."""
    kind = "turev-db"
    root = require_folder(kind, root)
    clips, skipped = [], SkipLog(kind)
    for path in audio_files(root):
        parsed = parse_turev_db_path(path)
        if parsed is None:
            skipped.skip("not <speaker>_<code>_<word>.wav", path)
            continue
        code, speaker = parsed
        if code not in TUREV_DB_EMOTIONS:
            skipped.skip(f"unknown emotion code {code!r} (expected {', '.join(TUREV_DB_EMOTIONS)})", path)
            continue
        folder_code = TUREV_DB_FOLDERS.get(path.parent.name.lower())
        if folder_code is not None and folder_code != code:
            skipped.skip("emotion code disagrees with its Angry/Sad/Happy/Calm folder", path)
            continue
        clips.append(Clip(path=path, label=TUREV_DB_EMOTIONS[code], speaker=f"{kind}:{speaker}", corpus=kind))
    return finish(kind, clips, skipped, root, "<Folder>/<speaker>_<kz|hl|mt|sk>_<word>.wav")
