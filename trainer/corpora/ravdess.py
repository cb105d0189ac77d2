"""Emotional speech corpora as lists of :class:`Clip`; one loader per corpus kind.

``CORPORA`` maps the ``KIND`` of the command line's ``--corpus KIND=DIR`` to its loader.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainer.labels import RAVDESS_EMOTIONS


class CorpusError(ValueError):
    """A corpus folder that is missing or holds no usable clips. One-line message."""


@dataclass(frozen=True)
class Clip:
    """One labelled recording. ``speaker`` is unique across corpora (``"ravdess:01"``)."""

    path: Path
    label: str
    speaker: str
    corpus: str


#: ``MM-CC-EE-II-SS-RR-AA``: modality, vocal channel, emotion, intensity, statement, repetition, actor.
RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.(wav|flac)$", re.IGNORECASE)
RAVDESS_AUDIO_ONLY = "03"
RAVDESS_SPEECH = "01"


def parse_ravdess_name(name: str) -> tuple[str, str] | None:
    """``(label, actor)`` for an audio-only speech file name such as ``03-01-05-02-01-01-12.wav``.

    Returns ``None`` for other RAVDESS files (song, video) and for names that are not RAVDESS.
    Raises :class:`CorpusError` for a speech file with an unknown emotion code.
    """
    match = RAVDESS_NAME.match(name)
    if not match:
        return None
    modality, channel, emotion, *_, actor, _ext = match.groups()
    if modality != RAVDESS_AUDIO_ONLY or channel != RAVDESS_SPEECH:
        return None
    if emotion not in RAVDESS_EMOTIONS:
        raise CorpusError(f"{name}: unknown RAVDESS emotion code: expected 01..08, got {emotion}")
    return RAVDESS_EMOTIONS[emotion], actor


def load_ravdess(root: str | Path) -> list[Clip]:
    """All RAVDESS audio-only speech clips (``03-01-*.wav`` or ``.flac``) under ``root``, recursively.

    Works on the original 48 kHz WAV release and on resampled FLAC copies. Clips are sorted by
    path; ``speaker`` is ``"ravdess:AA"``. Raises :class:`CorpusError` if ``root`` is not a folder
    or holds no RAVDESS speech file.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"ravdess: expected a folder, got {root}")
    clips = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in (".wav", ".flac")):
        parsed = parse_ravdess_name(path.name)
        if parsed is not None and path.is_file():
            label, actor = parsed
            clips.append(Clip(path=path, label=label, speaker=f"ravdess:{actor}", corpus="ravdess"))
    if not clips:
        raise CorpusError(f"ravdess: no RAVDESS speech files (03-01-EE-II-SS-RR-AA.wav|.flac) under {root}")
    return clips


CORPORA: dict[str, Callable[[str | Path], list[Clip]]] = {"ravdess": load_ravdess}


def load_corpus(kind: str, root: str | Path) -> list[Clip]:
    """Clips of corpus ``kind`` (a key of :data:`CORPORA`) under ``root``; raises :class:`CorpusError`."""
    if kind not in CORPORA:
        raise CorpusError(f"unknown corpus kind: expected one of {', '.join(sorted(CORPORA))}, got {kind!r}")
    return CORPORA[kind](root)
