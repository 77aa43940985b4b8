"""Full-ranking evaluation (earec_core.metrics) against a brute-force reference."""

from __future__ import annotations

import math
import random

import pytest
import torch

from earec_core.metrics import chunked_target_ranks, chunked_topk, evaluate, metrics_from_ranks, target_ranks
from earec_core.recommender import Recommender


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


# ---------------------------------------------------------------- chunked path (vectors, huge catalogs)


def random_problem(seed: int, n_items: int, n_users: int, integer: bool):
    """User/item vectors (small integers: exact products and many ties; else floats) and examples."""
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    if integer:
        users = torch.randint(-2, 3, (n_users, 4), generator=gen).float()
        items = torch.randint(-2, 3, (n_items + 1, 4), generator=gen).float()
    else:
        users, items = torch.randn(n_users, 8, generator=gen), torch.randn(n_items + 1, 8, generator=gen)
    examples = []
    for _ in range(n_users):
        history = rng.sample(range(1, n_items + 1), rng.randint(0, n_items - 1))
        target = rng.choice(history) if history and rng.random() < 0.3 else rng.randint(1, n_items)
        examples.append((history, target))
    return users, items, examples


@pytest.mark.parametrize("integer", [True, False], ids=["ties", "floats"])
@pytest.mark.parametrize("seed", range(4))
def test_chunked_ranks_equal_dense_ranks(seed, integer):
    users, items, examples = random_problem(seed, n_items=37, n_users=23, integer=integer)
    if integer:
        items[5] = float("nan")  # a NaN item scores worst in both paths
        users[3, 0] = float("nan")  # a NaN user: every score NaN, the target gets the worst rank
    histories = [h for h, _ in examples]
    targets = torch.tensor([t for _, t in examples])
    dense = target_ranks(users @ items.T, targets, histories)
    if integer:  # the dense path itself agrees with the brute-force reference
        scores = torch.nan_to_num(users @ items.T, nan=-math.inf)
        assert dense.tolist() == [reference_rank(scores[u].tolist(), t, h) for u, (h, t) in enumerate(examples)]
    for chunk_size in (1, 4, 10, 37, 1000):
        assert torch.equal(chunked_target_ranks(users, items, targets, histories, chunk_size), dense)
    unmasked = target_ranks(users @ items.T, targets, None)
    assert torch.equal(chunked_target_ranks(users, items, targets, None, chunk_size=6), unmasked)


@pytest.mark.parametrize("k", [1, 5, 29])
def test_chunked_topk_equals_torch_topk_of_the_dense_matrix(k):
    users, items, examples = random_problem(7, n_items=29, n_users=11, integer=False)
    dense = (users @ items.T)[:, 1:]  # padding column never recommended
    expected_scores, expected_cols = dense.topk(k, dim=1)
    for chunk_size in (1, 3, 8, 29, 100):
        scores, top = chunked_topk(users, items, k, chunk_size=chunk_size)
        assert torch.equal(top, expected_cols + 1)
        torch.testing.assert_close(scores, expected_scores)  # a chunk's product may round differently
    # excluding each user's history: the same as -inf in the dense matrix
    histories = [h for h, _ in examples]
    masked = dense.clone()
    for row, hist in enumerate(histories):
        masked[row, [i - 1 for i in hist]] = -math.inf
    expected_scores, expected_cols = masked.topk(k, dim=1)
    scores, top = chunked_topk(users, items, k, exclude=histories, chunk_size=4)
    finite = torch.isfinite(expected_scores)  # order among -inf leftovers is unspecified
    assert torch.equal(top[finite], expected_cols[finite] + 1)
    torch.testing.assert_close(scores, expected_scores)
    assert not any(set(top[r][torch.isfinite(scores[r])].tolist()) & set(h) for r, h in enumerate(histories))


def test_chunked_helpers_reject_bad_arguments():
    users, items = torch.zeros(2, 3), torch.zeros(6, 3)
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_target_ranks(users, items, torch.tensor([1, 2]), None, chunk_size=0)
    with pytest.raises(ValueError, match=r"must be \(batch, hidden\)"):
        chunked_target_ranks(users, torch.zeros(6, 4), torch.tensor([1, 2]), None)
    with pytest.raises(ValueError, match=r"k=6 must be between 1 and the number of items \(5\)"):
        chunked_topk(users, items, 6)


class SumOfItems(Recommender):
    """A factorised recommender: user vector = sum of the history's rows of ``W``; item vectors ``V``."""

    name = "sum-of-items"

    def __init__(self, w: torch.Tensor, v: torch.Tensor, vectors: bool = True):
        super().__init__()
        self.w, self.v, self.vectors, self.score_calls = w, v, vectors, 0

    def fit(self, splits, item_embeddings=None, **kwargs):
        return {}

    def has_vectors(self) -> bool:
        return self.vectors

    def user_vectors(self, histories):
        return torch.stack([self.w[list(h)].sum(0) for h in histories])

    def item_vectors(self):
        return self.v

    def score(self, histories):
        self.score_calls += 1
        return self.user_vectors(histories) @ self.v.T


def test_evaluate_takes_the_chunked_path_for_recommenders_with_vectors():
    n_items = 31
    _, items, examples = random_problem(3, n_items=n_items, n_users=40, integer=True)
    w = torch.randint(-2, 3, (n_items + 1, 4), generator=torch.Generator().manual_seed(1)).float()
    rec = SumOfItems(w, items)
    dense_metrics, dense = evaluate(rec.score, examples, n_items, ks=(1, 5), batch_size=16, chunked_min_items=None)
    assert rec.score_calls == 3
    for scorer in (rec, rec.score):  # the recommender itself or its bound score method
        metrics, ranks = evaluate(scorer, examples, n_items, ks=(1, 5), batch_size=16, chunk_size=8,
                                  chunked_min_items=n_items)
        assert torch.equal(ranks, dense) and metrics == dense_metrics
    assert rec.score_calls == 3  # the chunked path never asked for a (users x items) score matrix
    # below the threshold, and for recommenders without vectors, the dense path is used as before
    evaluate(rec, examples, n_items, ks=(1,), batch_size=40, chunked_min_items=n_items + 1)
    assert rec.score_calls == 4
    score_only = SumOfItems(w, items, vectors=False)
    _, ranks = evaluate(score_only, examples, n_items, ks=(1,), batch_size=40, chunked_min_items=1)
    assert torch.equal(ranks, dense) and score_only.score_calls == 1
    with pytest.raises(NotImplementedError):
        Recommender.user_vectors(score_only, [[1]])
