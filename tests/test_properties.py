"""Property tests (hypothesis) for the data layer and the metrics, each against an independent
brute-force reference.  ``max_examples`` is kept modest so the file runs in a few seconds."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earec_core.data.sequences import Interaction, k_core, leave_one_out, related_items
from earec_core.errors import DataError
from earec_core.metrics import evaluate, metrics_from_ranks, target_ranks

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------------------- k-core

logs = st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7), st.integers(0, 3)), max_size=60)


def as_interactions(log) -> list[Interaction]:
    return [Interaction(user=f"u{u}", item=f"i{i}", timestamp=float(t), order=n) for n, (u, i, t) in enumerate(log)]


def reference_k_core(xs: list[Interaction], k: int) -> set[int]:
    """The maximal k-core by peeling one violating user or item at a time (orders of the kept rows)."""
    alive = {x.order for x in xs}
    by_order = {x.order: x for x in xs}
    changed = True
    while changed:
        changed = False
        users = Counter(by_order[o].user for o in alive)
        items = Counter(by_order[o].item for o in alive)
        for o in sorted(alive):
            x = by_order[o]
            if users[x.user] < k or items[x.item] < k:
                bad_user = users[x.user] < k
                alive = {p for p in alive if (by_order[p].user != x.user if bad_user else by_order[p].item != x.item)}
                changed = True
                break
    return alive


@SETTINGS
@given(log=logs, k=st.integers(1, 4))
def test_k_core_is_the_maximal_fixpoint(log, k):
    xs = as_interactions(log)
    expected = reference_k_core(xs, k)
    if not expected:
        with pytest.raises(DataError, match="lower --k-core"):
            k_core(xs, k)
        return
    kept = k_core(xs, k)
    assert {x.order for x in kept} == expected  # the unique maximal k-core, not a smaller one
    assert [x.order for x in kept] == sorted(x.order for x in kept)  # file order preserved
    assert min(Counter(x.user for x in kept).values()) >= k
    assert min(Counter(x.item for x in kept).values()) >= k
    assert k_core(kept, k) == kept  # idempotent: filtering the result again changes nothing


# ---------------------------------------------------------------------------------- leave-one-out

sequences = st.lists(st.lists(st.integers(1, 9), max_size=9), max_size=12)


@SETTINGS
@given(seqs=sequences)
def test_leave_one_out_invariants(seqs):
    usable = [s for s in seqs if len(s) >= 3]
    if not usable:
        with pytest.raises(DataError):
            leave_one_out(seqs, n_items=9)
        return
    s = leave_one_out(seqs, n_items=9)
    assert len(s.train) == len(s.valid) == len(s.test) == len(usable)
    for full, train, (vh, vt), (th, tt) in zip(usable, s.train, s.valid, s.test):
        assert train + [vt, tt] == full  # nothing lost, nothing reordered
        assert vh == train and th == train + [vt]  # the test history includes the validation item
        assert len(train) >= 1


@SETTINGS
@given(seqs=sequences, n_related=st.integers(1, 4), window=st.integers(1, 3))
def test_related_items_never_mention_held_out_only_items(seqs, n_related, window):
    if not any(len(x) >= 3 for x in seqs):
        return
    s = leave_one_out(seqs, n_items=9)
    in_train = {i for t in s.train for i in t}
    rel = related_items(s.train, n_related, window=window)
    assert set(rel) <= in_train
    for item, others in rel.items():
        assert set(others) <= in_train  # an item seen only at valid/test positions never appears
        assert item not in others and len(others) <= n_related and len(set(others)) == len(others)


# ---------------------------------------------------------------------------------------- metrics


@st.composite
def ranking_problems(draw):
    n_items = draw(st.integers(1, 12))
    n_users = draw(st.integers(1, 6))
    scores = [[draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, -1.0])) for _ in range(n_items + 1)] for _ in range(n_users)]
    examples = []
    for _ in range(n_users):
        history = draw(st.lists(st.integers(1, n_items), max_size=n_items, unique=True))
        target = draw(st.integers(1, n_items))
        examples.append((history, target))
    ks = draw(st.lists(st.integers(1, n_items), min_size=1, max_size=3, unique=True))
    return n_items, scores, examples, ks


def sorted_position_rank(scores: list[float], target: int, history: list[int]) -> int:
    """Reference by sorting: candidates = every real item not in the history (the target always
    included); ties put the target after all items of equal score (pessimistic)."""
    candidates = [i for i in range(1, len(scores)) if i == target or i not in set(history)]
    order = sorted(candidates, key=lambda i: (-scores[i], i == target))
    return order.index(target)


@SETTINGS
@given(problem=ranking_problems(), batch_size=st.integers(1, 4))
def test_ranks_and_metrics_match_a_sorting_reference(problem, batch_size):
    n_items, scores, examples, ks = problem
    table = torch.tensor(scores)
    served = [0]

    def score_fn(histories):
        out = table[served[0] : served[0] + len(histories)]
        served[0] += len(histories)
        return out

    metrics, ranks = evaluate(score_fn, examples, n_items, ks, batch_size=batch_size)
    expected = [sorted_position_rank(scores[u], t, h) for u, (h, t) in enumerate(examples)]
    assert ranks.tolist() == expected
    for k in ks:
        hr = sum(r < k for r in expected) / len(expected)
        ndcg = sum(1 / math.log2(r + 2) for r in expected if r < k) / len(expected)
        assert metrics[f"HR@{k}"] == pytest.approx(hr)
        assert metrics[f"NDCG@{k}"] == pytest.approx(ndcg)
        assert metrics[f"NDCG@{k}"] <= metrics[f"HR@{k}"] + 1e-9


@SETTINGS
@given(problem=ranking_problems(), shift=st.sampled_from([-3.0, 0.0, 10.0]), seed=st.integers(0, 100))
def test_ranks_ignore_score_shift_and_item_relabelling(problem, shift, seed):
    n_items, scores, examples, _ = problem
    table = torch.tensor(scores)
    histories = [h for h, _ in examples]
    targets = torch.tensor([t for _, t in examples])
    base = target_ranks(table, targets, histories)
    assert torch.equal(target_ranks(table + shift, targets, histories), base)
    # relabel items by a permutation: same scores, same targets and histories under new ids
    perm = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed)) + 1  # old i -> new perm[i-1]
    relabelled = torch.empty_like(table)
    relabelled[:, 0] = table[:, 0]
    relabelled[:, perm] = table[:, 1:]
    new_targets = perm[targets - 1]
    new_histories = [[int(perm[i - 1]) for i in h] for h in histories]
    assert torch.equal(target_ranks(relabelled, new_targets, new_histories), base)
    assert (base <= n_items - 1).all() and (base >= 0).all()


@SETTINGS
@given(ranks=st.lists(st.integers(0, 30), min_size=1, max_size=20))
def test_metrics_are_monotone_in_k(ranks):
    m = metrics_from_ranks(torch.tensor(ranks), ks=(1, 5, 10, 31))
    assert m["HR@1"] <= m["HR@5"] <= m["HR@10"] <= m["HR@31"] == 1.0
    assert m["NDCG@1"] <= m["NDCG@5"] <= m["NDCG@10"] <= m["NDCG@31"] <= 1.0
