"""The recommender plugin contract and the sequence splits every recommender consumes.

Item indices are 1-based; index 0 is padding.  A user's chronological sequence
``s_1..s_n`` is split leave-one-out (RecBole's ``LS: valid_and_test``):

* train: ``s_1..s_{n-2}`` (the recommender trains on next-item targets inside it),
* valid: history ``s_1..s_{n-2}``, target ``s_{n-1}``,
* test:  history ``s_1..s_{n-1}``, target ``s_n``.

In the *inductive* (new-item) setting some items are new: they occur only as validation/test
targets or in test histories, never in ``train``, and a recommender must not learn from them in
any other way either (no softmax column, no sampled negative): ``SequenceSplits.new_items``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch


@dataclass
class SequenceSplits:
    """Leave-one-out splits over 1-based item indices.

    Attributes:
        n_items: number of real items; valid indices are ``1..n_items``.
        train: per user, the training sequence (all but the last two items).
        valid: per user, ``(history, target)`` with history == that user's train sequence.
        test: per user, ``(history, target)`` with history == train sequence + validation item.
        new_items: items a recommender must not train on (see the module docstring); they are
            ranked like every other item at evaluation time.
    """

    n_items: int
    train: list[list[int]]
    valid: list[tuple[list[int], int]]
    test: list[tuple[list[int], int]]
    new_items: frozenset[int] = frozenset()
    """1-based indices of items held out of training (inductive split); empty by default."""

    def train_item_counts(self) -> torch.Tensor:
        """``(n_items + 1,)`` long: how often each item occurs in the training sequences (index 0,
        the padding, is 0).  Item popularity for the long-tail slices and popularity sampling;
        ``> 0`` marks the items a recommender has trained on."""
        flat = torch.tensor([i for seq in self.train for i in seq], dtype=torch.long)
        counts = torch.bincount(flat, minlength=self.n_items + 1)
        counts[0] = 0
        return counts

    def split(self, name: str) -> list[tuple[list[int], int]]:
        """``valid`` or ``test`` examples. Raises ValueError for any other name."""
        if name == "valid":
            return self.valid
        if name == "test":
            return self.test
        raise ValueError(f"unknown split {name!r}: expected 'valid' or 'test'")


class Recommender(ABC):
    """A sequential recommender plugin.

    Subclasses set ``name`` and implement :meth:`fit` and :meth:`score`.  Evaluation
    (full ranking, HR@K/NDCG@K, history masking, tie policy) lives in
    :func:`earec_core.metrics.evaluate` so every recommender is measured identically.
    Inner-product recommenders may also implement :meth:`has_vectors`, :meth:`user_vectors` and
    :meth:`item_vectors`, which lets evaluation scale to catalogs of millions of items.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def __init__(self, **options):
        self.options = options

    @abstractmethod
    def fit(
        self,
        splits: SequenceSplits,
        item_embeddings: torch.Tensor | None = None,
        *,
        seed: int = 0,
        progress: bool = True,
        workdir: Path | None = None,
    ) -> dict[str, float]:
        """Train on ``splits.train``, early-stopping on ``splits.valid``; never reads ``splits.test``.

        Args:
            item_embeddings: frozen item features ``(n_items + 1, d)``, row 0 = padding (zeros);
                ``None`` for an ID-based model that learns its own table.
        Returns:
            the best validation metrics (``{"HR@10": ..., "NDCG@10": ...}``).
        """

    @abstractmethod
    def score(self, histories: list[list[int]]) -> torch.Tensor:
        """Scores of every item for each history: ``(len(histories), n_items + 1)``, column 0 ignored."""

    def item_embedding_table(self) -> torch.Tensor | None:
        """The learned item table ``(n_items + 1, d)`` for ID-based models, else ``None``."""
        return None

    # ---------------------------------------------------------------- optional: factorised scores
    # A recommender whose scores are inner products implements these three; evaluation then ranks
    # huge catalogs chunk by chunk (earec_core.metrics.chunked_target_ranks / chunked_topk) instead
    # of materialising (users x n_items) scores.  Recommenders that only implement score() keep working.

    def has_vectors(self) -> bool:
        """Whether :meth:`user_vectors` and :meth:`item_vectors` are implemented (default ``False``)."""
        return False

    def user_vectors(self, histories: list[list[int]]) -> torch.Tensor:
        """User vectors ``(len(histories), hidden)``, float32 on the CPU, such that
        ``score(histories) == user_vectors(histories) @ item_vectors().T`` exactly.

        Raises:
            NotImplementedError: the recommender does not factorise its scores (see :meth:`has_vectors`).
        """
        raise NotImplementedError(f"{type(self).__name__} does not provide user vectors")

    def item_vectors(self) -> torch.Tensor:
        """Item vectors ``(n_items + 1, hidden)``, float32 on the CPU, row 0 = padding (never ranked);
        see :meth:`user_vectors`.

        Raises:
            NotImplementedError: the recommender does not factorise its scores (see :meth:`has_vectors`).
        """
        raise NotImplementedError(f"{type(self).__name__} does not provide item vectors")
