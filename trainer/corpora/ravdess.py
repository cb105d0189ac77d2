"""RAVDESS (Livingstone & Russo 2018, PLoS ONE 13(5): e0196391): speech and, as ``ravdess-song``, song.

File names ``MM-CC-EE-II-SS-RR-AA.wav``: modality (03 audio-only), vocal channel (01 speech,
02 song), emotion, intensity, statement, repetition, actor (odd = male, even = female). The
speech and song releases both keep each actor's files in ``Actor_AA`` folders. Speakers are
``"ravdess:AA"`` for both channels, so one actor's speech and song land in the same fold.
"""

from __future__ import annotations

import re
from pathlib import Path

from trainer.corpora.base import Clip, CorpusError, SkipLog, audio_files, finish, require_folder
from trainer.labels import RAVDESS_EMOTIONS

#: ``MM-CC-EE-II-SS-RR-AA``: modality, vocal channel, emotion, intensity, statement, repetition, actor.
RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.(wav|flac)$", re.IGNORECASE)
RAVDESS_AUDIO_ONLY = "03"
RAVDESS_SPEECH = "01"
RAVDESS_SONG = "02"
#: The song release has emotions 01..06 only (no disgust, no surprise).
RAVDESS_SONG_EMOTIONS = ("01", "02", "03", "04", "05", "06")
#: Intensity field II -> :attr:`Clip.intensity` (neutral has normal only).
RAVDESS_INTENSITIES = {"01": "normal", "02": "strong"}


def parse_ravdess_name(name: str, channel: str = RAVDESS_SPEECH) -> tuple[str, str] | None:
    """``(label, actor)`` for an audio-only file name of vocal ``channel`` (``"01"`` speech,
    ``"02"`` song), such as ``03-01-05-02-01-01-12.wav``.

    Returns ``None`` for other RAVDESS files (the other channel, video) and for names that are not
    RAVDESS. Raises :class:`CorpusError` for a file of the channel with an unknown emotion code.
    """
    match = RAVDESS_NAME.match(name)
    if not match:
        return None
    modality, file_channel, emotion, *_, actor, _ext = match.groups()
    if modality != RAVDESS_AUDIO_ONLY or file_channel != channel:
        return None
    known = RAVDESS_EMOTIONS if channel == RAVDESS_SPEECH else RAVDESS_SONG_EMOTIONS
    if emotion not in known:
        raise CorpusError(f"{name}: unknown RAVDESS emotion code: expected {min(known)}..{max(known)}, got {emotion}")
    return RAVDESS_EMOTIONS[emotion], actor


def _load(root: str | Path, channel: str, kind: str) -> list[Clip]:
    root = require_folder(kind, root)
    clips, skipped = [], SkipLog(kind)
    for path in audio_files(root):
        try:
            parsed = parse_ravdess_name(path.name, channel)
        except CorpusError as exc:
            skipped.skip(str(exc).split(": ", 1)[1], path)
            continue
        if parsed is None:
            if not RAVDESS_NAME.match(path.name):
                skipped.skip("not a RAVDESS name", path)
            continue
        label, actor = parsed
        gender = "male" if int(actor) % 2 else "female"
        intensity = RAVDESS_INTENSITIES.get(RAVDESS_NAME.match(path.name).group(4))
        if intensity is None:
            skipped.skip("unknown RAVDESS intensity code (expected 01 normal, 02 strong)", path)
            continue
        clips.append(Clip(path=path, label=label, speaker=f"ravdess:{actor}", corpus=kind, gender=gender,
                          intensity=intensity))
    what = "speech" if channel == RAVDESS_SPEECH else "song"
    return finish(kind, clips, skipped, root, f"RAVDESS {what} files 03-{channel}-EE-II-SS-RR-AA.wav|.flac")


def load_ravdess(root: str | Path) -> list[Clip]:
    """All RAVDESS audio-only speech clips (``03-01-*.wav`` or ``.flac``) under ``root``, recursively.

    Works on the original 48 kHz WAV release and on resampled FLAC copies. Clips are sorted by
    path; ``speaker`` is ``"ravdess:AA"``, ``gender`` from the actor's parity, ``intensity``
    ``"normal"``/``"strong"`` from the intensity field (01/02; other codes are skipped, logged). Raises
    :class:`CorpusError` if ``root`` is not a folder or holds no RAVDESS speech file.
    """
    try:
        return _load(root, RAVDESS_SPEECH, "ravdess")
    except CorpusError as exc:
        if "no usable clips" in str(exc):
            raise CorpusError(f"ravdess: no RAVDESS speech files (03-01-EE-II-SS-RR-AA.wav|.flac) under {root}") from None
        raise


def load_ravdess_song(root: str | Path) -> list[Clip]:
    """RAVDESS song clips (modality 03, vocal channel 02: ``03-02-*.wav``, the ``Audio_Song_Actors``
    release, ``Actor_AA`` folders) under ``root``; corpus ``"ravdess-song"``, speakers ``"ravdess:AA"``."""
    return _load(root, RAVDESS_SONG, "ravdess-song")
