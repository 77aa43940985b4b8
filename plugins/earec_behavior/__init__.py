"""Built-in *behaviour* modality: one vector per item from an ID-based sequential recommender
trained on the training split, projected to the LLM width by a 2-layer GELU MLP (as the EARec
reference).  Related items ("often consumed together", from training sequences) add more slots.
"""

from __future__ import annotations

from pathlib import Path

import torch

from earec_core import hookimpl
from earec_core.embstore import ItemFeatures
from earec_core.errors import ArtifactError
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
                        "recommender": "the ID recommender whose item table is the encoder (default sasrec)"}
    placeholder = "<behavior>"
    transferable = False  # the encoder is this dataset's ID item table: align it again on each target
    description = "ID-recommender item embedding + related items, 2-layer MLP projector"

    def __init__(self, **options):
        super().__init__(**options)
        self._table: ItemFeatures | None = None

    def prepare(self, ctx) -> dict:
        """Keep the ID recommender's item table, without the items it never trained on.

        An item absent from every training sequence (a new item of an inductive split, or an item
        only the dropped users of a sparse split consumed) kept its random initial row: that row
        says nothing about the item, so the item gets no behaviour slot at all and its prompt
        speaks through its other modalities.  Returns ``{"items", "untrained_items", "dim"}``.
        """
        table = ctx.id_item_table(self.options.get("recommender", "sasrec"))
        trained = ctx.dataset.splits.train_item_counts() > 0
        ids = [iid for i, iid in enumerate(ctx.dataset.catalog.ids) if trained[i + 1]]
        # row i of the ID table is catalog item i (1-based); the padding row 0 is dropped
        ItemFeatures(ids, table[1:][trained[1:]]).save(ctx.artifact_dir(self.name) / TABLE_FILE, tensor="table")
        self.load(ctx.artifact_dir(self.name))
        return {"items": len(ids), "untrained_items": len(ctx.dataset.catalog) - len(ids), "dim": int(table.shape[1])}

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


@hookimpl
def earec_register_modalities(register):
    register(BehaviorModality)
