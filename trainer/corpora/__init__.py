"""Emotional speech corpora as lists of :class:`Clip`; one module, one loader per corpus kind.

``CORPORA`` maps the ``KIND`` of the command line's ``--corpus KIND=PATH`` to its loader:

=====================  =========================================================================
``ravdess``            RAVDESS speech, ``03-01-EE-II-SS-RR-AA.wav`` (:mod:`.ravdess`)
``ravdess-song``       RAVDESS song, ``03-02-EE-II-SS-RR-AA.wav`` in ``Actor_AA`` folders
``crema-d``            CREMA-D acted labels, ``AudioWAV/1001_DFA_ANG_XX.wav`` (:mod:`.crema_d`)
``crema-d-perceived``  CREMA-D with the crowd's voice-only majority vote as label
``tess``               TESS, ``OAF_angry/OAF_back_angry.wav`` (:mod:`.tess`)
``savee``              SAVEE, ``DC_a01.wav`` or ``AudioData/DC/a01.wav`` (:mod:`.savee`)
``turev-db``           TurEV-DB (Turkish), ``Angry/1234_kz_acik.wav`` (:mod:`.turev_db`)
``dusha``              Dusha, from its JSONL/TSV manifests (:mod:`.dusha`)
``csv``                any corpus listed as ``path,label[,speaker]`` (:mod:`.generic`)
=====================  =========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from trainer.corpora.base import SILENCE_PEAK_DBFS, Clip, CorpusError, is_silent, silence_reason
from trainer.corpora.crema_d import DEMO_SPEAKERS, load_crema_d, load_crema_d_perceived, parse_crema_d_name
from trainer.corpora.dusha import load_dusha
from trainer.corpora.generic import load_csv
from trainer.corpora.ravdess import load_ravdess, load_ravdess_song, parse_ravdess_name
from trainer.corpora.savee import load_savee, parse_savee_path
from trainer.corpora.tess import load_tess, parse_tess_path
from trainer.corpora.turev_db import load_turev_db, parse_turev_db_path

CORPORA: dict[str, Callable[[str | Path], list[Clip]]] = {
    "ravdess": load_ravdess,
    "ravdess-song": load_ravdess_song,
    "crema-d": load_crema_d,
    "crema-d-perceived": load_crema_d_perceived,
    "tess": load_tess,
    "savee": load_savee,
    "turev-db": load_turev_db,
    "dusha": load_dusha,
    "csv": load_csv,
}


def load_corpus(kind: str, root: str | Path) -> list[Clip]:
    """Clips of corpus ``kind`` (a key of :data:`CORPORA`) under ``root``; raises :class:`CorpusError`."""
    if kind not in CORPORA:
        raise CorpusError(f"unknown corpus kind: expected one of {', '.join(sorted(CORPORA))}, got {kind!r}")
    return CORPORA[kind](root)


__all__ = [
    "CORPORA", "DEMO_SPEAKERS", "SILENCE_PEAK_DBFS", "Clip", "CorpusError", "is_silent", "load_corpus", "load_crema_d",
    "load_crema_d_perceived", "load_csv", "load_dusha", "load_ravdess", "load_ravdess_song", "load_savee",
    "load_tess", "load_turev_db", "parse_crema_d_name", "parse_ravdess_name", "parse_savee_path", "parse_tess_path",
    "parse_turev_db_path", "silence_reason",
]
