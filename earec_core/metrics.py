"""Full-ranking leave-one-out evaluation: HR@K and NDCG@K over *all* items.

Semantics (RecBole's ``mode: full``, made explicit):

* every example (one per user with a target) is counted; the denominator is the number of users,
* every real item ``1..n_items`` is ranked; the padding index 0 never is,
* history masking: items in the user's input history are removed from the ranking, *except the
  target itself* (a re-consumed item is still findable),
* ties are resolved against the model: the target's rank is the number of other items whose
  score is ``>=`` its own, so a constant scorer gets the worst rank, never the best.
* HR@K = 1 if rank < K;  NDCG@K = 1 / log2(rank + 2) if rank < K (one relevant item, so IDCG = 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

DEFAULT_KS = (10, 50)


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, histories: Sequence[Sequence[int]] | None) -> torch.Tensor:
    """0-based pessimistic rank of each target among all real items.

    Args:
        scores: ``(batch, n_items + 1)``; column 0 is padding and ignored.
        targets: ``(batch,)`` 1-based item indices.
        histories: per row, item indices to exclude from the ranking (the target is never excluded).
    Returns:
        ``(batch,)`` long tensor of ranks in ``[0, n_items - 1]``.
    """
    scores = scores.detach().float().clone()
    if not torch.isfinite(scores).all():
        # NaN would compare false everywhere and flatter the model; treat it as the worst score.
        scores = torch.nan_to_num(scores, nan=-torch.inf)
    rows = torch.arange(scores.shape[0])
    target_score = scores[rows, targets].clone()
    excluded = torch.zeros_like(scores, dtype=torch.bool)
    excluded[:, 0] = True
    if histories is not None:
        for r, hist in enumerate(histories):
            if len(hist):
                excluded[r, torch.as_tensor(list(hist), dtype=torch.long)] = True
    excluded[rows, targets] = True  # the target is compared below, never against itself
    ahead = (scores >= target_score[:, None]) & ~excluded
    return ahead.sum(dim=1)


def metrics_from_ranks(ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Mean HR@K and NDCG@K for each K from 0-based ranks ``(n_users,)``."""
    if ranks.numel() == 0:
        raise ValueError("no examples to evaluate: the split is empty")
    ranks = ranks.float()
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        out[f"HR@{k}"] = hit.float().mean().item()
        out[f"NDCG@{k}"] = torch.where(hit, 1.0 / torch.log2(ranks + 2.0), torch.zeros_like(ranks)).mean().item()
    return out


def evaluate(
    score_fn: Callable[[list[list[int]]], torch.Tensor],
    examples: Sequence[tuple[Sequence[int], int]],
    n_items: int,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 256,
    mask_history: bool = True,
) -> tuple[dict[str, float], torch.Tensor]:
    """Evaluate a scorer on ``(history, target)`` examples by full ranking.

    Scores are computed ``batch_size`` users at a time, so memory is ``batch_size x n_items``
    rather than ``n_users x n_items``.

    Returns:
        ``(metrics, ranks)``: the mean metrics and the per-user ranks ``(n_users,)`` (for paired tests).
    Raises:
        ValueError: if there are no examples, a K exceeds ``n_items``, or a target is out of range.
    """
    if not examples:
        raise ValueError("no examples to evaluate: the split is empty")
    bad_k = [k for k in ks if k > n_items]
    if bad_k:
        raise ValueError(f"cutoff K={bad_k} exceeds the number of items ({n_items}); choose K <= n_items")
    all_ranks = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        histories = [list(h) for h, _ in chunk]
        targets = torch.tensor([t for _, t in chunk], dtype=torch.long)
        if targets.min() < 1 or targets.max() > n_items:
            raise ValueError(f"target item index out of range 1..{n_items}")
        with torch.inference_mode():
            scores = score_fn(histories)
        if scores.shape != (len(chunk), n_items + 1):
            raise ValueError(f"scorer returned shape {tuple(scores.shape)}, expected {(len(chunk), n_items + 1)}")
        all_ranks.append(target_ranks(scores, targets, histories if mask_history else None))
    ranks = torch.cat(all_ranks)
    return metrics_from_ranks(ranks, ks), ranks
