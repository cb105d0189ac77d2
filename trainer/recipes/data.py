"""Data preparation shared by the commands: clips of the corpora, speakers held out of everything, silent
clips dropped (with their reason logged)."""

from __future__ import annotations

import logging

import numpy as np

from edge.dsp.vad import log_energy_to_dbfs
from trainer.config import FEATURES, UsageError
from trainer.corpora import SILENCE_PEAK_DBFS, Clip, load_corpus

logger = logging.getLogger("trainer")


def load_clips(corpora) -> list[Clip]:
    """Every clip of ``corpora`` (``(kind, root)`` pairs), each corpus logged.

    :raises trainer.corpora.CorpusError: for a missing or empty corpus.
    """
    clips = []
    for kind, root in corpora:
        loaded = load_corpus(kind, root)
        logger.info("corpus %s: %d clips, %d speakers from %s", kind, len(loaded), len({c.speaker for c in loaded}), root)
        clips.extend(loaded)
    return clips


def without_speakers(loaded: list, held_out: set[str]) -> list:
    """``loaded`` clips without those of the ``held_out`` speakers (:func:`speaker_set`; empty: all of them).

    :raises UsageError: for a speaker with no clips in ``loaded``.
    """
    if not held_out:
        return loaded
    unknown = held_out - {c.speaker for c in loaded}
    if unknown:
        raise UsageError(f"--hold-out-speakers: no clips of {', '.join(sorted(unknown))} in the corpora")
    kept = [c for c in loaded if c.speaker not in held_out]
    logger.info("held out of everything: %s (%d clips)", ", ".join(sorted(held_out)), len(loaded) - len(kept))
    return kept


def drop_silent(feats, threshold_dbfs: float | None = None):
    """Clips whose loudest frame is below ``threshold_dbfs`` (default ``trainer.corpora.SILENCE_PEAK_DBFS``;
    digital silence, such as CREMA-D's ``1076_MTI_SAD_XX.wav``) are left out, each logged with its reason."""
    threshold_dbfs = SILENCE_PEAK_DBFS if threshold_dbfs is None else threshold_dbfs

    kept = []
    for f in feats:
        peak = float(log_energy_to_dbfs(f.log_energy, FEATURES).max()) if f.log_energy.size else -np.inf
        if peak < threshold_dbfs:
            logger.warning("skipped %s: silent (loudest frame %.0f dBFS < %.0f dBFS)", f.clip.path, peak, threshold_dbfs)
        else:
            kept.append(f)
    return kept
