"""The run folder's layout as the Workspace names it, and the Markdown of earec_core.tables (result
tables, the explain report, the aligned-model card)."""

from __future__ import annotations

from earec_core.tables import (explain_markdown, metrics_table, model_card, results_markdown, study_markdown,
                                sweep_markdown)
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


def test_explain_report_lists_scores_examples_and_the_best_generations():
    report = {"items": ["1", "2"], "train_items": ["9"], "rougeL": {"text": 0.75, "base:text": 0.0},
              "rougeL_train": {"text": 1.0, "base:text": 0.25},
              "generations": {"text": {"1": "Toy Story", "2": "Heat|x"}, "base:text": {"2": ""}}}
    anchors = {"1": "Toy Story (1995)", "2": "Heat", "9": "Jumanji"}
    scores = {"text": {"1": 0.8, "2": 0.5}, "base:text": {"1": 0.0, "2": 0.0}}
    assert explain_markdown(report, anchors, scores, n_examples=1).splitlines() == [
        "| source | ROUGE-L (F1, held-out items) | ROUGE-L (F1, alignment items) |", "|---|---|---|",
        "| text | 0.7500 | 1.0000 |", "| base:text | 0.0000 | 0.2500 |", "",
        "Examples (anchor → generation per source):", "",
        "- **Toy Story (1995)**", "  - text: 'Toy Story'", "  - base:text: '(no input)'", "",
        "Best held-out generations per source (ROUGE-L ≥ 0.5 shown):", "",
        "- text: 'Toy Story (1995)' → 'Toy Story' (0.80); 'Heat' → 'Heat|x' (0.50)",
        "- base:text: none",
    ]
    held_only = explain_markdown({**report, "train_items": [], "rougeL_train": {}}, anchors, scores)
    assert held_only.splitlines()[:3] == ["| source | ROUGE-L (F1, held-out items) |", "|---|---|", "| text | 0.7500 |"]


def test_model_card_tables_a_composition_and_a_modality_s_sources():
    comp = model_card({"name": "text+behavior", "mode": "param", "base_model": "/m/SmolLM2", "modalities": ["text", "behavior"],
                       "weights": {"text": 2 / 3, "behavior": 1 / 3},
                       "modality_meta": {"text": {"sources": [{"name": "ml-1m"}, {}]}}})
    assert comp.startswith("---\nlibrary_name: peft\nbase_model: SmolLM2\ntags: [earec, lora, recommendation, text, behavior]")
    assert "| modality | λ | aligned on |\n|---|---|---|\n| text | 0.667 | ml-1m, ? |\n| behavior | 0.333 | unrecorded |\n" in comp
    card = model_card({"modality": "behavior", "transferable": False, "train_log": {"loss": [4.0, 2.0], "seconds": 3},
                       "sources": [{"name": "mixed", "items": 3, "interactions": 4, "samples": 5,
                                    "parts": [{"name": "a", "items": 1, "interactions": 2, "samples": 3}]}],
                       "metrics": {"ROUGE-L": 0.5}})
    assert ("| dataset | items | interactions | alignment samples |\n|---|---|---|---|\n| mixed | 3 | 4 | 5 |\n"
            "| ↳ a | 1 | 2 | 3 |\n") in card
    assert "2 steps, 3 s; anchor loss 4.000 (first 1 steps) -> 2.000 (last 1)" in card and "- ROUGE-L: 0.5\n" in card
    assert card.endswith("`earec embed THIS_FOLDER --dataset D` (only the dataset it was aligned on).\n")


def _study(seeds: list[int]) -> dict:
    cell = {"mean": 0.125, "sd": 0.0}
    metrics = {c: cell for c in ("HR@10", "NDCG@10", "HR@50", "NDCG@50")}
    row = {"valid": metrics, "test": metrics, "slices": {"all": cell}}
    return {"rows": {"ID SASRec": row, "EARec_TB": {**row, "vs_baseline": {"all": {"diff": 0.0, "p": 0.5}}}},
            "baseline": "ID SASRec", "seeds": seeds, "slice_sizes": {"all": 10}, "best_earec_by_valid": "EARec_TB", "method": "test"}


def test_study_table_shows_no_spread_for_one_seed():
    """One seed measures no spread: the cells hold the mean alone, never a made-up '± 0.0000'."""
    one, three = study_markdown(_study([0])), study_markdown(_study([0, 1, 2]))
    assert "±" not in one.split("\n\n", 1)[1].split("Method")[0].replace("mean ± sd", "")
    assert "one seed (0)" in one and "| 0.1250 |" in one
    assert "0.1250 ± 0.0000" in three and "mean ± sd over seeds 0, 1, 2" in three
