"""Item embeddings: batch/padding invariance, order, and missing modalities."""

from __future__ import annotations

import pytest
import torch

from earec_core.data import Item
from earec_core.embed import encode_items, load_embeddings
from earec_core.errors import ArtifactError
from earec_core.model import load_aligned
from earec_core.workspace import Workspace


@pytest.fixture
def ws(tmp_path, tiny_llm_dir, make_dataset):
    return Workspace(tmp_path / "run", progress=False, llm=str(tiny_llm_dir), dataset=str(make_dataset(tmp_path)),
                     k_core=3)


def test_embedding_does_not_depend_on_batch_or_padding(ws):
    aligned = load_aligned(ws, "base:text")
    builder = ws.builder(aligned.modalities)
    catalog = ws.dataset.catalog
    ids = catalog.ids[:12]
    one = encode_items(aligned, builder, catalog, ids, batch_size=1, precision="fp32", progress=False)
    many = encode_items(aligned, builder, catalog, ids, batch_size=12, precision="fp32", progress=False)
    lengths = {len(builder.build(catalog[i], with_answer=False).input_ids) for i in ids}
    assert len(lengths) > 1  # the batch really needed padding
    torch.testing.assert_close(one, many, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(one[0], one[1])  # distinct items, distinct embeddings


def test_item_without_any_modality_input_gets_a_finite_embedding(ws):
    aligned = load_aligned(ws, "base:text")
    builder = ws.builder(aligned.modalities)
    catalog = ws.dataset.catalog
    bare = Item("bare", "No metadata at all", attributes={})
    catalog.items.append(bare)
    catalog._by_id["bare"] = bare
    emb = encode_items(aligned, builder, catalog, ["bare", catalog.ids[0]], batch_size=2, precision="fp32",
                       progress=False)
    assert torch.isfinite(emb).all() and not torch.allclose(emb[0], emb[1])


def test_saved_embeddings_reorder_to_the_catalog_and_reject_missing_items(ws):
    from earec_core.embed import embed

    out = embed(ws, "base:text", precision="fp32")
    ids = ws.dataset.catalog.ids
    emb = load_embeddings(out, ids)
    rev = load_embeddings(out, ids[::-1])
    torch.testing.assert_close(rev, emb.flip(0))
    with pytest.raises(ArtifactError, match="no embedding for 1 items"):
        load_embeddings(out, ids + ["unknown"])
