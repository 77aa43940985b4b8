"""The modality plugin contract.

A modality turns an item into (a) a prompt fragment with zero or more *slots* and (b) features
for the items in those slots: ``X_m_emb = projector(encoder(X_m))`` (eq. 1-2 of the paper), which
:mod:`earec_core.prompt` splices into the LLM's token embeddings at the slots.

Text-like modalities (``placeholder = None``) put their input in the prompt as plain text and
are encoded by the LLM's own word embeddings: no encoder, no projector.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from .context import ModalityContext
    from .data import Item


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
