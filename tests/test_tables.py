"""The run folder's layout as the Workspace names it, and the Markdown tables of earec_core.tables."""

from __future__ import annotations

from earec_core.tables import metrics_table, results_markdown, sweep_markdown
from earec_core.workspace import Workspace


def test_workspace_names_every_run_folder(tmp_path):
    ws = Workspace(tmp_path / "run", progress=False)
    d = ws.dir
    assert (ws.dataset_dir, ws.encoders_root, ws.encoder_dir("text")) == (d / "dataset", d / "encoders", d / "encoders/text")
    assert (ws.adapters_root, ws.adapter_dir("text")) == (d / "adapters", d / "adapters/text")
    assert (ws.compositions_root, ws.composition_dir("t+b")) == (d / "compositions", d / "compositions/t+b")
    assert (ws.embeddings_dir("t"), ws.recommend_dir("id-sasrec")) == (d / "embeddings/t", d / "recommend/id-sasrec")
    assert (ws.explain_dir, ws.generations_dir) == (d / "explain", d / "explain/generations")
    assert (ws.search_dir, ws.report_dir, ws.study_dir(), ws.study_dir("x")) == (
        d / "search", d / "report", d / "study", d / "study-x")
    assert (ws.results_path("json"), ws.results_path("md")) == (d / "results.json", d / "results.md")


def test_metric_tables_render_the_present_cutoffs_and_mark_the_best():
    rows = [{"model": "A", "valid": {"NDCG@10": 0.1}, "test": {"HR@5": 0.2, "NDCG@5": 0.15, "HR@10": 0.3}},
            {"model": "B", "valid": {}, "test": {"HR@5": 0.25}}]
    assert metrics_table(rows, best="B") == [
        "| model | valid NDCG@10 | test HR@5 | test NDCG@5 | test HR@10 |",
        "|---|---|---|---|---|",
        "| A | 0.1000 | 0.2000 | 0.1500 | 0.3000 |",
        "| **B** | - | 0.2500 | - | - |",
    ]
    md = results_markdown({"models": {r["model"]: r for r in rows}, "seconds": {"dataset": 1.5}, "notes": ["n"]})
    assert md.startswith("## Recommendation") and "| A | 0.1000 |" in md and md.endswith("- n\n")


def test_sweep_table_marks_the_chosen_lambda():
    sweep = {"config": {"modalities": ["text", "behavior"], "step": 0.5, "mode": "param", "seed": 0},
             "candidates": [{"name": "grid-t1-b0", "weights": {"text": 1.0, "behavior": 0.0}, "valid_rougeL": 0.5},
                            {"name": "grid-t0.5-b0.5", "weights": {"text": 0.5, "behavior": 0.5}, "valid_rougeL": 0.25}],
             "chosen": {"name": "grid-t1-b0", "weights": {"text": 1.0, "behavior": 0.0}, "criterion": "valid ROUGE-L",
                        "value": 0.5},
             "note": "validation only"}
    assert sweep_markdown(sweep).splitlines() == [
        "## λ search (grid on the simplex, step 0.5, mode param)", "",
        "| λ text | λ behavior | composition | valid ROUGE-L |", "|---|---|---|---|",
        "| 1 | 0 | **grid-t1-b0** (chosen) | 0.5000 |",
        "| 0.5 | 0.5 | grid-t0.5-b0.5 | 0.2500 |", "",
        "Chosen: λ = (text=1, behavior=0) — `grid-t1-b0`, best valid ROUGE-L = 0.5000.",
        "Seed 0; validation only.",
    ]
