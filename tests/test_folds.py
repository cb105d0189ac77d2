"""Speaker-independent folds across corpora (trainer/folds.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.folds import speaker_folds

RAVDESS24 = {f"ravdess:{a:02d}": 60 for a in range(1, 25)}


def check_disjoint(folds, counts):
    tested = [s for f in folds for s in f.test]
    assert sorted(tested) == sorted(counts)  # every speaker tested exactly once
    for fold in folds:
        test, train, val = set(fold.test), set(fold.train), set(fold.validation)
        assert not test & train and not test & val and not val & train
        assert test | train | val == set(counts)


def test_ravdess_protocol_kept_with_other_corpora():
    counts = dict(RAVDESS24)
    counts.update({"tess:OAF": 1400, "tess:YAF": 1398, "savee:DC": 120, "savee:JE": 120, "savee:JK": 120,
                   "savee:KL": 120})
    counts.update({f"crema-d:{a}": 70 + a % 13 for a in range(1001, 1092)})
    folds = speaker_folds(counts, 6)
    for k, fold in enumerate(folds):
        assert [s for s in fold.test if s.startswith("ravdess:")] == [f"ravdess:{a:02d}" for a in range(4 * k + 1, 4 * k + 5)]
    check_disjoint(folds, counts)
    crema = [sum(counts[s] for s in f.test if s.startswith("crema-d:")) for f in folds]
    assert max(crema) - min(crema) <= max(counts[s] for s in counts if s.startswith("crema-d:"))
    assert sorted(len([s for s in f.test if s.startswith("savee:")]) for f in folds) == [0, 0, 1, 1, 1, 1]
    assert speaker_folds(dict(reversed(list(counts.items()))), 6) == folds  # deterministic, order-free


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.tuples(st.sampled_from(["ravdess", "tess", "crema-d", "dusha"]),
                                 st.integers(1, 40)).map(lambda t: f"{t[0]}:{t[1]:02d}"),
                       st.integers(1, 300), min_size=6, max_size=60),
       st.integers(2, 6))
def test_any_corpora_mix_is_speaker_disjoint(counts, n_folds):
    folds = speaker_folds(counts, n_folds)
    check_disjoint(folds, counts)
    for fold in folds:
        assert not set(fold.validation) & set(fold.test)
        next_test = set(folds[(fold.index + 1) % n_folds].test)
        assert set(fold.validation) <= next_test


def test_too_few_speakers():
    with pytest.raises(ValueError, match="expected 2 <= folds"):
        speaker_folds(Counter({"tess:OAF": 3, "tess:YAF": 2}), 3)


def test_balanced_weights_by_clips_and_by_speakers():
    """Corpus shares go as the square root of their clips (or speakers); within a corpus every class has
    the same share, and within a (corpus, class) every clip the same weight."""
    from pathlib import Path

    import numpy as np

    from trainer.corpora.base import Clip
    from trainer.featurize import ClipFeatures
    from trainer.train import balanced_weights

    def clips(corpus, speakers, per_speaker, labels):
        return [ClipFeatures(Clip(Path(f"/{corpus}/{s}_{i}.wav"), labels[i % len(labels)], f"{corpus}:{s}", corpus),
                             np.zeros((1, 1), np.float32), np.zeros(1, np.float32))
                for s in range(speakers) for i in range(per_speaker)]

    # "big": 4 speakers x 25 clips = 100 clips, two classes 3:1; "small": 1 speaker x 25 clips, one class
    big = clips("big", 4, 25, ["angry", "angry", "angry", "sad"])
    small = clips("small", 1, 25, ["sad"])
    everything = big + small
    for by, share in (("clips", np.sqrt(100) / (np.sqrt(100) + np.sqrt(25))),
                      ("speakers", np.sqrt(4) / (np.sqrt(4) + np.sqrt(1)))):
        w = balanced_weights(everything, ("sad", "angry"), by)
        assert w.sum() == pytest.approx(1.0) and np.all(w > 0)
        assert w[: len(big)].sum() == pytest.approx(share)
        angry = np.array([c.clip.label == "angry" for c in big])
        assert w[: len(big)][angry].sum() == pytest.approx(share / 2) == w[: len(big)][~angry].sum()
        assert np.ptp(w[: len(big)][angry]) == pytest.approx(0) and np.ptp(w[len(big):]) == pytest.approx(0)
    with pytest.raises(ValueError, match="by must be"):
        balanced_weights(everything, ("sad", "angry"), "voices")


GB = 1_000_000_000


@pytest.mark.parametrize(("jobs", "available", "expected"), [
    (None, 14 * GB, 2),  # parent's 8 GB given up + 14 GB available = 22 GB: two workers of 9.5 GB
    (None, 8 * GB, 1),   # 16 GB: one worker (ten corpora on a 16 GB workstation)
    (None, None, 2),     # no /proc/meminfo: one per CPU
    (3, 14 * GB, 3),     # an explicit --jobs is kept (with a warning)
])
def test_fold_jobs_default_fits_in_memory(monkeypatch, caplog, jobs, available, expected):
    """Each fold worker holds every clip's features (8 GB here, about what the ten corpora hold with their
    variants) and the parent gives its copy up: the default number of workers is what memory holds, not one
    per CPU (which the OOM killer answered with ten corpora and two workers)."""
    from types import SimpleNamespace

    import trainer.recipes.fit as fit

    monkeypatch.setattr(fit, "available_memory_bytes", lambda: available)
    monkeypatch.setattr(fit.os, "cpu_count", lambda: 2)
    cfg = SimpleNamespace(jobs=jobs)
    with caplog.at_level("INFO", logger="trainer"):
        assert fit.fold_jobs(cfg, 10, 8 * GB) == expected
    if jobs and available:
        assert "the system may kill a worker (--jobs 2 fits)" in caplog.text
    assert fit.fold_jobs(cfg, 1, 8 * GB) == 1  # one fold: in this process


@pytest.mark.skipif(not Path("/proc/meminfo").is_file(), reason="no /proc/meminfo (not Linux)")
def test_available_memory_is_read_from_proc():
    import trainer.recipes.fit as fit

    assert 0 < fit.available_memory_bytes() <= int(Path("/proc/meminfo").read_text().split()[1]) * 1024  # MemTotal
