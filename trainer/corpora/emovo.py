"""EMOVO, Italian emotional speech (Costantini, Iaderola, Paoloni & Todisco 2014, "EMOVO Corpus: an
Italian Emotional Speech Database", LREC 2014; distributed by Fondazione Ugo Bordoni for research use,
as mirrored in github.com/fp1acm8/SER, whose repository carries no corpus licence).

Six professional actors, f1-f3 (female) and m1-m3 (male), 14 sentences, seven emotions; 48 kHz
stereo (``edge.audio.io`` averages the channels). Files ``data/EMOVO/<spk>/<emo>-<spk>-<sentence>.wav``
with emo dis (disgusto), gio (gioia), neu (neutrale), pau (paura), rab (rabbia), sor (sorpresa), tri
(tristezza); the native labels are the paper's English words (:data:`trainer.labels.EMOVO_EMOTIONS`:
disgust, joy, neutral, fear, anger, surprise, sadness). The speaker field of the name decides; a file
in a speaker folder of another speaker is skipped (logged).
"""

from __future__ import annotations

import re
from pathlib import Path

from trainer.corpora.base import Clip, SkipLog, audio_files, finish, require_folder
from trainer.labels import EMOVO_EMOTIONS

EMOVO_NAME = re.compile(r"^([a-z]{3})-([fm][1-3])-([a-z]+\d*)\.(wav|flac)$", re.IGNORECASE)
EMOVO_SPEAKER = re.compile(r"^[fm][1-3]$", re.IGNORECASE)
EMOVO_GENDERS = {"f": "female", "m": "male"}


def parse_emovo_name(name: str) -> tuple[str, str] | None:
    """``(emotion code, speaker)`` of ``dis-f1-b1.wav`` -> ``("dis", "f1")``, or ``None`` if the name is
    not ``<emo>-<spk>-<sentence>`` with speaker f1-f3 or m1-m3 (the code is not checked: see
    :data:`trainer.labels.EMOVO_EMOTIONS`)."""
    match = EMOVO_NAME.match(name)
    if not match:
        return None
    return match.group(1).lower(), match.group(2).lower()


def load_emovo(root: str | Path) -> list[Clip]:
    """All EMOVO clips under ``root`` (recursively), sorted by path; labels disgust, joy, neutral, fear,
    anger, surprise, sadness; speakers ``"emovo:f1"`` ...; gender from the speaker's letter. Other
    names, unknown codes and files in another speaker's folder are skipped with a logged reason;
    raises :class:`CorpusError` if nothing usable is found."""
    kind = "emovo"
    root = require_folder(kind, root)
    clips, skipped = [], SkipLog(kind)
    for path in audio_files(root):
        parsed = parse_emovo_name(path.name)
        if parsed is None:
            skipped.skip("not <emo>-<spk>-<sentence>.wav (speakers f1-f3, m1-m3)", path)
            continue
        code, speaker = parsed
        if code not in EMOVO_EMOTIONS:
            skipped.skip(f"unknown emotion code {code!r} (expected {', '.join(EMOVO_EMOTIONS)})", path)
            continue
        if EMOVO_SPEAKER.match(path.parent.name) and path.parent.name.lower() != speaker:
            skipped.skip("speaker field disagrees with its speaker folder", path)
            continue
        clips.append(Clip(path=path, label=EMOVO_EMOTIONS[code], speaker=f"{kind}:{speaker}", corpus=kind,
                          gender=EMOVO_GENDERS[speaker[0]]))
    return finish(kind, clips, skipped, root, "data/EMOVO/<spk>/<emo>-<spk>-<sentence>.wav")
