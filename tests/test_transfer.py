"""Transfer: an aligned model made on one dataset is used on another (the paper's stage 1 on
source domains, stage 2 on a target).  Real CLI, tiny in-process Llama, two datasets whose items
differ; the source is built with `earec make-source` from two mixed datasets."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from earec_core.cli import cli

REC = ("--rec-option", "max_epochs=2", "--rec-option", "hidden_size=16", "--rec-option", "inner_size=32")


def run_cli(*args, ok=True):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_llm_dir, make_dataset):
    """Two source datasets mixed (with the target's titles removed), text aligned on the mix;
    a target dataset with its own behaviour alignment."""
    root = tmp_path_factory.mktemp("transfer")
    shared = {f"i{i}": f"Shared film {i}" for i in range(5)}  # titles the target also has
    src_a = make_dataset(root, "srca", n_users=40, n_items=40, seed=1, titles=shared)
    src_b = make_dataset(root, "srcb", n_users=30, n_items=30, seed=2,
                         titles={f"i{i}": f"Other picture {i}" for i in range(30)})
    target = make_dataset(root, "target", n_users=50, n_items=60, seed=3,
                          titles={f"i{i}": f"Shared film {i}" if i < 5 else f"Target movie {i}" for i in range(60)})
    source = root / "mixed"
    out = run_cli("make-source", "--dataset", src_a, "--dataset", src_b, "--without", target, "--out", source).output
    src_run, tgt_run = root / "src-run", root / "tgt-run"
    common = ("--llm", tiny_llm_dir, "--quiet", "--k-core", "3", "--align-items", "24", "--batch-size", "8", *REC)
    run_cli("align", "--modality", "text", "--run-dir", src_run, "--dataset", source, *common)
    run_cli("align", "--modality", "behavior", "--run-dir", src_run, *common)
    run_cli("align", "--modality", "behavior", "--run-dir", tgt_run, "--dataset", target, *common)
    return {"root": root, "source": source, "src_run": src_run, "tgt_run": tgt_run, "target": target,
            "make_source_output": out, "llm": tiny_llm_dir}


def test_make_source_removes_the_targets_items_and_mixes_sources(world):
    source = world["source"]
    stats = json.loads((source / "subset.json").read_text())
    parts = {p["name"]: p for p in stats["parts"]}
    assert parts["srca"]["items_removed"] == 5 and parts["srcb"]["items_removed"] == 0
    assert stats["items"] == 35 + 30
    items = (source / "mixed.item").read_text()
    assert "Shared film" not in items
    inter = (source / "mixed.inter").read_text().splitlines()
    assert all(line.split("\t")[1].startswith(("srca:", "srcb:")) for line in inter[1:])
    assert stats["interactions"] == len(inter) - 1
    assert "5 removed" in " ".join(world["make_source_output"].split())


def test_aligned_folder_records_its_sources_and_samples_from_each(world):
    meta = json.loads((world["src_run"] / "adapters" / "text" / "modality.json").read_text())
    (source,) = meta["sources"]
    assert source["name"] == "mixed" and source["without_items_of"] == str(world["target"])
    drawn = {p["name"]: p["samples"] for p in source["parts"]}
    assert set(drawn) == {"srca", "srcb"} and all(n > 0 for n in drawn.values())
    assert sum(drawn.values()) == source["samples"] == meta["train_log"]["samples"]
    card = (world["src_run"] / "adapters" / "text" / "README.md").read_text()
    assert "library_name: peft" in card and "mixed" in card and "srca" in card
    assert "r=16" in card and "anchor loss" in card and "transferable to other datasets: yes" in card


def test_model_folder_loads_with_stock_peft(world):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    folder = world["src_run"] / "adapters" / "text"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(world["llm"]), str(folder))
    assert any("lora_A" in n for n, _ in model.named_parameters())


def test_model_folder_embeds_a_dataset_it_was_not_aligned_on(world):
    from earec_core.embed import load_embeddings
    from earec_core.workspace import Workspace

    folder = world["src_run"] / "adapters" / "text"
    out = run_cli("embed", "--model", folder, "--run-dir", world["tgt_run"], "--quiet").output
    ws = Workspace(world["tgt_run"], progress=False)
    (emb_dir,) = [d for d in (world["tgt_run"] / "embeddings").iterdir() if d.name.startswith("text@ext-")]
    assert emb_dir.name in out.replace("\n", "")
    emb = load_embeddings(emb_dir, ws.dataset.catalog.ids)
    assert emb.shape == (len(ws.dataset.catalog), 64) and torch.isfinite(emb).all()
    info = json.loads((emb_dir / "manifest.json").read_text())
    assert info["config"]["source"] == str(folder.resolve()) or info["config"]["source"] == str(folder)
    explained = run_cli("explain", "--model", folder, "--items", "2", "--run-dir", world["tgt_run"], "--quiet").output
    assert "transferred" in explained
    # a folder from another run is scored, never written to
    assert "metrics" not in json.loads((folder / "modality.json").read_text())
    run_cli("explain", "--source", "t=text", "--items", "2", "--train-items", "2", "--run-dir", world["src_run"],
            "--quiet")
    metrics = json.loads((folder / "modality.json").read_text())["metrics"]
    assert set(metrics) == {"ROUGE-L on 2 held-out items of mixed", "ROUGE-L on 2 alignment items of mixed"}
    assert "## Metrics" in (folder / "README.md").read_text() and "held-out items of mixed" in (folder / "README.md").read_text()


def test_behaviour_does_not_transfer_to_another_dataset(world):
    folder = world["src_run"] / "adapters" / "behavior"
    result = run_cli("embed", "--model", folder, "--run-dir", world["tgt_run"], "--quiet", ok=False)
    assert result.exit_code == 1 and "does not transfer" in result.output
    text = world["src_run"] / "adapters" / "text"
    result = run_cli("compose", "--weights", "text=0.5,behavior=0.5", "--adapter", f"behavior={folder}",
                     "--adapter", f"text={text}", "--run-dir", world["tgt_run"], "--quiet", ok=False)
    assert result.exit_code == 1 and "does not transfer" in result.output


def test_compose_takes_adapters_from_other_folders(world):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    text = world["src_run"] / "adapters" / "text"
    run_cli("compose", "--weights", "text=0.9,behavior=0.1", "--adapter", f"text={text}", "--name", "xfer",
            "--run-dir", world["tgt_run"], "--quiet")
    comp = world["tgt_run"] / "compositions" / "xfer"
    info = json.loads((comp / "composition.json").read_text())
    assert info["adapters"]["text"] == str(text.resolve())
    assert info["adapters"]["behavior"] == str(world["tgt_run"] / "adapters" / "behavior")
    assert info["modality_meta"]["text"]["sources"][0]["name"] == "mixed"
    assert info["modality_meta"]["behavior"]["sources"][0]["name"] == "target"
    card = (comp / "README.md").read_text()
    assert "| text | 0.9 | mixed |" in card and "| behavior | 0.1 | target |" in card
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(world["llm"]), str(comp))
    # the composition is self-contained: recommend on it from its folder path, too
    out = run_cli("recommend", "xfer", "--run-dir", world["tgt_run"], "--quiet").output
    assert "NDCG" in out or "xfer" in out
    # --add across folders: a behaviour-free parent extended with the target's own behaviour adapter
    run_cli("compose", "--weights", "text=1", "--adapter", f"text={text}", "--name", "xfer-t",
            "--run-dir", world["tgt_run"], "--quiet")
    run_cli("compose", "--add", "behavior=0.2", "--from", "xfer-t", "--run-dir", world["tgt_run"], "--quiet")
    ext = json.loads((world["tgt_run"] / "compositions" / "xfer-t+behavior" / "composition.json").read_text())
    assert ext["adapters"]["text"] == str(text.resolve()) and ext["weights"]["behavior"] == pytest.approx(0.2)


def test_another_backbone_is_refused(world, tmp_path, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id)
    other = tmp_path / "other-llm"
    LlamaForCausalLM(config).save_pretrained(other)
    tokenizer.save_pretrained(other)
    result = run_cli("embed", "--model", world["src_run"] / "adapters" / "text", "--run-dir", tmp_path / "run",
                     "--dataset", world["target"], "--llm", other, "--k-core", "3", "--quiet", ok=False)
    assert result.exit_code == 1 and "another base model" in result.output and "num_hidden_layers" in result.output
    # a run that already has aligned artifacts does not silently switch its backbone
    again = run_cli("embed", "base:text", "--run-dir", world["tgt_run"], "--llm", other, "--quiet", ok=False)
    assert again.exit_code == 1 and "was built with the backbone" in again.output and "new --run-dir" in again.output
    assert json.loads((world["tgt_run"] / "run.json").read_text())["llm"] == str(world["llm"])


def test_model_path_must_be_an_aligned_folder(world, tmp_path):
    result = run_cli("embed", "--model", tmp_path, "--run-dir", world["tgt_run"], "--quiet", ok=False)
    assert result.exit_code == 1 and "not an aligned-model folder" in result.output


def test_continual_alignment_starts_from_a_source_adapter(world):
    from safetensors.torch import load_file

    src = world["src_run"] / "adapters" / "text"
    run_cli("align", "--modality", "text", "--init-from", src, "--lora-rank", "4", "--align-items", "8",
            "--batch-size", "4", "--run-dir", world["tgt_run"], "--quiet")
    out = world["tgt_run"] / "adapters" / "text"
    meta = json.loads((out / "modality.json").read_text())
    assert meta["initialised_from"]["path"] == str(src.resolve())
    assert meta["initialised_from"]["sources"][0]["name"] == "mixed"
    assert meta["sources"][0]["name"] == "target"
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 16  # the source's rank, not --lora-rank
    before, after = load_file(str(src / "adapter_model.safetensors")), load_file(str(out / "adapter_model.safetensors"))
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # trained further
    assert "Continual alignment" in (out / "README.md").read_text()
    wrong = run_cli("align", "--modality", "behavior", "--init-from", src, "--run-dir", world["tgt_run"], "--quiet",
                    ok=False)
    assert wrong.exit_code == 1 and "holds modality 'text'" in wrong.output


def test_the_runs_own_legacy_adapters_still_compose_and_embed(world):
    """A behaviour adapter aligned before sources were recorded (no ``sources`` in modality.json)
    belongs to its own run: compositions in that run use it without a transfer check."""
    meta_path = world["tgt_run"] / "adapters" / "behavior" / "modality.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("sources")
    meta_path.write_text(json.dumps(meta))
    text = world["src_run"] / "adapters" / "text"
    run_cli("compose", "--weights", "text=0.5,behavior=0.5", "--adapter", f"text={text}", "--name", "legacy",
            "--run-dir", world["tgt_run"], "--quiet")
    run_cli("embed", "legacy", "--run-dir", world["tgt_run"], "--quiet")
    assert (world["tgt_run"] / "embeddings" / "legacy" / "manifest.json").is_file()


def test_a_run_reads_its_dataset_from_a_new_place(world, tmp_path):
    """The same files at another path (a new virtual environment, a copied run) keep the run's
    artifacts valid; a changed file at the new path is still refused."""
    import shutil

    run, target = world["tgt_run"], world["target"]
    manifest = (run / "dataset" / "manifest.json").read_text()
    adapter = (run / "adapters" / "behavior" / "manifest.json").read_text()
    moved = tmp_path / "elsewhere" / target.name
    shutil.copytree(target, moved)
    common = ("--llm", world["llm"], "--quiet", "--k-core", "3", "--align-items", "24", "--batch-size", "8", *REC)
    run_cli("align", "--modality", "behavior", "--run-dir", run, "--dataset", moved, *common)
    assert (run / "dataset" / "manifest.json").read_text() == manifest  # nothing re-recorded, nothing retrained
    assert (run / "adapters" / "behavior" / "manifest.json").read_text() == adapter
    inter = moved / f"{target.name}.inter"
    inter.write_text(inter.read_text().rsplit("\n", 2)[0] + "\n")  # drop the last interaction
    res = run_cli("align", "--modality", "behavior", "--run-dir", run, "--dataset", moved, *common, ok=False)
    assert res.exit_code != 0 and "another dataset setup (files, source differ" in " ".join(res.output.split())
