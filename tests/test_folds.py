"""Speaker-independent folds across corpora (trainer/folds.py)."""

from __future__ import annotations

from collections import Counter

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
