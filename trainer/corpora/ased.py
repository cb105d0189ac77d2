"""ASED, the Amharic Speech Emotion Dataset (Retta et al. 2023, "A new Amharic speech emotion dataset
and classification benchmark", ACM TALLIP 22(1); github.com/wgwangang/ASED_V1; no licence stated in
the release: research use).

65 non-professional speakers recorded wherever they were (rooms and microphones vary); a panel of 8
listeners kept only accepted takes. Files ``0K<Emotion>/<e><n>-<session>-<sentence>-<gender>-<speaker>.wav``
in the folders ``01Neutral``, ``02Fearful``, ``03Happy``, ``04Sad``, ``05Angry``, with e = n, f, h,
s, a (one file of the release spells it with a capital ``S``) and n = the folder's number; gender 01
female, 02 male; speaker 01..65 is the last field and names the speaker alone: five speaker numbers
also appear with the other gender code on one stray file each, so a speaker's gender is the code most
of their files carry. The letter decides the label; a file in an emotion folder whose letter disagrees
with it is skipped (logged).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from trainer.corpora.base import Clip, SkipLog, audio_files, finish, require_folder
from trainer.labels import ASED_EMOTIONS

ASED_NAME = re.compile(r"^([a-z])(\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.(wav|flac)$", re.IGNORECASE)
#: Gender field -> :attr:`Clip.gender`.
ASED_GENDERS = {"01": "female", "02": "male"}
ASED_FOLDER = re.compile(r"^0\d([A-Za-z]+)$")


def parse_ased_name(name: str) -> tuple[str, str, str] | None:
    """``(letter, gender code, speaker)`` of ``n1-01-01-01-01.wav`` -> ``("n", "01", "01")``, or ``None``
    if the name is not ASED's (the letter is lower-cased, not checked: see
    :data:`trainer.labels.ASED_EMOTIONS`)."""
    match = ASED_NAME.match(name)
    if not match:
        return None
    return match.group(1).lower(), match.group(5), match.group(6)


def load_ased(root: str | Path) -> list[Clip]:
    """All ASED clips under ``root`` (recursively), sorted by path; labels neutral, fearful, happy, sad,
    angry; speakers ``"ased:NN"``; gender from the gender code most of the speaker's files carry. Other
    names, unknown letters or gender codes and letters that disagree with their ``0K<Emotion>`` folder
    are skipped with a logged reason; raises :class:`CorpusError` if nothing usable is found."""
    kind = "ased"
    root = require_folder(kind, root)
    parsed, skipped = [], SkipLog(kind)
    for path in audio_files(root):
        fields = parse_ased_name(path.name)
        if fields is None:
            skipped.skip("not <e><n>-<session>-<sentence>-<gender>-<speaker>.wav", path)
            continue
        letter, gender, speaker = fields
        if letter not in ASED_EMOTIONS:
            skipped.skip(f"unknown emotion letter {letter!r} (expected {', '.join(ASED_EMOTIONS)})", path)
            continue
        if gender not in ASED_GENDERS:
            skipped.skip(f"unknown gender code {gender!r} (expected 01 female, 02 male)", path)
            continue
        folder = ASED_FOLDER.match(path.parent.name)
        if folder and folder.group(1).lower() in ASED_EMOTIONS.values() \
                and folder.group(1).lower() != ASED_EMOTIONS[letter]:
            skipped.skip("emotion letter disagrees with its 0K<Emotion> folder", path)
            continue
        parsed.append((path, ASED_EMOTIONS[letter], gender, speaker))
    codes: dict[str, Counter] = {}
    for _, _, gender, speaker in parsed:
        codes.setdefault(speaker, Counter())[gender] += 1
    clips = [Clip(path=path, label=label, speaker=f"{kind}:{speaker}", corpus=kind,
                  gender=ASED_GENDERS[codes[speaker].most_common(1)[0][0]])
             for path, label, _, speaker in parsed]
    return finish(kind, clips, skipped, root, "0K<Emotion>/<e><n>-<session>-<sentence>-<gender>-<speaker>.wav")
