"""Full-ranking evaluation (earec_core.metrics) against a brute-force reference."""

from __future__ import annotations

import math
import random

import pytest
import torch

from earec_core.metrics import evaluate, metrics_from_ranks, target_ranks


def reference_rank(scores: list[float], target: int, history: list[int]) -> int:
    """Items 1..n minus the history (never the target) that score >= the target, the target excluded."""
    excluded = set(history) - {target}
    return sum(
        1 for item in range(1, len(scores)) if item != target and item not in excluded and scores[item] >= scores[target]
    )


def reference_metrics(ranks: list[int], ks) -> dict[str, float]:
    out = {}
    for k in ks:
        out[f"HR@{k}"] = sum(r < k for r in ranks) / len(ranks)
        out[f"NDCG@{k}"] = sum(1 / math.log2(r + 2) for r in ranks if r < k) / len(ranks)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_matches_brute_force_reference(seed):
    rng = random.Random(seed)
    n_items, n_users, ks = rng.randint(5, 30), rng.randint(1, 40), (1, 3, 5)
    # small integer scores so that ties are frequent
    scores = torch.randint(0, 4, (n_users, n_items + 1), generator=torch.Generator().manual_seed(seed)).float()
    examples = []
    for _ in range(n_users):
        history = rng.sample(range(1, n_items + 1), rng.randint(0, n_items - 1))
        target = rng.choice(history) if history and rng.random() < 0.3 else rng.randint(1, n_items)
        examples.append((history, target))
    expected_ranks = [reference_rank(scores[u].tolist(), t, h) for u, (h, t) in enumerate(examples)]

    for batch_size in (1, 3, 256):
        served = [0]  # rows handed out so far: the evaluator asks for users in order

        def batched(histories):
            out = scores[served[0] : served[0] + len(histories)]
            served[0] += len(histories)
            return out

        metrics, ranks = evaluate(batched, [(list(h), t) for h, t in examples], n_items, ks, batch_size=batch_size)
        assert ranks.tolist() == expected_ranks
        assert metrics == pytest.approx(reference_metrics(expected_ranks, ks))


def test_constant_scores_get_the_worst_rank():
    n_items = 12
    examples = [([], t) for t in range(1, n_items + 1)]
    metrics, ranks = evaluate(lambda h: torch.zeros(len(h), n_items + 1), examples, n_items, ks=(1, 12))
    assert ranks.tolist() == [n_items - 1] * n_items
    assert metrics["HR@1"] == 0.0
    assert metrics["HR@12"] == 1.0
    assert metrics["NDCG@12"] == pytest.approx(1 / math.log2(n_items + 1))


def test_history_items_are_excluded_but_never_the_target():
    n_items = 6
    # items 1..3 score highest; target 5 scores 0.5 (below 1..3, above 4 and 6)
    scores = torch.tensor([[9.0, 3.0, 3.0, 3.0, 0.0, 0.5, 0.0]])
    assert target_ranks(scores, torch.tensor([5]), None).item() == 3
    assert target_ranks(scores, torch.tensor([5]), [[1, 2, 3]]).item() == 0
    assert target_ranks(scores, torch.tensor([5]), [[1, 5]]).item() == 2  # re-consumed target still ranked
    # the target itself in the history does not remove it: ranking item 2 with history {1, 2}
    assert target_ranks(scores, torch.tensor([2]), [[1, 2]]).item() == 1  # ties with 3 count against it
    _, ranks = evaluate(lambda h: scores.expand(len(h), -1), [([1, 2, 3], 5), ([], 5)], n_items, ks=(1,))
    assert ranks.tolist() == [0, 3]
    _, ranks = evaluate(lambda h: scores.expand(len(h), -1), [([1, 2, 3], 5)], n_items, ks=(1,), mask_history=False)
    assert ranks.tolist() == [3]


def test_padding_column_is_never_ranked():
    scores = torch.tensor([[100.0, 1.0, 2.0, 3.0]])  # column 0 (padding) scores highest
    assert target_ranks(scores, torch.tensor([3]), None).item() == 0


def test_nan_scores_count_as_worst():
    scores = torch.tensor([[0.0, float("nan"), 1.0, 2.0]])
    assert target_ranks(scores, torch.tensor([1]), None).item() == 2


def test_cutoff_above_item_count_raises():
    with pytest.raises(ValueError, match=r"K=\[50\] exceeds the number of items \(20\)"):
        evaluate(lambda h: torch.zeros(len(h), 21), [([1], 2)], n_items=20, ks=(10, 50))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="empty"):
        evaluate(lambda h: torch.zeros(len(h), 6), [], n_items=5, ks=(1,))
    with pytest.raises(ValueError, match="out of range"):
        evaluate(lambda h: torch.zeros(len(h), 6), [([1], 6)], n_items=5, ks=(1,))
    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda h: torch.zeros(len(h), 5), [([1], 2)], n_items=5, ks=(1,))
    with pytest.raises(ValueError, match="empty"):
        metrics_from_ranks(torch.tensor([], dtype=torch.long))
