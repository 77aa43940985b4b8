"""The dataset every stage reads: catalog, users and leave-one-out splits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..recommender import SequenceSplits
from .catalog import Catalog


@dataclass
class Dataset:
    """A filtered, split dataset ready for every stage.

    Attributes:
        name: dataset name (file stem).
        catalog: surviving items in index order (index = position + 1).
        users: user ids, in the order of ``splits`` rows.
        splits: leave-one-out splits over 1-based item indices.
        stats: counts before/after filtering, for reports.
    """

    name: str
    catalog: Catalog
    users: list[str]
    splits: SequenceSplits
    stats: dict[str, int] = field(default_factory=dict)
    directory: Path | None = None  # the dataset folder; relative media paths resolve against it
