"""Prompts with modality slots, and splicing slot features into the token embeddings.

A prompt is rendered with the tokenizer's chat template, then split at the placeholders; each
placeholder expands to ``k`` *slot positions* whose token id is a dummy (the pad id) and whose
embedding is replaced by ``projector(encoder(item))`` before the LLM runs (LLaVA's
``prepare_inputs_labels_for_multimodal`` idea, done as HF's placeholder scatter).  No per-item
tokens are ever added to the vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import EarecError
from .modality import Fragment, Modality

DEFAULT_SYSTEM = "You describe catalog items."
DEFAULT_INTRO = "Here is what we know about an item."
DEFAULT_QUESTION = "What is the item's title?"
IGNORE_INDEX = -100


class PromptError(EarecError):
    """A fragment's text and slot list disagree, or a prompt cannot fit its token budget."""


@dataclass
class SlotRef:
    """``k`` consecutive slot positions starting at ``start`` hold ``modality``'s features of ``item_id``."""

    modality: str
    item_id: str
    start: int
    k: int


@dataclass
class Sample:
    """One tokenised prompt (and, for training, its answer).

    ``input_ids`` and ``labels`` have equal length; ``labels`` is ``IGNORE_INDEX`` except on the
    answer tokens (anchor + EOS), which is where the loss is taken.
    """

    item_id: str
    input_ids: list[int]
    labels: list[int]
    slots: list[SlotRef] = field(default_factory=list)

    @property
    def n_supervised(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


class PromptBuilder:
    """Builds :class:`Sample` objects for items from their modalities' fragments.

    Args:
        tokenizer: a HF tokenizer with a chat template (a plain ``System/User/Assistant``
            layout is used when it has none) and an EOS token.
        modalities: the modality objects by name; their order is the order in the prompt.
        max_length: token budget per sample.  Related-item slots are dropped first when a
            prompt does not fit, one at a time and the costliest (largest ``tokens_per_item``)
            first, through :meth:`Modality.limited_fragment`; the item's own slots and the answer
            are never truncated (a sample that still does not fit raises PromptError, which
            callers count and skip).
        anchor_in_prompt: stage 2 only.  Prompts built *without* an answer start their item text
            with ``Title: ANCHOR`` (the item's anchor, e.g. its title), so an item embedding can use
            it; the line comes after the intro and before the modality fragments.  Stage 1 must never
            see the anchor in its prompt (the task would become copying): a builder with this flag
            refuses to build a sample *with* an answer (EarecError), and callers that generate
            (explain, search) never set it.
    """

    def __init__(
        self,
        tokenizer,
        modalities: Mapping[str, Modality],
        *,
        max_length: int = 256,
        system: str = DEFAULT_SYSTEM,
        intro: str = DEFAULT_INTRO,
        question: str = DEFAULT_QUESTION,
        anchor_in_prompt: bool = False,
    ):
        if tokenizer.eos_token_id is None:
            raise EarecError("the tokenizer has no EOS token; cannot mark the end of the anchor")
        self.tokenizer = tokenizer
        self.modalities = dict(modalities)
        self.max_length = max_length
        self.system, self.intro, self.question = system, intro, question
        self.anchor_in_prompt = bool(anchor_in_prompt)
        self.slot_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._placeholders = {m.placeholder: name for name, m in self.modalities.items() if m.placeholder}
        self._split_re = (
            re.compile("(" + "|".join(re.escape(p) for p in self._placeholders) + ")") if self._placeholders else None
        )

    # -- rendering ------------------------------------------------------------------------------
    def _neutralise(self, text: str) -> str:
        """Placeholder strings inside free text (a title, a description) must not become slots."""
        for p in self._placeholders:
            text = text.replace(p, p.replace("<", "‹").replace(">", "›"))
        return text

    def _checked(self, name: str, frag: Fragment | None) -> Fragment | None:
        modality = self.modalities[name]
        if frag is None:
            return None
        if modality.placeholder is None:
            return Fragment(self._neutralise(frag.text), [])
        if frag.text.count(modality.placeholder) != len(frag.slot_items):
            raise PromptError(
                f"modality {name!r}: fragment has {frag.text.count(modality.placeholder)} placeholders "
                f"but {len(frag.slot_items)} slot items"
            )
        return frag

    def fragments(self, item, *, with_related: bool) -> list[tuple[str, Fragment]]:
        out = []
        for name, modality in self.modalities.items():
            frag = self._checked(name, modality.fragment(item, with_related=with_related))
            if frag is not None:
                out.append((name, frag))
        return out

    def _limited_fragments(self, item, full, limits: Mapping[str, int], related: Mapping[str, int]):
        """``full`` with modality ``m`` re-rendered to at most ``limits[m]`` related slots."""
        out = []
        for name, frag in full:
            if limits[name] < related[name]:
                frag = self._checked(name, self.modalities[name].limited_fragment(item, limits[name]))
            if frag is not None:
                out.append((name, frag))
        return out

    def render(self, frags: Sequence[tuple[str, Fragment]]) -> str:
        """The prompt text (chat template applied, generation prompt added)."""
        user = "\n".join([self.intro, *(f.text for _, f in frags), self.question])
        messages = [{"role": "system", "content": self.system}, {"role": "user", "content": user}]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"System: {self.system}\nUser: {user}\nAssistant: "

    def _tokenise(self, text: str, frags: Sequence[tuple[str, Fragment]]) -> tuple[list[int], list[SlotRef]]:
        queue = {name: list(f.slot_items) for name, f in frags}
        ids: list[int] = []
        slots: list[SlotRef] = []
        pieces = self._split_re.split(text) if self._split_re else [text]
        for piece in pieces:
            if piece in self._placeholders:
                name = self._placeholders[piece]
                k = self.modalities[name].tokens_per_item
                slots.append(SlotRef(name, queue[name].pop(0), len(ids), k))
                ids.extend([self.slot_token_id] * k)
            elif piece:
                ids.extend(self.tokenizer(piece, add_special_tokens=False)["input_ids"])
        return ids, slots

    # -- public ---------------------------------------------------------------------------------
    def build(self, item, *, with_answer: bool, with_related: bool = True) -> Sample:
        """Tokenise ``item``'s prompt (with its anchor + EOS as the answer if ``with_answer``).

        Raises:
            PromptError: empty anchor when an answer is asked for, no modality has input for the
                item, or the sample exceeds ``max_length`` even without related items.
        """
        answer: list[int] = []
        if with_answer and self.anchor_in_prompt:
            raise EarecError("a prompt that shows the anchor cannot be an alignment sample (the model would copy "
                             "it); anchor_in_prompt is for stage-2 item embeddings only")
        if with_answer:
            anchor = " ".join(item.anchor.split())
            if not anchor:
                raise PromptError(f"item {item.id!r} has an empty anchor (title); it cannot be an alignment sample")
            answer = self.tokenizer(self._neutralise(anchor), add_special_tokens=False)["input_ids"]
            answer = answer + [self.tokenizer.eos_token_id]
        full = frags = self.fragments(item, with_related=with_related)
        if not frags:
            raise PromptError(f"item {item.id!r} has no input for modalities {sorted(self.modalities)}")
        if self.anchor_in_prompt and " ".join(item.anchor.split()):
            title = Fragment(self._neutralise("Title: " + " ".join(item.anchor.split())), [])
            full = frags = [("", title), *frags]
        # Related slots per modality (slots with related items minus slots without), so they can be
        # dropped one at a time, the costliest (largest k) first, until the prompt fits.
        own = {name: len(f.slot_items) for name, f in self.fragments(item, with_related=False)} if with_related else {}
        related = {name: max(0, len(f.slot_items) - own.get(name, 0)) if with_related else 0 for name, f in frags}
        limits = dict(related)
        tried: set[tuple[str, ...]] = set()
        while True:
            key = tuple(f.text for _, f in frags)
            if key not in tried:  # an all-or-nothing modality renders the same prompt for several limits
                tried.add(key)
                prompt_ids, slots = self._tokenise(self.render(frags), frags)
                if len(prompt_ids) + len(answer) <= self.max_length:
                    labels = [IGNORE_INDEX] * len(prompt_ids) + answer
                    return Sample(item.id, prompt_ids + answer, labels, slots)
            droppable = [name for name in limits if limits[name] > 0]
            if not droppable:
                break
            name = max(droppable, key=lambda n: (self.modalities[n].tokens_per_item, limits[n]))
            limits[name] -= 1
            frags = self._limited_fragments(item, full, limits, related)
        raise PromptError(
            f"item {item.id!r}: prompt of {len(prompt_ids)} + answer of {len(answer)} tokens exceeds "
            f"max_length={self.max_length}; raise --max-length"
        )

    def build_bare(self, item_id: str) -> Sample:
        """The prompt with no modality fragment (for an item that has input for none of them)."""
        ids, _ = self._tokenise(self.render([]), [])
        return Sample(item_id, ids, [IGNORE_INDEX] * len(ids), [])


@dataclass
class Batch:
    """Left-padded tensors for a list of samples.

    Attributes:
        input_ids, attention_mask, labels, position_ids: ``(batch, seq_len)``.
        slot_positions: per modality, flat indices into ``batch * seq_len`` ``(n_slots * k,)``.
        slot_items: per modality, the item id of each slot ``(n_slots,)``.
    """

    item_ids: list[str]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    slot_positions: dict[str, torch.Tensor]
    slot_items: dict[str, list[str]]


def collate(samples: Sequence[Sample], pad_id: int) -> Batch:
    """Left-pad samples into a :class:`Batch`; position ids count real tokens only, so a
    sample's outputs do not depend on how much padding its batch needed."""
    width = max(len(s.input_ids) for s in samples)
    n = len(samples)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    positions: dict[str, list[int]] = {}
    items: dict[str, list[str]] = {}
    for r, s in enumerate(samples):
        off = width - len(s.input_ids)
        input_ids[r, off:] = torch.tensor(s.input_ids)
        labels[r, off:] = torch.tensor(s.labels)
        mask[r, off:] = 1
        for slot in s.slots:
            base = r * width + off + slot.start
            positions.setdefault(slot.modality, []).extend(range(base, base + slot.k))
            items.setdefault(slot.modality, []).append(slot.item_id)
    position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return Batch(
        item_ids=[s.item_id for s in samples],
        input_ids=input_ids,
        attention_mask=mask,
        labels=labels,
        position_ids=position_ids,
        slot_positions={m: torch.tensor(p, dtype=torch.long) for m, p in positions.items()},
        slot_items=items,
    )


def splice(
    token_embeddings: torch.Tensor,
    batch: Batch,
    modalities: Mapping[str, Modality],
    projectors: Mapping[str, nn.Module],
) -> torch.Tensor:
    """Replace slot positions of ``token_embeddings`` ``(batch, seq_len, hidden)`` with
    ``projector(encoder(items))`` for each modality; returns a new tensor of the same shape.

    Raises:
        EarecError: if a projector's output width differs from ``hidden``.
    """
    b, length, hidden = token_embeddings.shape
    flat = token_embeddings.reshape(b * length, hidden)
    for name, positions in batch.slot_positions.items():
        params = list(projectors[name].parameters())
        dtype = params[0].dtype if params else flat.dtype
        feats = modalities[name].encode(batch.slot_items[name]).to(device=flat.device, dtype=dtype)
        proj = projectors[name](feats)
        if proj.shape[-1] != hidden:
            raise EarecError(f"projector of {name!r} outputs width {proj.shape[-1]}, the LLM expects {hidden}")
        flat = flat.index_put((positions.to(flat.device),), proj.reshape(-1, hidden).to(flat.dtype))
    return flat.reshape(b, length, hidden)


def build_samples(builder, catalog, item_ids, *, with_answer: bool, with_related: bool) -> tuple[list[Sample], dict[str, int]]:
    """Samples for ``item_ids``; items that cannot form one (no input for the modality, empty
    anchor, over budget) are skipped and counted by reason, never crash the loop."""
    samples, skipped = [], {}
    for iid in item_ids:
        try:
            samples.append(builder.build(catalog[iid], with_answer=with_answer, with_related=with_related))
        except PromptError as exc:
            reason = str(exc).split(":", 1)[-1].strip().split(";")[0][:60]
            skipped[reason] = skipped.get(reason, 0) + 1
    return samples, skipped
