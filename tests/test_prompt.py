"""Prompts, supervision masks and slot splicing, with SmolLM2's real tokenizer and chat template."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from earec_core.data import Item
from earec_core.errors import EarecError
from earec_core.modality import Fragment, Modality
from earec_core.prompt import IGNORE_INDEX, PromptBuilder, PromptError, collate, splice
from earec_text import TextModality


class VectorModality(Modality):
    """A slot modality whose encoder returns a known vector per item (k tokens each)."""

    name = "vec"
    placeholder = "<vec>"

    def __init__(self, k=1, dim=4, **options):
        super().__init__(**options)
        self.k, self.dim = k, dim

    @property
    def feature_dim(self):
        return self.dim

    @property
    def tokens_per_item(self):
        return self.k

    def fragment(self, item, *, with_related=True):
        slots = [item.id] + (item.related if with_related else [])
        return Fragment("Vec: " + " ".join([self.placeholder] * len(slots)), slots)

    def encode(self, item_ids):
        vals = torch.tensor([float(i) for i in item_ids])
        return vals[:, None, None].expand(len(item_ids), self.k, self.dim).clone()


def test_supervised_span_is_exactly_anchor_plus_eos(ml100k, tokenizer):
    builder = PromptBuilder(tokenizer, {"text": TextModality()})
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # SmolLM2: the hard case
    for item in ml100k.catalog.items[:200]:
        s = builder.build(item, with_answer=True)
        sup = [t for t in s.labels if t != IGNORE_INDEX]
        assert len(sup) >= 2
        assert sup[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(sup[:-1]) == item.anchor
        first = next(i for i, t in enumerate(s.labels) if t != IGNORE_INDEX)
        assert all(t != IGNORE_INDEX for t in s.labels[first:])  # one contiguous answer span at the end
        assert s.input_ids[first:] == sup


def test_eos_stays_supervised_after_padding_when_pad_equals_eos(ml100k, tokenizer):
    builder = PromptBuilder(tokenizer, {"text": TextModality()})
    samples = [builder.build(it, with_answer=True) for it in ml100k.catalog.items[:8]]
    batch = collate(samples, tokenizer.pad_token_id)
    for r, s in enumerate(samples):
        assert batch.labels[r, -1].item() == tokenizer.eos_token_id
        assert (batch.labels[r] != IGNORE_INDEX).sum().item() == s.n_supervised
        n_pad = batch.input_ids.shape[1] - len(s.input_ids)
        assert (batch.labels[r, :n_pad] == IGNORE_INDEX).all() and (batch.attention_mask[r, :n_pad] == 0).all()


def test_empty_anchor_is_refused(tokenizer):
    builder = PromptBuilder(tokenizer, {"text": TextModality()})
    with pytest.raises(PromptError, match="empty anchor"):
        builder.build(Item("x", "   ", {"genre": "Drama"}), with_answer=True)
    # but the item can still be embedded
    assert builder.build(Item("x", "", {"genre": "Drama"}), with_answer=False).n_supervised == 0


def test_placeholder_text_inside_metadata_never_becomes_a_slot(tokenizer):
    builder = PromptBuilder(tokenizer, {"text": TextModality(), "vec": VectorModality()})
    item = Item("1", "A <vec> title", {"note": "contains <vec> literally"})
    s = builder.build(item, with_answer=True)
    assert len(s.slots) == 1 and s.slots[0].item_id == "1"


def test_slots_expand_to_k_positions_and_splice_places_features(tokenizer):
    mod = VectorModality(k=3, dim=8)
    builder = PromptBuilder(tokenizer, {"vec": mod})
    items = [Item("2", "Two", related=["5", "7"]), Item("3", "Three")]
    samples = [builder.build(it, with_answer=True) for it in items]
    assert [len(s.slots) for s in samples] == [3, 1]
    batch = collate(samples, tokenizer.pad_token_id)
    emb = torch.zeros(*batch.input_ids.shape, 8)
    out = splice(emb, batch, {"vec": mod}, {"vec": nn.Identity()})
    flat = out.reshape(-1, 8)
    expected = [float(i) for i in ["2", "2", "2", "5", "5", "5", "7", "7", "7", "3", "3", "3"]]
    assert flat[batch.slot_positions["vec"]][:, 0].tolist() == expected
    mask = torch.ones(flat.shape[0], dtype=torch.bool)
    mask[batch.slot_positions["vec"]] = False
    assert (flat[mask] == 0).all()  # nothing else touched


def test_budget_drops_related_slots_before_the_answer(tokenizer):
    mod = VectorModality(k=20)
    item = Item("2", "Two words", related=["5", "7", "9"])
    full = PromptBuilder(tokenizer, {"vec": mod}, max_length=4096).build(item, with_answer=True)
    tight = PromptBuilder(tokenizer, {"vec": mod}, max_length=len(full.input_ids) - 1).build(item, with_answer=True)
    assert len(tight.slots) == 1  # related slots dropped
    assert tokenizer.decode([t for t in tight.labels if t != IGNORE_INDEX][:-1]) == "Two words"
    with pytest.raises(PromptError, match="exceeds max_length"):
        PromptBuilder(tokenizer, {"vec": mod}, max_length=10).build(item, with_answer=True)


def test_fragment_slot_mismatch_is_reported(tokenizer):
    class Broken(VectorModality):
        def fragment(self, item, *, with_related=True):
            return Fragment("Vec: <vec> <vec>", [item.id])

    with pytest.raises(PromptError, match="2 placeholders but 1 slot items"):
        PromptBuilder(tokenizer, {"vec": Broken()}).build(Item("1", "x"), with_answer=False)


def test_projector_width_mismatch_is_clear(tokenizer):
    from earec_core.errors import EarecError

    mod = VectorModality(dim=4)
    batch = collate([PromptBuilder(tokenizer, {"vec": mod}).build(Item("1", "x"), with_answer=False)], 0)
    with pytest.raises(EarecError, match="outputs width 4"):
        splice(torch.zeros(*batch.input_ids.shape, 16), batch, {"vec": mod}, {"vec": nn.Identity()})


def _prompt_text(tokenizer, sample) -> str:
    return tokenizer.decode([t for t, lab in zip(sample.input_ids, sample.labels) if lab == IGNORE_INDEX])


def test_anchor_in_prompt_is_a_stage_2_option_only(ml100k, tokenizer):
    """Stage 2 may show the title (``anchor_in_prompt``); stage-1 samples never do, and a builder
    that shows it refuses to make an alignment sample (the task would be copying)."""
    plain = PromptBuilder(tokenizer, {"text": TextModality()})
    titled = PromptBuilder(tokenizer, {"text": TextModality()}, anchor_in_prompt=True)
    for item in ml100k.catalog.items[:50]:
        stage1 = plain.build(item, with_answer=True)
        assert item.anchor not in _prompt_text(tokenizer, stage1)
        assert "Title:" not in _prompt_text(tokenizer, stage1)
        stage2 = titled.build(item, with_answer=False)
        text = _prompt_text(tokenizer, stage2)
        assert f"Title: {' '.join(item.anchor.split())}" in text
        assert text.index("Title:") < text.index("Description:")  # before the modality fragments
        assert item.anchor not in _prompt_text(tokenizer, plain.build(item, with_answer=False))
        with pytest.raises(EarecError, match="anchor_in_prompt is for stage-2"):
            titled.build(item, with_answer=True)


def test_anchor_line_keeps_slots_and_placeholder_safety(tokenizer):
    titled = PromptBuilder(tokenizer, {"text": TextModality(), "vec": VectorModality()}, anchor_in_prompt=True)
    item = Item("1", "A <vec> title", {"note": "n"}, related=["2"])
    s = titled.build(item, with_answer=False)
    assert [slot.item_id for slot in s.slots] == ["1", "2"]  # the anchor's literal <vec> is not a slot
    # an item without an anchor just has no title line
    bare = titled.build(Item("3", "", {"note": "n"}), with_answer=False)
    assert "Title:" not in tokenizer.decode(bare.input_ids)
