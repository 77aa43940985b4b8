"""Built-in *behaviour* modality: one vector per item from an ID-based sequential recommender
trained on the training split, projected to the LLM width by a 2-layer GELU MLP (as the EARec
reference).  Related items ("often consumed together", from training sequences) add more slots.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from earec_core import hookimpl
from earec_core.errors import ArtifactError
from earec_core.modality import Fragment, Modality

TABLE_FILE = "item_embeddings.safetensors"


class BehaviorModality(Modality):
    """Options:
        n_related: related-item slots per prompt (default 3; 0 disables them).
        recommender: the ID recommender whose item table is the encoder (default ``sasrec``).
    """

    name = "behavior"
    placeholder = "<behavior>"
    transferable = False  # the encoder is this dataset's ID item table: align it again on each target
    description = "ID-recommender item embedding + related items, 2-layer MLP projector"

    def __init__(self, **options):
        super().__init__(**options)
        self._table: torch.Tensor | None = None
        self._row: dict[str, int] = {}

    def prepare(self, ctx) -> dict:
        table = ctx.id_item_table(self.options.get("recommender", "sasrec"))
        ids = ctx.dataset.catalog.ids
        directory = ctx.artifact_dir(self.name)
        directory.mkdir(parents=True, exist_ok=True)
        # row i of the stored table is ids[i]; the padding row is dropped
        save_file({"table": table[1:].contiguous().float()}, str(directory / TABLE_FILE), metadata={"item_ids": json.dumps(ids)})
        self.load(directory)
        return {"items": len(ids), "dim": int(table.shape[1])}

    def load(self, directory: Path) -> None:
        """Restore the item table written by :meth:`prepare`.

        Raises ArtifactError if the file is missing, unreadable, lacks its ``item_ids`` metadata,
        is not a 2-D table with one row per id, or holds NaN/Inf.
        """
        path = Path(directory) / TABLE_FILE
        if not path.is_file():
            raise ArtifactError(f"behaviour encoder state missing: {path}; run `earec prepare` first")
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                ids = json.loads((fh.metadata() or {})["item_ids"])
            table = load_file(str(path))["table"]
        except (SafetensorError, OSError, KeyError, ValueError) as exc:
            raise ArtifactError(
                f"{path}: not a behaviour item table (safetensors with tensor 'table' and 'item_ids' metadata): "
                f"{type(exc).__name__}: {exc}; delete it and run `earec prepare`"
            ) from None
        if not isinstance(ids, list):
            raise ArtifactError(f"{path}: 'item_ids' metadata is not a JSON list of ids")
        if table.ndim != 2 or table.shape[0] != len(ids):
            raise ArtifactError(f"{path}: table shape {tuple(table.shape)} does not match {len(ids)} item ids")
        if not torch.isfinite(table).all():
            raise ArtifactError(f"{path}: behaviour embeddings contain NaN/Inf; retrain the ID recommender")
        self._table, self._row = table, {iid: i for i, iid in enumerate(ids)}

    @property
    def feature_dim(self) -> int:
        return int(self._require().shape[1])

    def _require(self) -> torch.Tensor:
        if self._table is None:
            raise ArtifactError("behaviour modality used before prepare()/load()")
        return self._table

    def fragment(self, item, *, with_related: bool = True):
        if self._table is None or item.id not in self._row:
            return None
        text = f"Behaviour embedding: {self.placeholder}."
        slots = [item.id]
        related = [r for r in item.related if r in self._row][: int(self.options.get("n_related", 3))]
        if with_related and related:
            text += " Often consumed together with: " + ", ".join([self.placeholder] * len(related)) + "."
            slots += related
        return Fragment(text, slots)

    def encode(self, item_ids: list[str]) -> torch.Tensor:
        table = self._require()
        rows = torch.tensor([self._row[i] for i in item_ids], dtype=torch.long)
        return table[rows].unsqueeze(1)


@hookimpl
def earec_register_modalities(register):
    register(BehaviorModality)
