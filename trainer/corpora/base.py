"""What every corpus loader shares: :class:`Clip`, :class:`CorpusError` and the skip log."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("trainer.corpora")

AUDIO_SUFFIXES = (".wav", ".flac")


class CorpusError(ValueError):
    """A corpus folder or manifest that is missing or holds no usable clips. One-line message."""


@dataclass(frozen=True)
class Clip:
    """One labelled recording.

    ``label``: the corpus's native label (see :mod:`trainer.labels`). ``speaker`` is unique across
    corpora (``"ravdess:01"``, ``"tess:OAF"``). ``corpus``: the loader's kind (``"ravdess"``).
    ``gender``: ``"female"``, ``"male"`` or ``None`` when the corpus metadata does not say.
    """

    path: Path
    label: str
    speaker: str
    corpus: str
    gender: str | None = None


def audio_files(root: Path) -> list[Path]:
    """Every ``.wav``/``.flac`` file under ``root``, recursively, sorted by path."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def require_folder(kind: str, root: str | Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{kind}: expected a folder, got {root}")
    return root


class SkipLog:
    """Counts skipped files by reason and logs one line per reason (with the first example)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.reasons: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def skip(self, reason: str, example: str | Path) -> None:
        self.reasons[reason] += 1
        self.examples.setdefault(reason, str(example))

    def report(self) -> None:
        for reason, count in self.reasons.items():
            logger.warning("%s: skipped %d file(s): %s (e.g. %s)", self.kind, count, reason, self.examples[reason])

    def summary(self) -> str:
        return "; ".join(f"{n} {reason}" for reason, n in self.reasons.items()) or "nothing matched"


def finish(kind: str, clips: list[Clip], skipped: SkipLog, root: Path, expected: str) -> list[Clip]:
    """Log the skips; raise :class:`CorpusError` (one line) if no clip is usable."""
    skipped.report()
    if not clips:
        raise CorpusError(f"{kind}: no usable clips ({expected}) under {root}: {skipped.summary()}")
    return clips
