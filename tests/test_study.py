"""`earec study`: rows x seeds on a tiny Llama and a toy dataset, every row trained for real;
mean ± sd, paired t-tests against the baseline and long-tail slices computed from saved ranks."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from earec_core.align import AlignConfig, align
from earec_core.cli import cli
from earec_core.embed import embed
from earec_core.errors import EarecError
from earec_core.metrics import metrics_from_ranks
from earec_core.study import Row, grid_variants, parse_grid, parse_row, run_study, target_popularity
from earec_core.workspace import Workspace

REC = {"max_epochs": 2, "hidden_size": 16, "inner_size": 32}


def test_parse_row():
    assert parse_row("ID=ids") == Row("ID", None, False, {})
    assert parse_row("EARec_TB+title=text+behavior@anchor;transductive=true;temperature=0.1") == Row(
        "EARec_TB+title", "text+behavior", True, {"transductive": True, "temperature": 0.1})
    assert parse_row("T=base:text;feature_transform=none").options == {"feature_transform": "none"}
    wide = parse_row("W=text;layers=[-1,-2];temperature=0.1")
    assert wide.layers == (-1, -2) and wide.options == {"temperature": 0.1}
    for bad in ("no-equals", "=text", "X=text;novalue", "X=text;layers=[1.5]"):
        with pytest.raises(EarecError, match="bad"):
            parse_row(bad)


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_llm_dir, make_dataset):
    root = tmp_path_factory.mktemp("study")
    ws = Workspace(root / "run", progress=False, llm=str(tiny_llm_dir), dataset=str(make_dataset(root)), k_core=3,
                   recommender_options=REC)
    align(ws, "text", AlignConfig(max_items=8, batch_size=8, epochs=1, lora_rank=4, lora_alpha=8))
    return ws


def test_study_over_seeds_with_slices_and_paired_tests(ws):
    rows = [Row("ID"), Row("T", "text"), Row("T+title", "text", anchor=True),
            Row("T transductive", "text", options={"transductive": True})]
    study = run_study(ws, rows, seeds=[0, 1])
    assert list(study["rows"]) == ["ID", "T", "T+title", "T transductive"]
    # every (row, seed) is its own cached result; the run's seed keeps the plain folder name
    for folder in ("id-sasrec", "id-sasrec~seed1", "T", "T~seed1", "T+title~seed1", "T transductive~seed1"):
        assert (ws.dir / "recommend" / folder / "metrics.json").is_file(), folder
    # mean ± sd recomputed from the saved per-user ranks
    r0 = load_file(str(ws.dir / "recommend" / "T" / "test_ranks.safetensors"))["ranks"]
    r1 = load_file(str(ws.dir / "recommend" / "T~seed1" / "test_ranks.safetensors"))["ranks"]
    vals = [metrics_from_ranks(r, (10, 50))["NDCG@10"] for r in (r0, r1)]
    cell = study["rows"]["T"]["test"]["NDCG@10"]
    assert cell["values"] == pytest.approx(vals) and cell["mean"] == pytest.approx(sum(vals) / 2)
    assert cell["sd"] == pytest.approx(abs(vals[0] - vals[1]) / 2 ** 0.5)
    # slices: sizes from the training popularity of each test target
    pop = target_popularity(ws.dataset.splits)
    assert study["slice_sizes"]["all"] == len(ws.dataset.splits.test)
    assert study["slice_sizes"]["target ≤ 5 train interactions"] == int((pop <= 5).sum())
    assert "vs_baseline" not in study["rows"]["ID"]
    vs = study["rows"]["T"]["vs_baseline"]["all"]
    assert vs["diff"] == pytest.approx(vs["mean_row"] - vs["mean_baseline"])
    assert vs["p"] is None or 0 <= vs["p"] <= 1
    # the anchor row embedded with the title in its stage-2 prompt, in its own folder
    assert (ws.dir / "embeddings" / "text@anchor").is_dir()
    a = json.loads((ws.dir / "embeddings" / "text@anchor" / "manifest.json").read_text())
    assert a["config"]["anchor_in_prompt"] is True
    assert study["best_earec_by_valid"] is None  # no EARec_* label among these rows
    md = (ws.dir / "study" / "study.md").read_text()
    assert "T+title" in md and "± " in md and "target ≤ 20" in md
    assert (ws.dir / "study" / "fig_slices.png").stat().st_size > 1000


def test_anchor_embeddings_differ_from_plain_ones(ws):
    from earec_core.embstore import load_embeddings

    plain = load_embeddings(embed(ws, "text", precision="fp32", anchor=False), ws.dataset.catalog.ids)
    titled = load_embeddings(embed(ws, "text", precision="fp32", anchor=True), ws.dataset.catalog.ids)
    assert plain.shape == titled.shape and not torch.allclose(plain, titled)


def test_layer_concatenation_widens_and_keeps_the_last_layer(ws):
    from earec_core.embstore import load_embeddings

    ids = ws.dataset.catalog.ids
    last = load_embeddings(embed(ws, "text", precision="fp32", anchor=False), ids)
    out = embed(ws, "text", precision="fp32", anchor=False, layers=(-2, -1))
    assert out.name == "text@L-2,-1"
    wide = load_embeddings(out, ids)
    assert wide.shape == (len(ids), 2 * last.shape[1])
    assert torch.allclose(wide[:, last.shape[1]:], last, atol=1e-5)  # the -1 block is the last hidden state
    assert not torch.allclose(wide[:, : last.shape[1]], last)
    with pytest.raises(EarecError, match="out of range"):
        embed(ws, "text", precision="fp32", layers=(7,))


def test_study_cli_and_bad_input(ws):
    res = CliRunner().invoke(cli, ["study", "--run-dir", str(ws.dir), "--quiet", "--seeds", "0",
                                   "--row", "ID=ids", "--row", "T=text"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "NDCG@10" in res.output
    bad = CliRunner().invoke(cli, ["study", "--run-dir", str(ws.dir), "--quiet", "--seeds", "a,b"])
    assert bad.exit_code != 0 and "--seeds" in bad.output
    bad = CliRunner().invoke(cli, ["study", "--run-dir", str(ws.dir), "--quiet", "--seeds", "0",
                                   "--row", "ID=ids", "--baseline", "nope"])
    assert bad.exit_code != 0 and "baseline 'nope'" in bad.output


def test_identical_prompts_are_counted_and_the_anchor_separates_them(ws, caplog):
    from earec_core.data import Catalog, Item
    from earec_core.embed import prompt_collisions

    modalities = {"text": ws.modality("text")}
    shared = Catalog([Item("a", "Alpha", {"genre": "Drama"}), Item("b", "Beta", {"genre": "Drama"}),
                      Item("c", "Gamma", {"genre": "Drama"}), Item("d", "Delta", {"genre": "Comedy"})])
    ids = shared.ids
    plain = prompt_collisions(ws.builder(modalities), shared, ids)
    assert plain == {"items": 4, "distinct_prompts": 2, "items_with_shared_prompt": 3}
    titled = prompt_collisions(ws.builder(modalities, anchor_in_prompt=True), shared, ids)
    assert titled == {"items": 4, "distinct_prompts": 4, "items_with_shared_prompt": 0}
    # the run's own embeddings record theirs (the toy catalog's years make every prompt distinct)
    info = json.loads((ws.dir / "embeddings" / "text" / "info.json").read_text())
    n = len(ws.dataset.catalog)
    assert info["prompts"] == {"items": n, "distinct_prompts": n, "items_with_shared_prompt": 0}
    with caplog.at_level("WARNING", logger="earec_core.embed"):
        embed(ws, "text", precision="fp32", anchor=False, force=True)
    assert not any("share their stage-2 prompt" in r.message for r in caplog.records)


def test_parse_grid_and_variants():
    grid = parse_grid(["lr=1e-3,3e-3", "transductive=true,false"])
    assert grid == {"lr": [0.001, 0.003], "transductive": [True, False]}
    variants = grid_variants(Row("T", "text", options={"temperature": 0.1}), grid)
    assert [v.label for _, v in variants] == ["T~lr=0.001~transductive=true", "T~lr=0.001~transductive=false",
                                              "T~lr=0.003~transductive=true", "T~lr=0.003~transductive=false"]
    assert variants[2][1].options == {"temperature": 0.1, "lr": 0.003, "transductive": True}
    assert grid_variants(Row("T", "text"), {}) == [({}, Row("T", "text"))]
    for bad in (["lr"], ["lr="], ["=1"], ["lr=1", "lr=2"], ["layers=[-1]"]):
        with pytest.raises(EarecError, match="grid"):
            parse_grid(bad)


def test_study_grid_keeps_each_rows_setting_with_the_best_validation(ws):
    study = run_study(ws, [Row("ID"), Row("T", "text")], seeds=[0], name="grid",
                      grid={"lr": [1e-3, 1e-2]})
    for label in ("ID", "T"):
        variants = study["grid"][label]
        assert len(variants) == 2 and sum(v["chosen"] for v in variants.values()) == 1
        best = max(variants.values(), key=lambda v: v["valid NDCG@10"]["mean"])
        assert best["chosen"] and study["rows"][label]["setting"] == best["setting"]
        assert study["rows"][label]["valid"]["NDCG@10"] == best["valid NDCG@10"]
    # lr=1e-3 is the recommender's default: that variant is the plain row, reused from its folder
    assert study["rows"]["ID"]["folders"] in (["recommend/id-sasrec"], ["recommend/id-sasrec~lr=0.01"])
    assert not (ws.dir / "recommend" / "id-sasrec~lr=0.001").exists()
    assert not (ws.dir / "recommend" / "T~lr=0.001").exists() and (ws.dir / "recommend" / "T").is_dir()
    # the other setting trained for real, in its own folder
    for folder in ("id-sasrec~lr=0.01", "T~lr=0.01"):
        m = json.loads((ws.dir / "recommend" / folder / "manifest.json").read_text())
        assert m["config"]["options"]["lr"] == 1e-2, folder
    md = (ws.dir / "study-grid" / "study.md").read_text()
    assert "## Grid" in md and "lr=0.01" in md
