"""The modality plugin contract.

A modality turns an item into (a) a prompt fragment with zero or more *slots* and (b) features
for the items in those slots: ``X_m_emb = projector(encoder(X_m))`` (eq. 1-2 of the paper), which
:mod:`earec_core.prompt` splices into the LLM's token embeddings at the slots.

Text-like modalities (``placeholder = None``) put their input in the prompt as plain text and
are encoded by the LLM's own word embeddings: no encoder, no projector.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from .data import Dataset, Item
from .errors import EarecError


@dataclass
class ModalityContext:
    """What :meth:`Modality.prepare` may use: data, its own folder, and injected services.

    Attributes:
        dataset: the filtered, split dataset (use ``dataset.splits.train`` only for fitting).
        encoders_dir: the run's folder of fitted encoder states (``RUN/encoders``); a modality writes
            only under its own :meth:`artifact_dir`.
        seed: the run's seed.
        progress: whether long work may show progress bars.
        item_tables: the service behind :meth:`id_item_table`, injected by the run (the workspace
            trains the ID recommender); ``None`` where no recommender is available.
    """

    dataset: Dataset
    encoders_dir: Path
    seed: int = 0
    progress: bool = True
    item_tables: Callable[[str], torch.Tensor] | None = field(default=None, repr=False)

    def artifact_dir(self, modality: str) -> Path:
        """Where modality ``modality`` keeps its fitted encoder state (``RUN/encoders/MODALITY``)."""
        return self.encoders_dir / modality

    def id_item_table(self, recommender: str = "sasrec") -> torch.Tensor:
        """Item table ``(n_items + 1, d)`` of an ID-based ``recommender`` trained on the training split
        (validation for early stopping; the test split is never read).  Trained once per run.

        Raises EarecError if this context was built without an item-table service."""
        if self.item_tables is None:
            raise EarecError("this modality context has no ID recommender to train (item_tables=None); "
                             "run the modality through a Workspace")
        return self.item_tables(recommender)


@dataclass
class Fragment:
    """A modality's part of one prompt.

    Attributes:
        text: prompt text; contains the modality's placeholder exactly ``len(slot_items)`` times.
        slot_items: item ids whose features fill the placeholders, in order of appearance.
    """

    text: str
    slot_items: list[str] = field(default_factory=list)


class Modality(ABC):
    """Base class of every modality plugin.

    Class attributes a subclass sets:
        name: the user-facing key (``earec align --modality NAME``).
        placeholder: slot marker in prompt text (e.g. ``"<behavior>"``), or ``None`` for text.
        description: one line for ``earec plugins``.
        declared_options: ``{key: one-line help}`` of the options ``--modality-option NAME.KEY=VALUE``
            accepts; an unknown key is refused before anything is saved.  ``None`` (the default)
            accepts any key, for plugins written before declarations existed.
        code: short code in result labels (``EARec_TB``: text + behaviour); default the name's
            first letter, upper-cased.  Declare one when that would collide (``video`` vs ``vision``).
        transferable: whether an adapter + projector aligned on one dataset may be applied to another
            (``True`` for encoders that do not depend on the catalog, e.g. text or a pretrained image
            encoder; ``False`` when ``prepare`` fits the encoder to the dataset's own item ids, as the
            behaviour encoder does: its projector only understands that dataset's item table).

    Lifecycle: ``prepare(ctx)`` fits anything learned from training data and writes it under
    ``ctx.artifact_dir(name)``; ``load(dir)`` restores it in a later process.  Both must be
    deterministic given the context's seed.
    """

    name: ClassVar[str]
    placeholder: ClassVar[str | None] = None
    description: ClassVar[str] = ""
    transferable: ClassVar[bool] = True
    code: ClassVar[str] = ""
    declared_options: ClassVar[dict[str, str] | None] = None

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Raise EarecError for keys not in :attr:`declared_options`, listing the valid ones."""
        if cls.declared_options is None:
            return
        unknown = sorted(set(options) - set(cls.declared_options))
        if unknown:
            valid = "; ".join(f"{k}: {v}" for k, v in sorted(cls.declared_options.items())) or "none"
            raise EarecError(f"modality {cls.name!r} has no option {', '.join(map(repr, unknown))} "
                             f"(its options: {valid})")

    @classmethod
    def label_code(cls) -> str:
        """:attr:`code`, or the name's first letter upper-cased."""
        return cls.code or cls.name[:1].upper()

    def __init__(self, **options):
        self.options = options

    # -- data side -----------------------------------------------------------------------------
    def prepare(self, ctx: ModalityContext) -> dict:
        """Fit encoder state from training data (default: nothing). Returns facts for the report."""
        return {}

    def load(self, directory: Path) -> None:
        """Restore what :meth:`prepare` wrote (default: nothing)."""

    def fragment(self, item: Item, *, with_related: bool = True) -> Fragment | None:
        """The prompt fragment for ``item``, or ``None`` if the item lacks this modality
        (the modality is then left out of that item's prompt)."""
        raise NotImplementedError

    def limited_fragment(self, item: Item, max_related: int) -> Fragment | None:
        """The fragment with at most ``max_related`` related-item slots.

        :class:`~earec_core.prompt.PromptBuilder` calls this to drop related slots one at a time
        when a prompt exceeds its token budget.  The default is all or nothing
        (``fragment(item, with_related=max_related > 0)``); override it to keep as many related
        items as fit.
        """
        return self.fragment(item, with_related=max_related > 0)

    # -- encoder side (slot modalities only) ---------------------------------------------------
    @property
    def feature_dim(self) -> int:
        """``d_enc``, the encoder's output width."""
        raise NotImplementedError(f"modality {self.name!r} has no encoder")

    @property
    def tokens_per_item(self) -> int:
        """``k``, the number of embedding positions one slot expands to."""
        return 1

    def encode(self, item_ids: list[str]) -> torch.Tensor:
        """Encoder features ``(len(item_ids), k, d_enc)``, float32, for items that have this modality."""
        raise NotImplementedError(f"modality {self.name!r} has no encoder")

    def build_projector(self, d_enc: int, d_llm: int) -> nn.Module | None:
        """Projector ``(…, d_enc) -> (…, d_llm)``; default LLaVA's ``mlp2x_gelu``; ``None`` for text."""
        if self.placeholder is None:
            return None
        return nn.Sequential(nn.Linear(d_enc, d_llm), nn.GELU(), nn.Linear(d_llm, d_llm))
