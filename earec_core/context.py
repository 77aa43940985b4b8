"""What a modality's ``prepare`` may use: the dataset, its own artifact folder, and a fitted
ID-based recommender trained on the training split (for behaviour-style encoders)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .data import Dataset
from .plugins import Registry


@dataclass
class ModalityContext:
    """Shared state of one run, handed to :meth:`Modality.prepare`.

    Attributes:
        dataset: the filtered, split dataset (use ``dataset.splits.train`` only for fitting).
        run_dir: the run's folder.
        registry: loaded plugins.
        seed: the run's seed.
        progress: whether long work may show progress bars.
        recommender_options: options for the ID recommender (e.g. ``max_epochs``).
    """

    dataset: Dataset
    run_dir: Path
    registry: Registry
    seed: int = 0
    progress: bool = True
    recommender_options: dict = field(default_factory=dict)

    def artifact_dir(self, modality: str) -> Path:
        """Where modality ``modality`` keeps its fitted encoder state."""
        return self.run_dir / "encoders" / modality

    def id_item_table(self, recommender: str = "sasrec") -> torch.Tensor:
        """Item table ``(n_items + 1, d)`` of an ID-based ``recommender`` trained on the training split
        (validation for early stopping; the test split is never read).  Trained once per run."""
        from .recommend import id_baseline

        return id_baseline(self, recommender).item_table
