"""`earec run` end to end through the real CLI: tiny in-process Llama (saved as a local HF
folder) + a small RecBole-format dataset; every stage runs for real, just small."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from earec_core.cli import cli


def run_cli(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_llm_dir, make_dataset):
    root = tmp_path_factory.mktemp("e2e")
    data = make_dataset(root)
    run_dir = root / "run"
    result = run_cli(
        "run", "--run-dir", run_dir, "--dataset", data, "--llm", tiny_llm_dir, "--quiet", "--k-core", "3",
        "--align-items", "24", "--batch-size", "8", "--explain-items", "4",
        "--rec-option", "max_epochs=3", "--rec-option", "hidden_size=16", "--rec-option", "inner_size=32",
    )
    return run_dir, result.output


def test_run_writes_the_results_table(finished_run):
    run_dir, output = finished_run
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["models"]) == {"ID SASRec", "EARec_T", "EARec_TB"}
    for r in results["models"].values():
        for split in ("valid", "test"):
            assert set(r[split]) == {"HR@10", "NDCG@10", "HR@50", "NDCG@50"}
            assert 0 <= r[split]["NDCG@10"] <= r[split]["HR@10"] <= 1
    assert set(results["rougeL"]) == {
        "text (before alignment)", "text (aligned alone)", "behavior (before alignment)",
        "behavior (aligned alone)", "text+behavior (composed)",
    }
    assert set(results["rougeL_train"]) == set(results["rougeL"])  # also scored on items aligned on
    assert all(0 <= v <= 1 for v in results["rougeL_train"].values())
    assert "EARec_TB" in (run_dir / "results.md").read_text() and "EARec_TB" in output


def test_lambda_is_chosen_on_validation_only(finished_run):
    from earec_core.search import default_candidates

    run_dir, _ = finished_run
    results = json.loads((run_dir / "results.json").read_text())
    sweep = json.loads((run_dir / "search" / "sweep.json").read_text())
    assert [c["weights"] for c in sweep["candidates"]] == default_candidates(["text", "behavior"])
    best = max(sweep["candidates"], key=lambda c: c["valid"]["NDCG@10"])  # first of ties, as the search
    assert results["weights"] == best["weights"] == sweep["chosen"]["weights"]
    assert any("chosen on validation" in n for n in results["notes"])
    composed = json.loads((run_dir / "compositions" / "text+behavior" / "composition.json").read_text())
    assert composed["weights"] == best["weights"]
    # the chosen candidate is the EARec_TB row: trained once, not again under another name
    assert results["models"]["EARec_TB"] == {"valid": best["valid"], "test": best["test"]}
    assert not (run_dir / "recommend" / "EARec_TB").exists()
    assert not any("EARec_TB" in stage for stage in results["seconds"])


def test_adapters_are_peft_loadable_and_projectors_safetensors(finished_run, tiny_llm_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run_dir, _ = finished_run
    for m in ("text", "behavior"):
        d = run_dir / "adapters" / m
        assert (d / "adapter_model.safetensors").is_file() and (d / "adapter_config.json").is_file()
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llm_dir), str(d))
        assert any("lora_A" in n for n, _ in model.named_parameters())
    proj = load_file(str(run_dir / "adapters" / "behavior" / "projector.safetensors"))
    assert proj["2.weight"].shape == (64, 64)  # mlp2x_gelu ending at the tiny LLM's width
    assert not (run_dir / "adapters" / "text" / "projector.safetensors").exists()


def test_embeddings_cover_every_item_in_catalog_order(finished_run):
    from earec_core.embed import load_embeddings
    from earec_core.workspace import Workspace

    run_dir, _ = finished_run
    ws = Workspace(run_dir, progress=False)
    chosen = json.loads((run_dir / "search" / "sweep.json").read_text())["chosen"]["name"]
    for label in ("text", chosen):
        emb = load_embeddings(run_dir / "embeddings" / label, ws.dataset.catalog.ids)
        assert emb.shape == (len(ws.dataset.catalog), 64) and torch.isfinite(emb).all()


def test_rerun_skips_current_stages(finished_run, tiny_llm_dir):
    run_dir, _ = finished_run
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*.safetensors")}
    run_cli("run", "--run-dir", run_dir, "--quiet", "--align-items", "24", "--batch-size", "8",
            "--explain-items", "4")
    after = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*.safetensors")}
    assert before == after


def test_cli_errors_are_one_line_not_tracebacks(finished_run):
    run_dir, _ = finished_run
    runner = CliRunner()
    r = runner.invoke(cli, ["align", "--run-dir", str(run_dir), "--modality", "smell", "--quiet"])
    assert r.exit_code != 0 and "no modality named 'smell'" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli, ["compose", "--run-dir", str(run_dir), "--weights", "text=-1,behavior=2", "--quiet"])
    assert r.exit_code != 0 and "negative weights" in r.output
    r = runner.invoke(cli, ["embed", "--run-dir", str(run_dir), "nothing", "--quiet"])
    assert r.exit_code != 0 and "no composition or aligned modality named 'nothing'" in r.output


def test_readme_stage_by_stage_names_compositions_in_any_order(finished_run):
    run_dir, _ = finished_run
    out = run_cli("compose", "--run-dir", run_dir, "--weights", "text=0.5,behavior=0.5", "--quiet").output
    assert "compositions/text+behavior" in out  # default name keeps the given order, like `earec run`
    out = run_cli("embed", "behavior+text", "--run-dir", run_dir, "--quiet").output  # any order resolves
    assert "item embeddings" in out


def test_run_json_survives_bad_settings(finished_run, tmp_path):
    run_dir, _ = finished_run
    before = (run_dir / "run.json").read_text()
    r = CliRunner().invoke(cli, ["prepare", "--run-dir", str(run_dir), "--llm", str(tmp_path / "missing"), "--quiet"])
    assert r.exit_code == 1 and "Error:" in r.output
    assert (run_dir / "run.json").read_text() == before  # a refused --llm is not saved
    bad = tmp_path / "bad-run"
    bad.mkdir()
    (bad / "run.json").write_text("[1, 2]")
    r = CliRunner().invoke(cli, ["prepare", "--run-dir", str(bad), "--quiet"])
    assert r.exit_code == 1 and "not a JSON object" in r.output


def test_second_recommender_plugin_is_selectable(finished_run):
    run_dir, _ = finished_run
    out = run_cli("recommend", "--run-dir", run_dir, "--recommender", "meanpool", "--quiet").output
    assert "meanpool" in out
    metrics = json.loads((run_dir / "recommend" / "id-meanpool" / "metrics.json").read_text())
    assert 0 <= metrics["test"]["NDCG@10"] <= metrics["test"]["HR@10"] <= 1
    # the learning curve is kept: one validation entry per epoch, the best of which is the reported one
    assert metrics["epochs"] == len(metrics["history"]) >= 1
    assert [h["epoch"] for h in metrics["history"]] == list(range(metrics["epochs"]))
    assert max(h["NDCG@10"] for h in metrics["history"]) == pytest.approx(metrics["valid"]["NDCG@10"], abs=1e-3)
    r = CliRunner().invoke(cli, ["recommend", "--run-dir", str(run_dir), "--recommender", "nope", "--quiet"])
    assert r.exit_code == 1 and "no recommender named 'nope'" in r.output
