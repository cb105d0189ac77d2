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
``ased``               ASED (Amharic), ``01Neutral/n1-01-01-01-01.wav``; speakers ``ased:NN`` (:mod:`.ased`)
``nemo``               nEMO (Polish), ``samples/EB0_anger_1.wav`` (:mod:`.nemo`)
``emovo``              EMOVO (Italian, 48 kHz stereo), ``data/EMOVO/f1/dis-f1-b1.wav`` (:mod:`.emovo`)
``emospeech``          EmoSpeech commands, ``House/bacho-safe-calm-<time>-<user>.wav``; the unknown
                       user is the group ``emospeech:unknown-user`` (:mod:`.emospeech`)
``coraa-ser``          CORAA-SER (natural Brazilian Portuguese), ``neutral/bfamcv01_segment163_neutral.wav``;
                       labels neutral / non-neutral, the recording is the group id (:mod:`.coraa_ser`)
``dusha``              Dusha, from its JSONL/TSV manifests (:mod:`.dusha`)
``csv``                any corpus listed as ``path,label[,speaker]`` (:mod:`.generic`)
=====================  =========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from trainer.corpora.ased import load_ased, parse_ased_name
from trainer.corpora.base import SILENCE_PEAK_DBFS, Clip, CorpusError, is_silent, silence_reason
from trainer.corpora.coraa_ser import load_coraa_ser, parse_coraa_ser_name
from trainer.corpora.crema_d import DEMO_SPEAKERS, load_crema_d, load_crema_d_perceived, parse_crema_d_name
from trainer.corpora.dusha import load_dusha
from trainer.corpora.emospeech import UNKNOWN_USER, load_emospeech, parse_emospeech_name
from trainer.corpora.emovo import load_emovo, parse_emovo_name
from trainer.corpora.generic import load_csv
from trainer.corpora.nemo import load_nemo, parse_nemo_name
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
    "ased": load_ased,
    "nemo": load_nemo,
    "emovo": load_emovo,
    "emospeech": load_emospeech,
    "coraa-ser": load_coraa_ser,
    "dusha": load_dusha,
    "csv": load_csv,
}


def load_corpus(kind: str, root: str | Path) -> list[Clip]:
    """Clips of corpus ``kind`` (a key of :data:`CORPORA`) under ``root``; raises :class:`CorpusError`."""
    if kind not in CORPORA:
        raise CorpusError(f"unknown corpus kind: expected one of {', '.join(sorted(CORPORA))}, got {kind!r}")
    return CORPORA[kind](root)


__all__ = [
    "CORPORA", "DEMO_SPEAKERS", "SILENCE_PEAK_DBFS", "UNKNOWN_USER", "Clip", "CorpusError", "is_silent", "load_ased",
    "load_coraa_ser", "load_corpus", "load_crema_d", "load_crema_d_perceived", "load_csv", "load_dusha",
    "load_emospeech", "load_emovo", "load_nemo", "load_ravdess", "load_ravdess_song", "load_savee", "load_tess",
    "load_turev_db", "parse_ased_name", "parse_coraa_ser_name", "parse_crema_d_name", "parse_emospeech_name",
    "parse_emovo_name", "parse_nemo_name", "parse_ravdess_name", "parse_savee_path", "parse_tess_path",
    "parse_turev_db_path", "silence_reason",
]
