"""Dusha (Kondratenko et al. 2022, arXiv:2212.12266), Russian emotional speech, from its published
manifests (github.com/salute-developers/golos, ``dusha/README.md`` and
``dusha/data_processing/utils/aggregation.py``).

Two manifest forms, JSONL (one object per line) or TSV (a header line, tab-separated):

* the raw per-annotator manifests of the release, ``crowd_train/raw_crowd_train.jsonl`` and
  ``podcast_train/raw_podcast_train.jsonl`` (and ``*_test``), one row per annotation;
* the aggregated manifests written by its ``processing.py``,
  ``processed_dataset_090/aggregated_dataset/crowd_train.jsonl``, one row per clip.

Columns read here:

* ``audio_path`` (``wav_path`` in the aggregated TSV's header): the audio file, relative to the
  manifest's folder;
* ``emotion`` (aggregated) or, if absent, ``annotator_emo`` (raw): one of neutral, angry,
  positive, sad, other. For raw manifests the clip's label is the majority of its annotators'
  votes (rows grouped by ``hash_id``, else by ``audio_path``); tied clips are skipped;
* ``source_id``: the speaker (crowd) or podcast (podcast) the clip comes from, used as the
  speaker for speaker-independent folds; without it each clip is its own speaker (logged);
* ``golden_emo``: rows of control tasks (non-empty) are skipped, as the release's own
  experiments do (``make_exp_data``).

Not read: ``duration``, ``speaker_text``, ``speaker_emo`` (the emotion the crowd speaker was asked
to act, not the perceived one), ``annotator_id``. Dusha has no gender metadata.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from trainer.corpora.base import Clip, CorpusError, SkipLog, finish, logger
from trainer.labels import DUSHA_EMOTIONS

MANIFEST_SUFFIXES = (".jsonl", ".tsv")


def read_manifest(path: Path) -> list[dict]:
    """Rows of a JSONL or TSV manifest as dicts. Raises :class:`CorpusError` for a malformed line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        if path.suffix.lower() == ".tsv":
            return [dict(row) for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise CorpusError(f"dusha: {path}:{number}: not JSON ({exc.msg})") from None
    return rows


def manifests(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if root.is_dir():
        return sorted(p for p in root.iterdir() if p.suffix.lower() in MANIFEST_SUFFIXES and p.is_file())
    raise CorpusError(f"dusha: expected a manifest (.jsonl/.tsv) or a folder holding one, got {root}")


def load_dusha(root: str | Path) -> list[Clip]:
    """Dusha clips listed in the manifest ``root`` (or every ``.jsonl``/``.tsv`` manifest directly in
    the folder ``root``); see the module docstring for the columns. Speakers ``"dusha:<source_id>"``.
    Rows with unknown emotions, missing audio or ties are skipped with a logged reason; raises
    :class:`CorpusError` if nothing usable is found or a manifest lacks the path/emotion columns."""
    kind = "dusha"
    root = Path(root)
    found = manifests(root)
    if not found:
        raise CorpusError(f"dusha: no .jsonl or .tsv manifest in {root}")
    skipped = SkipLog(kind)
    votes: dict[str, Counter] = {}
    info: dict[str, tuple[Path, str | None]] = {}
    for manifest in found:
        rows = read_manifest(manifest)
        for row in rows:
            audio = row.get("audio_path") or row.get("wav_path")
            emotion = row.get("emotion") or row.get("annotator_emo")
            if audio is None or emotion is None:
                raise CorpusError(f"dusha: {manifest}: expected columns audio_path (or wav_path) and emotion "
                                  f"(or annotator_emo), got {sorted(row)}")
            if str(row.get("golden_emo") or "").strip():
                skipped.skip("control task (golden_emo set)", audio)
                continue
            emotion = str(emotion).strip().lower()
            if emotion not in DUSHA_EMOTIONS:
                skipped.skip(f"unknown emotion {emotion!r} (expected {', '.join(DUSHA_EMOTIONS)})", audio)
                continue
            path = (manifest.parent / audio).resolve()
            key = str(row.get("hash_id") or path)
            votes.setdefault(key, Counter())[emotion] += 1
            source = row.get("source_id")
            info.setdefault(key, (path, str(source).strip() if source not in (None, "") else None))
    clips = []
    for key, counter in votes.items():
        path, source = info[key]
        ranked = counter.most_common(2)
        if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
            skipped.skip("tied annotator votes", path)
            continue
        if not path.is_file():
            skipped.skip("audio file missing", path)
            continue
        speaker = f"dusha:{source}" if source else f"dusha:clip:{key}"
        clips.append(Clip(path=path, label=ranked[0][0], speaker=speaker, corpus=kind))
    if clips and all(":clip:" in c.speaker for c in clips):
        logger.warning("dusha: no source_id column: every clip is its own speaker (folds are not speaker-independent)")
    clips.sort(key=lambda c: str(c.path))
    return finish(kind, clips, skipped, root, "manifest rows with audio_path and emotion")
