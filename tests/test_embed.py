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


def test_sharded_output_equals_one_file_and_streams_one_shard_at_a_time(ws):
    from earec_core import embstore
    from earec_core.embed import embed

    one = load_embeddings(embed(ws, "base:text", precision="fp32"))
    out = embed(ws, "base:text", precision="fp32", shard_size=7, force=True)
    index = (out / embstore.INDEX_FILE)
    assert index.is_file() and not (out / embstore.EMBEDDINGS_FILE).exists()
    shards = list(embstore.iter_embeddings(out))
    n = len(ws.dataset.catalog.ids)
    assert [len(ids) for ids, _ in shards] == [7] * (n // 7) + ([n % 7] if n % 7 else [])
    torch.testing.assert_close(load_embeddings(out, ws.dataset.catalog.ids), one, rtol=1e-4, atol=1e-4)
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # shard work folder removed


def test_embedding_interrupted_after_some_shards_resumes_without_redoing_them(ws, monkeypatch):
    from earec_core import embed as embed_module

    reference = load_embeddings(embed_module.embed(ws, "base:text", precision="fp32"))
    ws2 = Workspace(ws.dir.parent / "run2", progress=False, llm=ws["llm"], dataset=ws["dataset"], k_core=3)
    real_save, saved = embed_module.save_shard, []

    def crash_after_two(path, emb, ids, source):
        if len(saved) == 2:
            raise KeyboardInterrupt  # what a user's Ctrl-C (or a kill) does mid-stage
        real_save(path, emb, ids, source)
        saved.append(list(ids))

    monkeypatch.setattr(embed_module, "save_shard", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        embed_module.embed(ws2, "base:text", precision="fp32", shard_size=5)
    out = ws2.embeddings_dir("base-text")
    assert not out.exists()  # nothing that looks finished

    encoded = []
    real_encode = embed_module.encode_items
    monkeypatch.setattr(embed_module, "save_shard", real_save)
    monkeypatch.setattr(embed_module, "encode_items", lambda *a, **k: encoded.append(list(a[3])) or real_encode(*a, **k))
    embed_module.embed(ws2, "base:text", precision="fp32", shard_size=5)
    ids = ws2.dataset.catalog.ids
    assert encoded and saved[0] not in encoded and saved[1] not in encoded  # finished shards were kept
    assert sum(map(len, encoded)) == len(ids) - 10
    torch.testing.assert_close(load_embeddings(out, ids), reference, rtol=1e-4, atol=1e-4)


def test_a_corrupt_embedding_file_is_a_clear_error(ws):
    from earec_core.embed import embed

    out = embed(ws, "base:text", precision="fp32")
    (out / "item_embeddings.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ArtifactError, match="not a readable item-embedding file"):
        load_embeddings(out)


def test_prefix_cache_gives_the_same_embeddings_as_full_prompts(ws):
    aligned = load_aligned(ws, "base:text")
    builder = ws.builder(aligned.modalities)
    catalog = ws.dataset.catalog
    ids = catalog.ids[:20] + ["bare-item"]
    bare = Item("bare-item", "Untitled", attributes={})
    catalog.items.append(bare)
    catalog._by_id["bare-item"] = bare  # a bare prompt (no modality input) in the same batches
    full = encode_items(aligned, builder, catalog, ids, batch_size=8, precision="fp32", progress=False,
                        prefix_cache=False)
    cached = encode_items(aligned, builder, catalog, ids, batch_size=8, precision="fp32", progress=False)
    torch.testing.assert_close(cached, full, rtol=1e-4, atol=1e-4)


def test_shared_prefix_stops_before_the_first_slot_and_keeps_a_last_token():
    from earec_core.embed import shared_prefix_length
    from earec_core.prompt import Sample, SlotRef

    a = Sample("a", [1, 2, 3, 4, 5, 6], [-100] * 6)
    b = Sample("b", [1, 2, 3, 9, 5], [-100] * 5)
    assert shared_prefix_length([a, b]) == 3
    assert shared_prefix_length([a, a]) == 5  # identical prompts: the last token is never cached
    c = Sample("c", [1, 2, 3, 4, 5, 6], [-100] * 6, slots=[SlotRef("behavior", "c", 2, 1)])
    assert shared_prefix_length([a, c]) == 2
    assert shared_prefix_length([Sample("d", [7], [-100])]) == 0
