"""What each corpus kind's licence allows, and so what a model trained on it may be used for.

A model trained on a corpus inherits its terms (../shared/data/README.md, "Licences and the shipped
model"): RAVDESS, TESS, TurEV-DB, nEMO and EmoSpeech are non-commercial (CC BY-NC-*); SAVEE, EMOVO,
ASED and CORAA-SER are released for research only; CREMA-D is ODbL 1.0 (contents DbCL 1.0), which
allows any use with attribution. ``ser-train fit`` writes each training corpus's row of
:data:`LICENCES` into the manifest's ``training.corpora`` and the most restrictive term of all into
``training.use`` (:func:`most_restrictive_use`). Corpora whose terms the trainer cannot know (Dusha,
whose release this table does not cover, and ``csv``: your own data) count as :data:`UNKNOWN`, the
most restrictive: whoever trains on them must check their rights themselves.

This is a summary for people deciding what a model may be used for, not legal advice; each corpus's
own licence text decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: Use terms, from the least to the most restrictive (:data:`USE_ORDER`).
ANY_USE = "any use, with attribution"
NON_COMMERCIAL = "non-commercial use only"
RESEARCH_ONLY = "non-commercial research use only"
UNKNOWN = "unknown: check the corpus's licence before any use"
USE_ORDER = (ANY_USE, NON_COMMERCIAL, RESEARCH_ONLY, UNKNOWN)


@dataclass(frozen=True)
class CorpusLicence:
    """One corpus kind: its display ``name``, spoken ``language``, ``licence`` as released, and the
    ``use`` it allows (one of :data:`USE_ORDER`)."""

    name: str
    language: str
    licence: str
    use: str


_RAVDESS = ("English (North American)", "CC BY-NC-SA 4.0", NON_COMMERCIAL)
_CREMA_D = ("English (North American)", "ODbL 1.0 / DbCL 1.0 (database / contents)", ANY_USE)

#: Corpus kind (a key of :data:`trainer.corpora.CORPORA`) -> its licence.
LICENCES: dict[str, CorpusLicence] = {
    "ravdess": CorpusLicence("RAVDESS speech", *_RAVDESS),
    "ravdess-song": CorpusLicence("RAVDESS song", *_RAVDESS),
    "crema-d": CorpusLicence("CREMA-D", *_CREMA_D),
    "crema-d-perceived": CorpusLicence("CREMA-D (perceived labels)", *_CREMA_D),
    "tess": CorpusLicence("TESS", "English (Canadian)", "CC BY-NC-ND 4.0", NON_COMMERCIAL),
    "savee": CorpusLicence("SAVEE", "English (British)", "research use (no open licence)", RESEARCH_ONLY),
    "turev-db": CorpusLicence("TurEV-DB", "Turkish", "CC BY-NC-ND 4.0", NON_COMMERCIAL),
    "ased": CorpusLicence("ASED", "Amharic", "none stated (a research release of Northwest University)",
                          RESEARCH_ONLY),
    "nemo": CorpusLicence("nEMO", "Polish", "CC BY-NC-SA 4.0", NON_COMMERCIAL),
    "emovo": CorpusLicence("EMOVO", "Italian", "research use (Fondazione Ugo Bordoni; no corpus licence in the "
                                               "source repository)", RESEARCH_ONLY),
    "emospeech": CorpusLicence("EmoSpeech (Indian EmoSpeech Command)", "Hindi and English commands (India)",
                               "CC BY-NC-SA 4.0", NON_COMMERCIAL),
    "coraa-ser": CorpusLicence("CORAA-SER", "Portuguese (Brazilian)", "research use (CORAA project; the source "
                                                                       "repository's licence covers its code only)",
                               RESEARCH_ONLY),
    "dusha": CorpusLicence("Dusha", "Russian", "not recorded here", UNKNOWN),
    "csv": CorpusLicence("a corpus listed in a CSV file", "not recorded", "not recorded: the data's owner decides",
                         UNKNOWN),
}


def licence_of(kind: str) -> CorpusLicence:
    """The :class:`CorpusLicence` of corpus ``kind``; an unknown kind gets :data:`UNKNOWN` terms."""
    return LICENCES.get(kind) or CorpusLicence(kind, "not recorded", "not recorded", UNKNOWN)


def corpus_record(kind: str) -> dict[str, str]:
    """``{"kind", "name", "language", "licence", "use"}`` of corpus ``kind``, as the manifest lists it."""
    entry = licence_of(kind)
    return {"kind": kind, "name": entry.name, "language": entry.language, "licence": entry.licence,
            "use": entry.use}


def most_restrictive_use(kinds: Iterable[str]) -> str:
    """The most restrictive :data:`USE_ORDER` term over the corpus ``kinds`` (a model trained on them
    may be used for no more). With a corpus of unknown terms, says which ones to check. Raises
    ``ValueError`` for no kinds."""
    kinds = sorted(set(kinds))
    if not kinds:
        raise ValueError("expected at least one corpus kind, got none")
    uses = {kind: licence_of(kind).use for kind in kinds}
    worst = max(uses.values(), key=USE_ORDER.index)
    if worst != UNKNOWN:
        return worst
    unknown = [kind for kind, use in uses.items() if use == UNKNOWN]
    known = [use for use in uses.values() if use != UNKNOWN]
    rest = f"; the other corpora allow {max(known, key=USE_ORDER.index)}" if known else ""
    return f"unknown: check the licence of {', '.join(unknown)} before any use{rest}"
