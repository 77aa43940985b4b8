"""λ search (the paper's Table 4) on a tiny Llama and a toy dataset: a step-0.5 simplex grid over
text and behaviour, every candidate composed for real and scored on validation data only."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from earec_core.align import AlignConfig, align
from earec_core.data import alignment_items
from earec_core.cli import cli
from earec_core.errors import CompositionError, EarecError
from earec_core.search import candidate_name, search_weights, simplex_grid
from earec_core.workspace import Workspace

REC = {"max_epochs": 2, "hidden_size": 16, "inner_size": 32}


def test_simplex_grid_and_names():
    grid = simplex_grid(["text", "behavior"], 0.25)
    assert [(w["text"], w["behavior"]) for w in grid] == [(1, 0), (0.75, 0.25), (0.5, 0.5), (0.25, 0.75), (0, 1)]
    three = simplex_grid(["text", "vision", "behavior"], 0.5)
    assert len(three) == 6 and all(abs(sum(w.values()) - 1) < 1e-9 for w in three)
    assert three[0] == {"text": 1.0, "vision": 0.0, "behavior": 0.0}
    assert len(simplex_grid(["a", "b", "c"], 0.1)) == 66  # C(12, 2)
    assert candidate_name({"text": 0.75, "behavior": 0.25}) == "grid-t0.75-b0.25"
    assert candidate_name({"text": 1.0, "behavior": 0.0}) == "grid-t1-b0"
    assert candidate_name({"audio": 0.5, "art": 0.5}) == "grid-audio0.5-art0.5"
    for bad in (0.3, 0, -0.5, 1.5, float("nan")):
        with pytest.raises(CompositionError):
            simplex_grid(["text", "behavior"], bad)
    with pytest.raises(CompositionError, match="at least two"):
        simplex_grid(["text"], 0.5)


@pytest.fixture(scope="module")
def aligned_ws(tmp_path_factory, tiny_llm_dir, make_dataset):
    root = tmp_path_factory.mktemp("search")
    ws = Workspace(root / "run", progress=False, llm=str(tiny_llm_dir), dataset=str(make_dataset(root)), k_core=3,
                   recommender_options=REC)
    cfg = AlignConfig(max_items=8, batch_size=8, epochs=1, lora_rank=4, lora_alpha=8)
    for m in ("text", "behavior"):
        align(ws, m, cfg)
    return ws


def test_search_scores_every_candidate_on_validation_and_saves_the_sweep(aligned_ws):
    ws = aligned_ws
    sweep = search_weights(ws, ["text", "behavior"], step=0.5, items=4, precision="fp32", max_new_tokens=8)
    names = [c["name"] for c in sweep["candidates"]]
    trained, _ = alignment_items(ws.dataset.catalog, ws["seed"], 32, 8)
    assert len(sweep["held_out_items"]) == 4 and not set(sweep["held_out_items"]) & set(trained)  # validation only
    assert names == ["grid-t1-b0", "grid-t0.5-b0.5", "grid-t0-b1"]
    for c in sweep["candidates"]:
        assert (ws.dir / "compositions" / c["name"] / "composition.json").is_file()
        assert 0 <= c["valid_rougeL"] <= 1 and len(c["generations"]) == 4
        assert 0 <= c["valid"]["NDCG@10"] <= c["valid"]["HR@10"] <= 1
        assert json.loads((ws.dir / c["sources"]["valid"]).read_text())["valid"] == c["valid"]
    best = max(sweep["candidates"], key=lambda c: c["valid"]["NDCG@10"])
    assert sweep["chosen"]["value"] == best["valid"]["NDCG@10"] and sweep["chosen"]["criterion"] == "valid NDCG@10"
    saved = json.loads((ws.dir / "search" / "sweep.json").read_text())
    assert saved["chosen"] == sweep["chosen"] and saved["config"]["seed"] == ws["seed"]
    md = (ws.dir / "search" / "sweep.md").read_text()
    assert "(chosen)" in md and "grid-t0.5-b0.5" in md and "λ text" in md
    assert (ws.dir / "search" / "manifest.json").is_file()

    # cached: the same search reads the sweep back without touching any artifact
    before = {p: p.stat().st_mtime_ns for p in ws.dir.rglob("*") if p.is_file()}
    again = search_weights(ws, ["text", "behavior"], step=0.5, items=4, precision="fp32", max_new_tokens=8)
    assert again["chosen"] == sweep["chosen"]
    assert {p: p.stat().st_mtime_ns for p in ws.dir.rglob("*") if p.is_file()} == before


def test_search_can_select_on_rouge_only(aligned_ws):
    sweep = search_weights(aligned_ws, ["text", "behavior"], step=0.5, criteria=["rouge"], items=4, max_new_tokens=4)
    assert all("valid" not in c and "test" not in c for c in sweep["candidates"])
    assert sweep["chosen"]["value"] == max(c["valid_rougeL"] for c in sweep["candidates"])
    with pytest.raises(EarecError, match="cannot select"):
        search_weights(aligned_ws, ["text", "behavior"], step=0.5, criteria=["rouge"], select="ndcg")
    with pytest.raises(CompositionError, match="not aligned"):
        search_weights(aligned_ws, ["text", "vision"], step=0.5)


def test_search_weights_cli(aligned_ws):
    r = CliRunner().invoke(cli, ["search-weights", "--run-dir", str(aligned_ws.dir), "--step", "0.5", "--items", "4",
                                 "--score", "rouge", "--max-new-tokens", "4", "--quiet"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "grid-t0.5-b0.5" in r.output and "Chosen" in r.output
    assert json.loads((aligned_ws.dir / "search" / "sweep.json").read_text())["config"]["criteria"] == ["rouge"]
    r = CliRunner().invoke(cli, ["search-weights", "--run-dir", str(aligned_ws.dir), "--step", "0.3", "--quiet"])
    assert r.exit_code != 0 and "does not divide 1" in r.output and "Traceback" not in r.output


def test_explain_default_skips_search_candidates(aligned_ws):
    search_weights(aligned_ws, ["text", "behavior"], step=0.5, criteria=["rouge"], items=4, max_new_tokens=4)
    r = CliRunner().invoke(cli, ["explain", "--run-dir", str(aligned_ws.dir), "--items", "1", "--quiet"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "text (aligned alone)" in r.output and "grid-" not in r.output
