"""Speaker-independent folds: every speaker's clips are in exactly one test fold.

For RAVDESS's 24 actors and 6 folds, fold k (0-based) holds out actors 4k+1..4k+4, the usual
6-fold actor-held-out protocol. Early-stopping validation speakers come from the training
speakers of the fold, never from its test speakers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fold:
    """Disjoint speaker sets of one fold. ``validation`` may be empty (no early stopping)."""

    index: int
    test: tuple[str, ...]
    train: tuple[str, ...]
    validation: tuple[str, ...]


def speaker_folds(speakers, n_folds: int = 6, n_validation: int = 2) -> list[Fold]:
    """Split the sorted distinct ``speakers`` into ``n_folds`` contiguous groups of near-equal size.

    Fold k tests on group k. Its validation speakers are the first ``n_validation`` speakers of
    group k+1 (cyclically), which for RAVDESS is one male (odd) and one female (even) actor; they
    are removed from the fold's training speakers. With fewer than ``n_validation + 1`` training
    speakers the validation set is empty. Raises ``ValueError`` if there are fewer speakers than folds.
    """
    ordered = sorted(set(speakers))
    if n_folds < 2 or len(ordered) < n_folds:
        raise ValueError(f"expected 2 <= folds <= {len(ordered)} speakers, got {n_folds} folds")
    bounds = [round(i * len(ordered) / n_folds) for i in range(n_folds + 1)]
    groups = [ordered[bounds[i] : bounds[i + 1]] for i in range(n_folds)]
    folds = []
    for k, group in enumerate(groups):
        rest = [s for s in ordered if s not in group]
        validation = []
        if len(rest) > n_validation:
            validation = groups[(k + 1) % n_folds][:n_validation]
        train = [s for s in rest if s not in validation]
        folds.append(Fold(k, tuple(group), tuple(train), tuple(validation)))
    return folds


def validation_split(speakers, n_validation: int = 2) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(train, validation)`` of ``speakers`` for a model trained on all of them (no test fold)."""
    ordered = sorted(set(speakers))
    if len(ordered) <= n_validation:
        return tuple(ordered), ()
    return tuple(ordered[n_validation:]), tuple(ordered[:n_validation])
