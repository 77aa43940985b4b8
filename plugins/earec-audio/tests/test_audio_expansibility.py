"""The paper's expansibility claim, checked on a tiny Llama through the real CLI: text and
behaviour are aligned and composed; audio is then aligned ALONE and added to the existing
composition with `earec compose --add audio=λ --from NAME`, without touching anything else."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from click.testing import CliRunner
from wavgen import write_audio_dataset

from earec_core.cli import cli
from earec_core.workspace import Workspace

# 3 optimiser steps (the first is warm-up at lr 0) with a large lr, so every adapter is non-zero
ALIGN = ["--quiet", "--align-items", "12", "--batch-size", "4", "--lora-rank", "4", "--lora-alpha", "8",
         "--lora-lr", "0.01", "--projector-lr", "0.01", "--projector-pretrain-epochs", "0"]


def run_cli(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def snapshot(run_dir):
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_llm_dir):
    root = tmp_path_factory.mktemp("expand")
    data = write_audio_dataset(root, n_users=60, n_items=60)
    run_dir = root / "run"
    Workspace(run_dir, progress=False, dataset=str(data), llm=str(tiny_llm_dir), k_core=3,
              recommender_options={"max_epochs": 2, "hidden_size": 16, "inner_size": 32},
              modality_options={"audio": {"tokens": 4, "dim": 32, "n_mels": 40}})  # saved in run.json
    run_cli("align", "--modality", "text", "--run-dir", run_dir, *ALIGN)
    run_cli("align", "--modality", "behavior", "--run-dir", run_dir, *ALIGN)
    run_cli("compose", "--weights", "text=0.5,behavior=0.5", "--name", "tb", "--run-dir", run_dir, "--quiet")
    before = snapshot(run_dir)
    run_cli("align", "--modality", "audio", "--run-dir", run_dir, *ALIGN)
    after_align = snapshot(run_dir)
    run_cli("compose", "--add", "audio=0.2", "--from", "tb", "--run-dir", run_dir, "--quiet")
    run_cli("compose", "--add", "audio=0", "--from", "tb", "--name", "tb+audio0", "--run-dir", run_dir, "--quiet")
    after_compose = snapshot(run_dir)
    # the rest of the user's path, still through the CLI: item embeddings, then SASRec on them
    run_cli("embed", "tb+audio", "--run-dir", run_dir, "--quiet")
    rec = run_cli("recommend", "tb+audio", "--run-dir", run_dir, "--quiet")
    return run_dir, before, after_align, after_compose, rec.output


def test_aligning_audio_writes_only_audio_files(run):
    run_dir, before, after_align, *_ = run
    new_or_changed = {p for p, h in after_align.items() if before.get(p) != h}
    assert new_or_changed and all(p.startswith(("adapters/audio/", "encoders/audio/")) for p in new_or_changed)
    assert {p for p in before if p not in after_align} == set()
    assert "adapters/audio/projector.safetensors" in new_or_changed
    meta = json.loads((run_dir / "adapters" / "audio" / "modality.json").read_text())
    assert meta["feature_dim"] == 32 and meta["tokens_per_item"] == 4


def test_other_modalities_files_are_byte_identical_after_align_and_compose(run):
    _, before, _, after_compose, _ = run
    kept = [p for p in before if p.startswith(("adapters/text/", "adapters/behavior/", "encoders/behavior/",
                                                "compositions/tb/"))]
    assert any(p.endswith("adapter_model.safetensors") for p in kept)
    assert "adapters/behavior/projector.safetensors" in kept
    for p in kept:
        assert after_compose[p] == before[p], p


def test_composition_json_records_the_parent_and_rescaled_weights(run):
    run_dir, *_ = run
    info = json.loads((run_dir / "compositions" / "tb+audio" / "composition.json").read_text())
    assert info["parent"] == "tb" and info["added"] == {"audio": 0.2}
    assert info["weights"] == pytest.approx({"text": 0.4, "behavior": 0.4, "audio": 0.2})
    assert info["mode"] == "param" and set(info["modalities"]) == {"text", "behavior", "audio"}
    assert (run_dir / "compositions" / "tb+audio" / "projectors" / "audio.safetensors").is_file()


def test_zero_audio_weight_reproduces_the_parent_logits(run):
    from earec_core.model import load_aligned

    ws = Workspace(run[0], progress=False)
    parent, child = load_aligned(ws, "tb"), load_aligned(ws, "tb+audio0")
    ids = ws.tokenizer("Song number 3. What is the item's title?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b = parent.model(input_ids=ids).logits, child.model(input_ids=ids).logits
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # not vacuous: the parent's adapter does change the backbone
        assert not torch.allclose(ws.base_model()(input_ids=ids).logits, a, atol=1e-4)
    full = load_aligned(ws, "tb+audio")
    with torch.no_grad():
        assert not torch.allclose(full.model(input_ids=ids).logits, a, atol=1e-4)  # λ_audio = 0.2 changes the adapter


def test_audio_changes_embeddings_of_items_with_audio_only(run):
    from earec_core.embed import encode_items
    from earec_core.model import load_aligned

    ws = Workspace(run[0], progress=False)
    catalog = ws.dataset.catalog
    aligned = load_aligned(ws, "tb+audio")
    audio = aligned.modalities["audio"]
    with_audio = [iid for iid in catalog.ids if audio.has_audio(iid)]
    without = [iid for iid in catalog.ids if not audio.has_audio(iid)]
    assert with_audio and without
    ids = with_audio + without
    full = encode_items(aligned, ws.builder(aligned.modalities), catalog, ids, precision="fp32", progress=False)
    no_audio_prompt = {m: x for m, x in aligned.modalities.items() if m != "audio"}
    base = encode_items(aligned, ws.builder(no_audio_prompt), catalog, ids, precision="fp32", progress=False)
    assert torch.isfinite(full).all()
    n = len(with_audio)
    assert all(not torch.allclose(full[i], base[i], atol=1e-4) for i in range(n))
    torch.testing.assert_close(full[n:], base[n:], rtol=1e-5, atol=1e-5)  # no audio: same prompt, same row


def test_embed_and_recommend_on_the_extended_composition(run):
    run_dir, *_, output = run
    from safetensors.torch import load_file

    ws = Workspace(run_dir, progress=False)
    table = load_file(str(run_dir / "embeddings" / "tb+audio" / "item_embeddings.safetensors"))
    emb = table["embeddings"]
    assert emb.shape[0] == len(ws.dataset.catalog.ids) and torch.isfinite(emb).all()
    metrics = json.loads((run_dir / "recommend" / "tb+audio" / "metrics.json").read_text())
    for split in ("valid", "test"):
        assert set(metrics[split]) >= {"HR@10", "NDCG@10", "HR@50", "NDCG@50"}
        assert all(0.0 <= v <= 1.0 for v in metrics[split].values())
        assert metrics[split]["NDCG@10"] <= metrics[split]["HR@10"] <= metrics[split]["HR@50"]
    assert "ndcg@10" in output.lower()
