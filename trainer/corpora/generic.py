"""A generic corpus: a CSV file ``path,label[,speaker][,gender]`` with a header line.

``path`` is relative to the CSV's folder (absolute paths are kept); ``label`` is taken as the
native label (map it with ``--labels`` if it uses RAVDESS's words: neutral, calm, happy, sad,
angry, fearful, disgust, surprised); ``speaker`` (optional) names the speaker, prefixed with the
CSV's stem to keep it unique across corpora; ``gender`` (optional) is ``female`` or ``male``.
Without a speaker column each clip is its own speaker, logged: folds are then clip-level, not
speaker-independent.
"""

from __future__ import annotations

import csv
from pathlib import Path

from trainer.corpora.base import Clip, CorpusError, SkipLog, finish, logger


def load_csv(source: str | Path) -> list[Clip]:
    """Clips listed in the CSV file ``source`` (see the module docstring). Rows whose audio is
    missing or whose label is empty are skipped with a logged reason; raises :class:`CorpusError`
    if the file is missing, lacks the ``path``/``label`` columns or lists nothing usable."""
    kind = "csv"
    source = Path(source)
    if not source.is_file():
        raise CorpusError(f"csv: expected a CSV file with a path,label[,speaker] header, got {source}")
    with open(source, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "path" not in columns or "label" not in columns:
            raise CorpusError(f"csv: {source}: expected a header with path,label[,speaker], got {reader.fieldnames}")
        rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    clips, skipped = [], SkipLog(kind)
    has_speaker = "speaker" in columns
    for number, row in enumerate(rows, 2):
        path = source.parent / row["path"]
        if not row["label"]:
            skipped.skip("empty label", f"{source}:{number}")
            continue
        if not path.is_file():
            skipped.skip("audio file missing", path)
            continue
        speaker = f"csv:{source.stem}:{row['speaker'] if has_speaker and row['speaker'] else row['path']}"
        gender = row.get("gender", "").lower() or None
        clips.append(Clip(path=path, label=row["label"], speaker=speaker, corpus=kind,
                          gender=gender if gender in ("female", "male") else None))
    if clips and not has_speaker:
        logger.warning("csv: %s has no speaker column: every clip is its own speaker (folds are not "
                       "speaker-independent)", source)
    return finish(kind, clips, skipped, source, "rows path,label with existing audio")
