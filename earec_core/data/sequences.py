"""Interactions -> chronological sequences -> k-core -> leave-one-out splits -> related items.

Leakage rule: everything derived from interactions for *training* (the recommender's training
targets, behaviour embeddings, related-item lists) sees only each user's training prefix
(all but the last two items).  The validation item is used only for early stopping and the test
item only for the final evaluation.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import DataError
from ..recommender import SequenceSplits


@dataclass(frozen=True)
class Interaction:
    """One (user, item, timestamp) event; ``order`` is its line number in the source file."""

    user: str
    item: str
    timestamp: float
    order: int


def chronological(interactions: Sequence[Interaction]) -> list[Interaction]:
    """Interactions sorted by timestamp; ties keep file order (stable sort), never item-id order."""
    return sorted(interactions, key=lambda x: (x.timestamp, x.order))


def k_core(interactions: Sequence[Interaction], k: int) -> list[Interaction]:
    """Iterative k-core filter: drop users and items with fewer than ``k`` interactions until a
    fixpoint, so no remaining user or item has fewer than ``k``.  Order is preserved.

    Raises:
        DataError: if nothing survives (with the counts before filtering).
    """
    if k < 1:
        return list(interactions)
    current = list(interactions)
    while True:
        users = Counter(x.user for x in current)
        items = Counter(x.item for x in current)
        kept = [x for x in current if users[x.user] >= k and items[x.item] >= k]
        if len(kept) == len(current):
            break
        current = kept
    if not current:
        n_users = len({x.user for x in interactions})
        n_items = len({x.item for x in interactions})
        raise DataError(
            f"{k}-core filtering left no interactions ({len(interactions)} interactions, {n_users} users, "
            f"{n_items} items before); lower --k-core"
        )
    return current


def user_sequences(interactions: Sequence[Interaction]) -> dict[str, list[str]]:
    """Per user (in first-appearance order), the item ids in chronological order."""
    seqs: dict[str, list[str]] = defaultdict(list)
    for x in chronological(interactions):
        seqs[x.user].append(x.item)
    return dict(seqs)


def leave_one_out(sequences: Sequence[Sequence[int]], n_items: int) -> SequenceSplits:
    """Leave-one-out splits of 1-based item-index sequences (see :mod:`earec_core.recommender`).

    Users with fewer than 3 items cannot give a train/valid/test triple and are left out of all
    three splits (with k >= 3 none exist).  Raises DataError if no user remains.
    """
    usable = [list(s) for s in sequences if len(s) >= 3]
    if not usable:
        raise DataError("no user has 3 or more interactions: nothing to split leave-one-out")
    if max(max(s) for s in usable) > n_items or min(min(s) for s in usable) < 1:
        raise DataError(f"item indices must lie in 1..{n_items}")
    train = [s[:-2] for s in usable]
    valid = [(s[:-2], s[-2]) for s in usable]
    test = [(s[:-1], s[-1]) for s in usable]
    return SequenceSplits(n_items=n_items, train=train, valid=valid, test=test)


def related_items(train: Sequence[Sequence[int]], n_related: int, window: int = 1) -> dict[int, list[int]]:
    """For each item, the ``n_related`` items most often consumed within ``window`` positions of it
    in the *training* sequences (symmetric co-occurrence), most frequent first, ties by first seen.

    Only training prefixes are read, so no validation or test item can leak into the lists.
    """
    counts: dict[int, Counter] = defaultdict(Counter)
    for seq in train:
        for i, a in enumerate(seq):
            for j in range(max(0, i - window), min(len(seq), i + window + 1)):
                if j != i and seq[j] != a:
                    counts[a][seq[j]] += 1
    return {a: [b for b, _ in c.most_common(n_related)] for a, c in counts.items()}


def hold_out_new_items(splits: SequenceSplits, fraction: float, seed: int) -> SequenceSplits:
    """The inductive variant of ``splits``: a seeded random ``fraction`` of the items becomes *new*.

    Every occurrence of a new item is removed from the training sequences (so from everything
    built on them: ID tables, related items, alignment samples); validation and test targets are
    kept, and so are their histories' later items (a test history may end with a new validation
    item).  Validation histories are the filtered training sequences, test histories those plus the
    validation item, as in :func:`leave_one_out`.  Returns splits with ``new_items`` set.

    Raises DataError for a fraction outside [0, 1) or one that leaves no training target.
    """
    if not 0 <= fraction < 1:
        raise DataError(f"new-item fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return splits
    items = list(range(1, splits.n_items + 1))
    random.Random(seed).shuffle(items)
    new = frozenset(items[: max(1, round(fraction * len(items)))])
    train = [[i for i in seq if i not in new] for seq in splits.train]
    if not any(len(seq) >= 2 for seq in train):
        raise DataError(f"holding out {len(new)} new items leaves no training sequence with a target")
    valid = [(seq, target) for seq, (_, target) in zip(train, splits.valid)]
    test = [(seq + [v_target], target) for seq, (_, v_target), (_, target) in zip(train, splits.valid, splits.test)]
    return SequenceSplits(n_items=splits.n_items, train=train, valid=valid, test=test, new_items=new)


def sparse_training(splits: SequenceSplits, fraction: float, seed: int) -> SequenceSplits:
    """The sparse-data variant of ``splits``: only a seeded random ``fraction`` of the users keep
    their training sequence (the others' become empty: no training target, no related-item pair, no
    ID-table update).  Validation and test examples, histories included, are unchanged, so every
    user is still evaluated -- on a model trained on ``fraction`` of the users.

    Raises DataError for a fraction outside (0, 1] or one that keeps no training target.
    """
    if not 0 < fraction <= 1:
        raise DataError(f"training-user fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return splits
    users = list(range(len(splits.train)))
    random.Random(seed).shuffle(users)
    keep = set(users[: max(1, round(fraction * len(users)))])
    train = [seq if u in keep else [] for u, seq in enumerate(splits.train)]
    if not any(len(seq) >= 2 for seq in train):
        raise DataError(f"keeping {len(keep)} training users leaves no training sequence with a target")
    return SequenceSplits(n_items=splits.n_items, train=train, valid=splits.valid, test=splits.test,
                          new_items=splits.new_items)
