"""What every corpus loader shares: :class:`Clip`, :class:`CorpusError`, the skip log and the
silent-clip check :func:`is_silent`."""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger("trainer.corpora")

AUDIO_SUFFIXES = (".wav", ".flac")


class CorpusError(ValueError):
    """A corpus folder or manifest that is missing or holds no usable clips. One-line message."""


@dataclass(frozen=True)
class Clip:
    """One labelled recording.

    ``label``: the corpus's native label (see :mod:`trainer.labels`). ``speaker`` is unique across
    corpora (``"ravdess:01"``, ``"tess:OAF"``); where a corpus names no single speaker it is a group
    id that folds keep whole like a speaker (EmoSpeech's ``"emospeech:unknown-user"``, many people
    behind one app id; CORAA-SER's recording ``"coraa-ser:bfamcv01"``, one conversation).
    ``corpus``: the loader's kind (``"ravdess"``).
    ``gender``: ``"female"``, ``"male"`` or ``None`` when the corpus metadata does not say.
    ``intensity``: the acted intensity where the corpus names one, in its own scale: RAVDESS
    ``"normal"``/``"strong"`` (intensity field 01/02), CREMA-D ``"low"``/``"medium"``/``"high"``
    (level LO/MD/HI); ``None`` for CREMA-D's unspecified level XX and for corpora without one.
    """

    path: Path
    label: str
    speaker: str
    corpus: str
    gender: str | None = None
    intensity: str | None = None


#: A clip whose absolute peak is below this level (dBFS, 0 dBFS = full scale 1.0) holds no usable
#: speech. 16-bit PCM's smallest step is -90.3 dBFS, so -60 dBFS is about 32 steps: room tone at
#: best. The quietest real speech clip in the five corpora peaks at -44.2 dBFS (RAVDESS
#: ``03-01-04-01-02-02-09.wav``; CREMA-D -32.7, TurEV-DB -34.8, SAVEE -31.2, TESS -29.7), so the
#: threshold keeps 16 dB of margin and skips only CREMA-D's ``1076_MTI_SAD_XX.wav`` (all zeros).
SILENCE_PEAK_DBFS = -60.0


def peak_dbfs(samples: np.ndarray) -> float:
    """Absolute peak of ``samples`` in dBFS (``-inf`` for digital silence or an empty array).

    ``samples``: any shape; float audio in [-1, 1] full scale, or integer PCM, which is scaled by
    its dtype's full scale (int16 32768). Raises :class:`ValueError` for non-finite samples or a
    non-numeric dtype ("expected ..., got ...").
    """
    samples = np.asarray(samples)
    if samples.size == 0:
        return -math.inf
    if np.issubdtype(samples.dtype, np.integer):
        full_scale = float(-np.iinfo(samples.dtype).min) if np.issubdtype(samples.dtype, np.signedinteger) \
            else float(np.iinfo(samples.dtype).max)
        peak = float(np.max(np.abs(samples.astype(np.float64)))) / full_scale
    elif np.issubdtype(samples.dtype, np.floating):
        peak = float(np.max(np.abs(samples)))
        if not math.isfinite(peak):
            raise ValueError("expected finite audio samples, got NaN or infinity")
    else:
        raise ValueError(f"expected float or integer audio samples, got dtype {samples.dtype}")
    return 20.0 * math.log10(peak) if peak > 0.0 else -math.inf


def silence_reason(samples: np.ndarray, threshold_dbfs: float = SILENCE_PEAK_DBFS) -> str | None:
    """Why ``samples`` are silent, as a one-line reason to log, or ``None`` if they are not.

    ``"digital silence (every sample is zero)"`` (also for an empty array), or ``"peak -72.4 dBFS
    below -60 dBFS"``. ``samples`` as for :func:`peak_dbfs`.
    """
    peak = peak_dbfs(samples)
    if peak == -math.inf:
        return "digital silence (every sample is zero)"
    if peak < threshold_dbfs:
        return f"peak {peak:.1f} dBFS below {threshold_dbfs:g} dBFS"
    return None


def is_silent(samples: np.ndarray, threshold_dbfs: float = SILENCE_PEAK_DBFS) -> bool:
    """``True`` if ``samples`` hold no usable speech: digital silence (all zeros, or empty) or an
    absolute peak below ``threshold_dbfs`` (default :data:`SILENCE_PEAK_DBFS`, -60 dBFS; see there
    for the margin to the quietest real clips). ``samples``: any shape, float in [-1, 1] or integer
    PCM (see :func:`peak_dbfs`). Featurization skips such clips, logging :func:`silence_reason`."""
    return silence_reason(samples, threshold_dbfs) is not None


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
