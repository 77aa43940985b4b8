"""Full-ranking leave-one-out evaluation: HR@K and NDCG@K over *all* items.

Semantics (RecBole's ``mode: full``, made explicit):

* every example (one per user with a target) is counted; the denominator is the number of users,
* every real item ``1..n_items`` is ranked; the padding index 0 never is,
* history masking: items in the user's input history are removed from the ranking, *except the
  target itself* (a re-consumed item is still findable),
* ties are resolved against the model: the target's rank is the number of other items whose
  score is ``>=`` its own, so a constant scorer gets the worst rank, never the best.
* a NaN score counts as the worst possible score (below ``-inf``).
* HR@K = 1 if rank < K;  NDCG@K = 1 / log2(rank + 2) if rank < K (one relevant item, so IDCG = 1).

Two paths compute the same ranks:

* **dense** (:func:`target_ranks`): the recommender's ``score(histories)`` gives a
  ``(batch, n_items + 1)`` matrix per batch of users;
* **chunked** (:func:`chunked_target_ranks`, :func:`chunked_topk`): for a recommender whose scores
  factorise as ``user_vectors(histories) @ item_vectors().T`` (see
  :class:`earec_core.recommender.Recommender`), items are scored ``chunk_size`` at a time and only
  the number of items ahead of the target (or a running top-k) is kept, so no
  ``(batch, n_items)`` matrix ever exists.  :func:`evaluate` takes it automatically for catalogs of
  at least ``chunked_min_items`` items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain

import torch

from .recommender import Recommender

DEFAULT_KS = (10, 50)
DEFAULT_CHUNK_SIZE = 8_192
"""Items scored at once by the chunked path: 256 users x 8,192 items x 4 bytes = 8 MiB a chunk, small
enough to stay in cache between the product and the comparison (measured ~2x faster than 65,536)."""
DEFAULT_CHUNKED_MIN_ITEMS = 100_000
""":func:`evaluate` switches to the chunked path from this many items on (if the recommender has vectors)."""


def history_indices(histories: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened ``(rows, items)`` long tensors, one entry per history item (row ``r`` = ``histories[r]``).

    Used to build every history mask with one ``index_put_`` instead of a Python loop over rows.
    """
    lengths = torch.tensor([len(h) for h in histories], dtype=torch.long)
    items = torch.tensor(list(chain.from_iterable(histories)), dtype=torch.long)
    rows = torch.repeat_interleave(torch.arange(len(histories)), lengths)
    return rows, items


def _worst_nan(scores: torch.Tensor) -> torch.Tensor:
    """NaN -> ``-inf`` (and ``+-inf`` -> the largest finite values), so NaN ranks below everything.

    NaN would compare false everywhere and flatter the model.  Elementwise, so applying it to a chunk
    equals applying it to the whole matrix.
    """
    return scores if torch.isfinite(scores).all() else torch.nan_to_num(scores, nan=-torch.inf)


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, histories: Sequence[Sequence[int]] | None) -> torch.Tensor:
    """0-based pessimistic rank of each target among all real items (the dense path).

    Args:
        scores: ``(batch, n_items + 1)``; column 0 is padding and ignored.
        targets: ``(batch,)`` 1-based item indices.
        histories: per row, item indices to exclude from the ranking (the target is never excluded).
    Returns:
        ``(batch,)`` long tensor of ranks in ``[0, n_items - 1]``.
    Raises:
        IndexError: a history item index outside ``0..n_items``.
    """
    scores = _worst_nan(scores.detach().float())
    rows = torch.arange(scores.shape[0])
    target_score = scores[rows, targets]
    excluded = torch.zeros_like(scores, dtype=torch.bool)
    excluded[:, 0] = True
    if histories is not None:
        excluded.index_put_(history_indices(histories), torch.tensor(True))
    excluded[rows, targets] = True  # the target is compared below, never against itself
    ahead = (scores >= target_score[:, None]) & ~excluded
    return ahead.sum(dim=1)


def _item_chunks(n_items: int, chunk_size: int):
    """``(start, stop)`` over the real items ``1..n_items``, ``chunk_size`` at a time."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    for start in range(1, n_items + 1, chunk_size):
        yield start, min(start + chunk_size, n_items + 1)


def _check_vectors(user_vectors: torch.Tensor, item_vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if user_vectors.ndim != 2 or item_vectors.ndim != 2 or user_vectors.shape[1] != item_vectors.shape[1]:
        raise ValueError(f"user vectors {tuple(user_vectors.shape)} and item vectors {tuple(item_vectors.shape)} "
                         "must be (batch, hidden) and (n_items + 1, hidden)")
    return user_vectors.detach().float(), item_vectors.detach().float()


def _chunk_scores(users: torch.Tensor, user_bound: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``users @ rows.T`` with NaN -> ``-inf`` (as :func:`_worst_nan`); the full ``isfinite`` pass over the
    product is skipped when ``user_bound`` (``max |users|``, NaN if any is NaN) and ``max |rows|`` prove
    every score finite: ``|score| <= hidden * max|u| * max|v|`` (doubled for rounding)."""
    scores = users @ rows.T
    bound = 2.0 * users.shape[1] * user_bound * rows.abs().max()  # NaN / inf propagate: not provably finite
    return scores if bound < torch.finfo(scores.dtype).max else _worst_nan(scores)


def chunked_target_ranks(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    targets: torch.Tensor,
    histories: Sequence[Sequence[int]] | None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """:func:`target_ranks` of ``user_vectors @ item_vectors.T`` without materialising that matrix.

    Items ``1..n_items`` are scored ``chunk_size`` at a time; per chunk, the history items and the
    target are masked (set to NaN, which compares false) and the items scoring ``>=`` the target are
    counted.  Memory is ``batch x chunk_size`` instead of ``batch x n_items``.  The ranks are exactly
    those of the dense path whenever the target's own score (one dot product per user) rounds like the
    same entry of the full product, i.e. up to scores within float rounding of the target's; with
    exactly representable scores (the tie tests) they are identical.

    Args:
        user_vectors: ``(batch, hidden)``.
        item_vectors: ``(n_items + 1, hidden)``; row 0 (padding) is never ranked.
        targets: ``(batch,)`` 1-based item indices.
        histories: per row, item indices to exclude (the target is never excluded), or ``None``.
        chunk_size: items scored at once.
    Returns:
        ``(batch,)`` long tensor of 0-based ranks in ``[0, n_items - 1]``.
    Raises:
        ValueError: mismatched vector shapes or a non-positive ``chunk_size``.
    """
    users, items = _check_vectors(user_vectors, item_vectors)
    batch, n_items = users.shape[0], items.shape[0] - 1
    rows = torch.arange(batch)
    # the target's score through a matrix product like the chunk products below (blocks bound memory)
    target_score = _worst_nan(torch.cat([(users[b : b + 1024] @ items[targets[b : b + 1024]].T).diagonal()
                                         for b in range(0, batch, 1024)]))
    mask_rows, mask_items = history_indices(histories) if histories is not None else (rows[:0], rows[:0])
    mask_rows, mask_items = torch.cat([mask_rows, rows]), torch.cat([mask_items, targets])  # + the target itself
    user_bound = users.abs().max()
    ahead = torch.zeros(batch, dtype=torch.int64)
    for start, stop in _item_chunks(n_items, chunk_size):
        scores = _chunk_scores(users, user_bound, items[start:stop])
        inside = (mask_items >= start) & (mask_items < stop)
        scores.index_put_((mask_rows[inside], mask_items[inside] - start), torch.tensor(float("nan")))
        ahead += (scores >= target_score[:, None]).sum(dim=1, dtype=torch.int32)  # int32: 2x faster than int64
    return ahead


def chunked_topk(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    k: int,
    exclude: Sequence[Sequence[int]] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global top-``k`` items of ``user_vectors @ item_vectors.T`` (padding row 0 never returned),
    merged from per-chunk top-``k`` so that no ``(batch, n_items)`` matrix exists: recommendation lists.

    Args:
        user_vectors: ``(batch, hidden)``.
        item_vectors: ``(n_items + 1, hidden)``.
        k: list length, ``1 <= k <= n_items``.
        exclude: per row, item indices never to recommend (e.g. the history), or ``None``.
        chunk_size: items scored at once.
    Returns:
        ``(scores, items)``: both ``(batch, k)``, best first; ``items`` are 1-based indices.  Excluded
        items and NaN scores get ``-inf`` and come last (only if fewer than ``k`` items remain).  Among
        equal scores the order is unspecified, as with :func:`torch.topk`.
    Raises:
        ValueError: mismatched shapes, ``k`` outside ``1..n_items`` or a non-positive ``chunk_size``.
    """
    users, items = _check_vectors(user_vectors, item_vectors)
    batch, n_items = users.shape[0], items.shape[0] - 1
    if not 1 <= k <= n_items:
        raise ValueError(f"k={k} must be between 1 and the number of items ({n_items})")
    mask_rows, mask_items = history_indices(exclude) if exclude is not None else (torch.zeros(0, dtype=torch.long),) * 2
    user_bound = users.abs().max()
    best_scores = torch.full((batch, 0), -torch.inf)
    best_items = torch.zeros((batch, 0), dtype=torch.long)
    for start, stop in _item_chunks(n_items, chunk_size):
        scores = _chunk_scores(users, user_bound, items[start:stop])
        inside = (mask_items >= start) & (mask_items < stop)
        scores.index_put_((mask_rows[inside], mask_items[inside] - start), torch.tensor(-torch.inf))
        top_scores, top_cols = scores.topk(min(k, stop - start), dim=1)
        merged_scores = torch.cat([best_scores, top_scores], dim=1)
        merged_items = torch.cat([best_items, top_cols + start], dim=1)
        best_scores, keep = merged_scores.topk(min(k, merged_scores.shape[1]), dim=1)
        best_items = merged_items.gather(1, keep)
    return best_scores, best_items


def ndcg_at(ranks: torch.Tensor, k: int = 10, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per-user NDCG@``k`` from 0-based ranks ``(n_users,)``: ``1 / log2(rank + 2)`` if rank < k, else 0
    (one relevant item, so IDCG = 1), computed in ``dtype``."""
    r = ranks.to(dtype)
    return torch.where(r < k, 1.0 / torch.log2(r + 2.0), torch.zeros_like(r))


def metrics_from_ranks(ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Mean HR@K and NDCG@K for each K from 0-based ranks ``(n_users,)``."""
    if ranks.numel() == 0:
        raise ValueError("no examples to evaluate: the split is empty")
    ranks = ranks.float()
    out: dict[str, float] = {}
    for k in ks:
        out[f"HR@{k}"] = (ranks < k).float().mean().item()
        out[f"NDCG@{k}"] = ndcg_at(ranks, k, dtype=torch.float32).mean().item()
    return out


def _vector_recommender(scorer) -> Recommender | None:
    """The :class:`~earec_core.recommender.Recommender` behind ``scorer`` (itself, or the owner of its
    bound ``score`` method) if it offers user/item vectors, else ``None``."""
    owner = scorer if isinstance(scorer, Recommender) else getattr(scorer, "__self__", None)
    if not isinstance(owner, Recommender) or (owner is not scorer and getattr(scorer, "__func__", None)
                                              is not type(owner).score):
        return None
    return owner if owner.has_vectors() else None


def evaluate(
    score_fn: Callable[[list[list[int]]], torch.Tensor] | Recommender,
    examples: Sequence[tuple[Sequence[int], int]],
    n_items: int,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 256,
    mask_history: bool = True,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    chunked_min_items: int | None = DEFAULT_CHUNKED_MIN_ITEMS,
) -> tuple[dict[str, float], torch.Tensor]:
    """Evaluate a scorer on ``(history, target)`` examples by full ranking.

    ``score_fn`` is a callable ``histories -> (batch, n_items + 1)`` scores, or a
    :class:`~earec_core.recommender.Recommender` (or its bound ``score``).  Users are processed
    ``batch_size`` at a time, in order.  Dense path: memory is ``batch_size x n_items``.  Chunked
    path, taken when the recommender offers vectors (``has_vectors()``) and ``n_items >=
    chunked_min_items`` (``None``: never): ``user_vectors`` per batch, ``item_vectors()`` once, and
    :func:`chunked_target_ranks` over ``chunk_size`` items at a time, so memory is
    ``batch_size x chunk_size``.  Both give the same ranks (see :func:`chunked_target_ranks`).

    Returns:
        ``(metrics, ranks)``: the mean metrics and the per-user ranks ``(n_users,)`` (for paired tests).
    Raises:
        ValueError: if there are no examples, a K exceeds ``n_items``, a target is out of range, or
            the scorer's output has the wrong shape.
    """
    if not examples:
        raise ValueError("no examples to evaluate: the split is empty")
    bad_k = [k for k in ks if k > n_items]
    if bad_k:
        raise ValueError(f"cutoff K={bad_k} exceeds the number of items ({n_items}); choose K <= n_items")
    rec = _vector_recommender(score_fn)
    chunked = rec is not None and chunked_min_items is not None and n_items >= chunked_min_items
    if chunked:
        item_vectors = rec.item_vectors()
        if item_vectors.shape[0] != n_items + 1:
            raise ValueError(f"item_vectors() has {item_vectors.shape[0]} rows, expected {n_items + 1}")
    if isinstance(score_fn, Recommender):
        score_fn = score_fn.score
    all_ranks = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        histories = [list(h) for h, _ in chunk]
        targets = torch.tensor([t for _, t in chunk], dtype=torch.long)
        if targets.min() < 1 or targets.max() > n_items:
            raise ValueError(f"target item index out of range 1..{n_items}")
        masked = histories if mask_history else None
        with torch.inference_mode():
            if chunked:
                all_ranks.append(chunked_target_ranks(rec.user_vectors(histories), item_vectors, targets, masked,
                                                      chunk_size))
                continue
            scores = score_fn(histories)
        if scores.shape != (len(chunk), n_items + 1):
            raise ValueError(f"scorer returned shape {tuple(scores.shape)}, expected {(len(chunk), n_items + 1)}")
        all_ranks.append(target_ranks(scores, targets, masked))
    ranks = torch.cat(all_ranks)
    return metrics_from_ranks(ranks, ks), ranks
