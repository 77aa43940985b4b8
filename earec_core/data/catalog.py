"""The item catalog: anchors (titles), per-modality raw inputs, and related items."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import DataError


@dataclass
class Item:
    """One catalog item.

    Attributes:
        id: the dataset's item token.
        anchor: the text every modality learns to generate (the title); may be empty, in which
            case the item is embedded and recommended but never used as an alignment sample.
        attributes: other metadata, in file order (rendered by the text modality).
        related: ids of items most often consumed next to it in *training* sequences
            (the "often bought together" role), most frequent first.
        media: paths of media files by modality name (e.g. ``{"image": "img/1.jpg"}``).
    """

    id: str
    anchor: str
    attributes: dict[str, str] = field(default_factory=dict)
    related: list[str] = field(default_factory=list)
    media: dict[str, str] = field(default_factory=dict)


class Catalog:
    """Items in index order; item index ``i`` (1-based, 0 = padding) is ``items[i - 1]``."""

    def __init__(self, items: list[Item]):
        self.items = list(items)
        self._by_id = {it.id: it for it in self.items}
        if len(self._by_id) != len(self.items):
            raise DataError("catalog has duplicate item ids")
        self._index = {it.id: i + 1 for i, it in enumerate(self.items)}
        self.unseen: frozenset[str] = frozenset()
        """Ids of *new* items (inductive split): never an alignment sample or a training input."""

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._by_id

    def __getitem__(self, item_id: str) -> Item:
        """The item with this id. Raises DataError for an unknown id."""
        try:
            return self._by_id[item_id]
        except KeyError:
            raise DataError(f"unknown item id {item_id!r}") from None

    def index(self, item_id: str) -> int:
        """1-based index of ``item_id``. Raises DataError for an unknown id."""
        try:
            return self._index[item_id]
        except KeyError:
            raise DataError(f"unknown item id {item_id!r}") from None

    @property
    def ids(self) -> list[str]:
        """Item ids in index order (row ``i`` of an embedding table is ``ids[i - 1]``)."""
        return [it.id for it in self.items]


def alignment_items(catalog: Catalog, seed: int, holdout: int, max_items: int | None) -> tuple[list[str], list[str]]:
    """``(train_ids, holdout_ids)``: a seeded shuffle of items with a non-empty anchor; the first
    ``holdout`` are never trained on (explainability is scored on them), the next ``max_items``
    (all if ``None``) are the alignment samples.  Same for every modality of a run.  New items of
    an inductive split (``catalog.unseen``) are never alignment samples (they may be held out)."""
    ids = [it.id for it in catalog if it.anchor.strip()]
    random.Random(seed).shuffle(ids)
    held, rest = ids[:holdout], ids[holdout:]
    rest = [i for i in rest if i not in catalog.unseen]
    return (rest if max_items is None else rest[:max_items]), held
