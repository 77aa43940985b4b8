"""Built-in *behaviour* modality: one vector per item from an ID-based sequential recommender
trained on the training split, projected to the LLM width by a 2-layer GELU MLP (as the EARec
reference).  Related items ("often consumed together", from training sequences) add more slots.

Items the ID recommender never trained on (the new items of an inductive split) have no learnt
row.  Option ``missing`` says what they get: ``drop`` (default) leaves their behaviour slot out of
the prompt; ``neighbours`` fills it with an *estimated* row, the mean ID row of the ``neighbours``
trained items whose metadata (anchor + attributes) is most similar by TF-IDF cosine: a content
-> behaviour bridge for cold-start items, in the spirit of feature-based cold-start embeddings.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

from earec_core import hookimpl
from earec_core.embstore import ItemFeatures
from earec_core.errors import ArtifactError, EarecError
from earec_core.modality import Fragment, Modality

TABLE_FILE = "item_embeddings.safetensors"


class BehaviorModality(Modality):
    """Options:
        n_related: related-item slots per prompt (default 3; 0 disables them).
        recommender: the ID recommender whose item table is the encoder (default ``sasrec``).
    """

    name = "behavior"
    code = "B"
    declared_options = {"n_related": "related-item slots per prompt (default 3; 0 disables them)",
                        "recommender": "the ID recommender whose item table is the encoder (default sasrec)",
                        "missing": "untrained (new) items: drop = no behaviour slot (default); neighbours = "
                                   "the mean ID row of their most similar trained items by metadata",
                        "neighbours": "trained items averaged per estimated row (default 10)"}
    placeholder = "<behavior>"
    transferable = False  # the encoder is this dataset's ID item table: align it again on each target
    description = "ID-recommender item embedding + related items, 2-layer MLP projector"

    def __init__(self, **options):
        super().__init__(**options)
        self._table: ItemFeatures | None = None

    def prepare(self, ctx) -> dict:
        """Keep the ID recommender's item table; estimate or drop the rows it never trained.

        An item absent from every training sequence (a new item of an inductive split, or an item
        only the dropped users of a sparse split consumed) kept its random initial row, which says
        nothing about the item.  With ``missing=drop`` the item gets no behaviour slot at all and
        its prompt speaks through its other modalities; with ``missing=neighbours`` it gets
        :func:`neighbour_rows`' estimate instead.  Returns ``{"items", "untrained_items",
        "estimated_items", "dim"}``.

        Raises EarecError for an unknown ``missing`` policy or a ``neighbours`` count below 1.
        """
        missing = str(self.options.get("missing", "drop"))
        if missing not in ("drop", "neighbours"):
            raise EarecError(f"behavior.missing must be 'drop' or 'neighbours', got {missing!r}")
        k = int(self.options.get("neighbours", 10))
        if k < 1:
            raise EarecError(f"behavior.neighbours must be >= 1, got {k}")
        table = ctx.id_item_table(self.options.get("recommender", "sasrec"))[1:]  # row i-1 = catalog item i
        trained = ctx.dataset.splits.train_item_counts()[1:] > 0
        catalog = ctx.dataset.catalog
        keep = trained
        if missing == "neighbours" and bool(trained.any()) and not bool(trained.all()):
            table = table.clone()
            table[~trained] = neighbour_rows(catalog.items, table, trained, k)
            keep = torch.ones_like(trained)
        ids = [iid for i, iid in enumerate(catalog.ids) if keep[i]]
        ItemFeatures(ids, table[keep]).save(ctx.artifact_dir(self.name) / TABLE_FILE, tensor="table")
        self.load(ctx.artifact_dir(self.name))
        untrained = int((~trained).sum())
        return {"items": len(ids), "untrained_items": untrained,
                "estimated_items": untrained if missing == "neighbours" else 0, "dim": int(table.shape[1])}

    def load(self, directory: Path) -> None:
        """Restore the item table written by :meth:`prepare`.

        Raises ArtifactError if the file is missing, unreadable, lacks its ``item_ids`` metadata,
        is not a 2-D table with one row per id, or holds NaN/Inf.
        """
        self._table = ItemFeatures.load(Path(directory) / TABLE_FILE, tensor="table", what="behaviour item table",
                                        fix="delete it and run `earec prepare` (retrains the ID recommender)", ndim=2)

    @property
    def feature_dim(self) -> int:
        return int(self._require().features.shape[1])

    def _require(self) -> ItemFeatures:
        if self._table is None:
            raise ArtifactError("behaviour modality used before prepare()/load()")
        return self._table

    def fragment(self, item, *, with_related: bool = True):
        if self._table is None or item.id not in self._table:
            return None
        text = f"Behaviour embedding: {self.placeholder}."
        slots = [item.id]
        related = [r for r in item.related if r in self._table][: int(self.options.get("n_related", 3))]
        if with_related and related:
            text += " Often consumed together with: " + ", ".join([self.placeholder] * len(related)) + "."
            slots += related
        return Fragment(text, slots)

    def encode(self, item_ids: list[str]) -> torch.Tensor:
        return self._require().rows(item_ids).unsqueeze(1)


def _tokens(item) -> list[str]:
    """Lower-cased word tokens of an item's anchor and attribute values."""
    text = " ".join([item.anchor, *map(str, item.attributes.values())])
    return re.findall(r"[a-z0-9]+", text.lower())


def neighbour_rows(items, table: torch.Tensor, trained: torch.Tensor, k: int) -> torch.Tensor:
    """Estimated ID rows ``(U, D)`` for the ``U`` untrained items, in catalog order.

    Each is the mean of the rows ``table`` ``(N, D)`` of the ``k`` trained items (``trained``
    ``(N,)`` bool) most similar by cosine between TF-IDF vectors (idf = log(N / df)) of the words of
    their anchor and attributes (title, year, genres on MovieLens).  An item sharing no word with
    any trained item gets the mean of all trained rows.  Requires at least one trained item.
    """
    docs = [Counter(_tokens(item)) for item in items]
    df = Counter(word for doc in docs for word in doc)
    vocab = {word: j for j, word in enumerate(sorted(df))}
    weights = torch.zeros(len(items), max(len(vocab), 1))
    for i, doc in enumerate(docs):
        for word, count in doc.items():
            weights[i, vocab[word]] = count * math.log(len(items) / df[word])
    weights = F.normalize(weights, dim=1)
    sims = weights[~trained] @ weights[trained].T                      # (U, T)
    nearest = sims.topk(min(k, int(trained.sum())), dim=1).indices     # (U, k) into the trained rows
    rows = table[trained][nearest].mean(dim=1)
    rows[sims.amax(dim=1) <= 0] = table[trained].mean(dim=0)
    return rows


@hookimpl
def earec_register_modalities(register):
    register(BehaviorModality)
