"""CREMA-D (Cao et al. 2014, IEEE Trans. Affective Computing 5(4): 377-390), as released at
github.com/CheyneyComputerScience/CREMA-D.

Layout (its README): ``AudioWAV/AAAA_SSS_EEE_LL.wav`` with actor ``AAAA`` 1001..1091, sentence
``SSS`` (IEO, TIE, ... 12 sentences), emotion ``EEE`` (ANG, DIS, FEA, HAP, NEU, SAD) and level
``LL`` (LO, MD, HI, XX unspecified); ``VideoDemographics.csv`` (ActorID, Age, Sex, Race,
Ethnicity) gives each actor's sex; ``processedResults/tabulatedVotes.csv`` tabulates the crowd's
perception: ``fileName`` and the majority ``emoVote`` (A, D, F, H, N, S; ties as ``A:N``), one row
per clip and annotation mode, with the first (unnamed) column ``100000 * mode + clip`` where mode
1 = voice only, 2 = face only, 3 = audio-visual.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from trainer.corpora.base import Clip, CorpusError, SkipLog, audio_files, finish, logger, require_folder
from trainer.labels import CREMA_D_EMOTIONS

CREMA_D_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})\.(wav|flac)$", re.IGNORECASE)
FIRST_ACTOR, LAST_ACTOR = 1001, 1091
DEMOGRAPHICS = "VideoDemographics.csv"
VOTES = Path("processedResults") / "tabulatedVotes.csv"
#: ``emoVote`` letters -> the acted codes of the file names.
VOTE_CODES = {"A": "ANG", "D": "DIS", "F": "FEA", "H": "HAP", "N": "NEU", "S": "SAD"}
VOICE_ONLY_MODE = 1
#: The actors whose clips ``make demo`` plays (``edge/samples/crema-d``, chosen by a fixed rule: the
#: first male and first female actor IDs). The shipped model must never train on them.
DEMO_SPEAKERS = frozenset({"crema-d:1001", "crema-d:1002"})
#: Level field LL -> :attr:`Clip.intensity`; XX (unspecified, 11 of the 12 sentences) -> None.
CREMA_D_LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": None}


def parse_crema_d_name(name: str) -> tuple[str, str] | None:
    """``(emotion code, actor)`` of a name such as ``1001_DFA_ANG_XX.wav``, or ``None`` if it is
    not a CREMA-D name (the code is not checked: see :data:`trainer.labels.CREMA_D_EMOTIONS`)."""
    match = CREMA_D_NAME.match(name)
    if not match or not FIRST_ACTOR <= int(match.group(1)) <= LAST_ACTOR:
        return None
    return match.group(3).upper(), match.group(1)


def read_genders(path: Path) -> dict[str, str]:
    """Actor id -> ``"female"``/``"male"`` from ``VideoDemographics.csv`` (columns ActorID, Sex)."""
    genders = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            sex = (row.get("Sex") or "").strip().lower()
            if sex in ("female", "male") and row.get("ActorID"):
                genders[row["ActorID"].strip()] = sex
    return genders


def read_perceived(path: Path) -> dict[str, str]:
    """File stem -> acted-style code (``"ANG"``) of the voice-only majority ``emoVote``; ties
    (``"A:N"``) and unknown letters are left out. Without the mode column, the first row per file wins."""
    votes: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "fileName" not in reader.fieldnames or "emoVote" not in reader.fieldnames:
            raise CorpusError(f"crema-d: {path}: expected columns fileName and emoVote, got {reader.fieldnames}")
        index_column = reader.fieldnames[0] if reader.fieldnames[0] in ("", "X", "Unnamed: 0") else None
        for row in reader:
            if index_column is not None:
                try:
                    if int(row[index_column]) // 100000 != VOICE_ONLY_MODE:
                        continue
                except ValueError:
                    pass
            stem = Path(row["fileName"].strip()).stem
            code = VOTE_CODES.get(row["emoVote"].strip())
            if code is not None:
                votes.setdefault(stem, code)
    return votes


def load_crema_d(root: str | Path, perceived: bool = False) -> list[Clip]:
    """CREMA-D clips under ``root`` (recursively; ``AudioWAV/`` in the release).

    ``perceived``: label each clip with the crowd's voice-only majority vote from
    ``processedResults/tabulatedVotes.csv`` instead of the acted emotion (clips with a tied or
    missing vote are skipped). Speakers ``"crema-d:1001"``; ``gender`` from
    ``VideoDemographics.csv`` beside ``AudioWAV`` when present, else ``None``; ``intensity``
    ``"low"``/``"medium"``/``"high"`` from the level LO/MD/HI, ``None`` for XX (the acted level,
    also with ``perceived``). Unknown emotion codes or levels and names that are not CREMA-D's are
    skipped with a logged reason; raises
    :class:`CorpusError` if nothing usable is found.
    """
    kind = "crema-d"
    root = require_folder(kind, root)
    genders = {}
    demographics = next((p for p in (root / DEMOGRAPHICS, root.parent / DEMOGRAPHICS) if p.is_file()), None)
    if demographics is not None:
        genders = read_genders(demographics)
    else:
        logger.info("crema-d: no %s beside the audio: gender unknown", DEMOGRAPHICS)
    votes = None
    if perceived:
        votes_path = next((p for p in (root / VOTES, root.parent / VOTES) if p.is_file()), None)
        if votes_path is None:
            raise CorpusError(f"crema-d: perceived labels need {VOTES} under {root} or its parent")
        votes = read_perceived(votes_path)
    clips, skipped = [], SkipLog(kind)
    for path in audio_files(root):
        parsed = parse_crema_d_name(path.name)
        if parsed is None:
            skipped.skip("not a CREMA-D name (AAAA_SSS_EEE_LL.wav, actor 1001..1091)", path)
            continue
        code, actor = parsed
        if votes is not None:
            if path.stem not in votes:
                skipped.skip("no untied voice-only vote in tabulatedVotes.csv", path)
                continue
            code = votes[path.stem]
        if code not in CREMA_D_EMOTIONS:
            skipped.skip(f"unknown emotion code {code} (expected {', '.join(CREMA_D_EMOTIONS)})", path)
            continue
        level = CREMA_D_NAME.match(path.name).group(4).upper()
        if level not in CREMA_D_LEVELS:
            skipped.skip(f"unknown level {level} (expected {', '.join(CREMA_D_LEVELS)})", path)
            continue
        clips.append(Clip(path=path, label=CREMA_D_EMOTIONS[code], speaker=f"crema-d:{actor}", corpus=kind,
                          gender=genders.get(actor), intensity=CREMA_D_LEVELS[level]))
    return finish(kind, clips, skipped, root, "AAAA_SSS_EEE_LL.wav")


def load_crema_d_perceived(root: str | Path) -> list[Clip]:
    """:func:`load_crema_d` with ``perceived=True`` (corpus kind ``crema-d-perceived``)."""
    return load_crema_d(root, perceived=True)
