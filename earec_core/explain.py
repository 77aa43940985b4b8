"""Explainability: generate the anchor from each modality and score it with ROUGE-L.

For held-out items (never trained on, see :func:`earec_core.data.alignment_items`) the model
generates greedily from each modality's prompt before alignment (backbone + fresh projector)
and after (its own adapter), and from compositions (all their modalities); ROUGE-L F1
(``rouge-score``, stemming on) against the anchor measures how well each modality "speaks" the
anchor (the paper's Figure 4/5).
"""

from __future__ import annotations

import torch
from rouge_score import rouge_scorer

from .aligned import record_metrics
from .artifacts import write_json, write_text
from .data import alignment_items
from .model import AlignedModel, load_aligned, resolve
from .prompt import build_samples, collate, splice
from .tables import explain_markdown


@torch.inference_mode()
def generate(aligned: AlignedModel, builder, catalog, item_ids: list[str], *, max_new_tokens: int = 24,
             batch_size: int = 16) -> dict[str, str]:
    """Greedy generations ``{item_id: text}`` from each item's prompt (items lacking every
    modality are left out)."""
    samples, _ = build_samples(builder, catalog, item_ids, with_answer=False, with_related=True)
    tok = builder.tokenizer
    embed_tokens = aligned.model.get_input_embeddings()
    out = {}
    for i in range(0, len(samples), batch_size):
        batch = collate(samples[i : i + batch_size], tok.pad_token_id)
        x = splice(embed_tokens(batch.input_ids), batch, aligned.modalities, aligned.projectors)
        gen = aligned.model.generate(
            inputs_embeds=x, attention_mask=batch.attention_mask, max_new_tokens=max_new_tokens,
            do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        )
        for iid, ids in zip(batch.item_ids, gen):
            out[iid] = tok.decode(ids, skip_special_tokens=True).strip()
    return out


def rouge_l(predictions: dict[str, str], anchors: dict[str, str]) -> dict[str, float]:
    """ROUGE-L F1 per item (0 for an item without a prediction)."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return {iid: scorer.score(anchors[iid], predictions.get(iid, ""))["rougeL"].fmeasure for iid in anchors}


def explain(ws, sources: dict[str, str], *, holdout: int = 32, max_items: int | None = None,
            max_new_tokens: int = 24, n_examples: int = 5, train_items: int = 0) -> dict:
    """Score every ``{label: source}`` (sources as in :func:`earec_core.model.resolve`) on the
    held-out items; writes ``RUN/explain/report.{json,md}`` and returns the report dict.

    ``train_items`` > 0 also scores that many *alignment* items (ones the adapters trained on;
    ``rougeL_train``): a model that fails there has not learned the task at all, one that only fails
    on held-out items does not generalise.  The report lists, per source, its best held-out
    generations (the titles it gets right).
    """
    catalog = ws.dataset.catalog
    trained, held = alignment_items(catalog, ws["seed"], holdout, None)
    if max_items is not None:
        held = held[:max_items]
    trained = trained[:train_items]
    anchors = {iid: catalog[iid].anchor for iid in [*held, *trained]}
    report: dict = {"items": held, "train_items": trained, "rougeL": {}, "rougeL_train": {}, "generations": {},
                    "generations_train": {}}
    scores_held: dict[str, dict[str, float]] = {}  # per source, ROUGE-L of each held-out item
    for label, source in sources.items():
        aligned = load_aligned(ws, source, seed=ws["seed"])
        builder = ws.builder(aligned.modalities)
        gens = generate(aligned, builder, catalog, held, max_new_tokens=max_new_tokens)
        scores = rouge_l(gens, {i: anchors[i] for i in held})
        scores_held[label] = scores
        report["rougeL"][label] = sum(scores.values()) / max(1, len(scores))
        report["generations"][label] = gens
        if trained:
            gens_t = generate(aligned, builder, catalog, trained, max_new_tokens=max_new_tokens)
            scores_t = rouge_l(gens_t, {i: anchors[i] for i in trained})
            report["rougeL_train"][label] = sum(scores_t.values()) / max(1, len(scores_t))
            report["generations_train"][label] = gens_t
    report["markdown"] = explain_markdown(report, anchors, scores_held, n_examples=n_examples)
    for label, source in sources.items():  # the run's own aligned folders carry their scores in their card
        folder, _ = resolve(ws, source)
        if folder is not None and ws.owns(folder):
            name = f"ROUGE-L on {len(held)} held-out items of {ws.dataset.name}"
            found = {name: round(report["rougeL"][label], 4)}
            if label in report["rougeL_train"]:
                found[f"ROUGE-L on {len(trained)} alignment items of {ws.dataset.name}"] = round(
                    report["rougeL_train"][label], 4)
            record_metrics(folder, found)
    write_json(ws.explain_dir / "report.json", report)
    write_text(ws.explain_dir / "report.md", report["markdown"] + "\n")
    return report
