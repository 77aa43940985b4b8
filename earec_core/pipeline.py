"""``earec run``: every stage in order, each skipped when its artifact is current, ending in
the results table (ID SASRec vs EARec_T vs EARec_TB)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rich.console import Console

from .align import AlignConfig, align
from .artifacts import write_json, write_text
from .compose import compose, normalise_weights
from .embed import embed
from .explain import explain
from .recommend import id_baseline, on_embeddings
from .search import default_candidates, search_weights
from .tables import results_markdown, sweep_markdown

@dataclass
class RunConfig:
    """What ``earec run`` does beyond the workspace settings."""

    modalities: tuple[str, ...] = ("text", "behavior")
    # None: choose λ on validation NDCG@10 among search.default_candidates (uniform, each modality at 0.9)
    weights: dict[str, float] | None = None
    mode: str = "param"
    align: AlignConfig = field(default_factory=AlignConfig)
    explain_items: int = 32
    explain_train_items: int = 16  # also score ROUGE-L on items the adapters trained on
    embed_batch_size: int = 16
    embed_precision: str = "auto"  # bf16 on a GPU, fp32 on CPU (see embed.resolve_embed_precision)


class StageTimer:
    """Prints a header per stage and records its wall time."""

    def __init__(self, console: Console):
        self.console, self.seconds = console, {}

    def __call__(self, title: str, fn, *args, **kwargs):
        self.console.rule(f"[bold]{title}")
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds[title] = round(time.perf_counter() - start, 1)
        self.console.print(f"[dim]{title}: {self.seconds[title]} s[/dim]")
        return result


PAPER_ORDER = "TVBA"  # the paper's label order of its codes: text, vision, behaviour, audio


def label_for(registry, modalities) -> str:
    """Paper naming: EARec_T, EARec_TB, EARec_TVB … from each modality's declared code
    (:meth:`Modality.label_code`), in the paper's order; other codes follow in the given order."""
    codes = [registry.modality(m).label_code() for m in modalities]
    known = sorted((c for c in codes if c in PAPER_ORDER), key=PAPER_ORDER.find)
    return "EARec_" + "".join(known + [c for c in codes if c not in PAPER_ORDER])


def run_all(ws, cfg: RunConfig, console: Console | None = None) -> dict:
    """Run dataset -> ID baseline -> align each modality -> compose -> explain -> embed ->
    recommend, and write ``RUN/results.{json,md}``.  Returns the results dict."""
    console = console or Console()
    stage = StageTimer(console)
    ds = stage("dataset", lambda: ws.dataset)
    console.print(ds.stats)
    if cfg.weights is not None:
        lambdas = normalise_weights({m: cfg.weights.get(m, 0.0) for m in cfg.modalities}, cfg.mode)
    elif len(cfg.modalities) < 2:
        lambdas = normalise_weights({m: 1.0 for m in cfg.modalities}, cfg.mode)
    else:
        lambdas = None  # chosen on validation below

    models: dict = {}
    base = stage("ID SASRec (baseline + behaviour encoder)", id_baseline, ws, ws["recommender"])
    models["ID SASRec"] = {"valid": base.valid, "test": base.test}
    for m in cfg.modalities:
        stage(f"align {m}", align, ws, m, cfg.align)
    comp_name = "+".join(cfg.modalities)
    sweep = None
    if lambdas is None:  # λ chosen on validation NDCG@10 (test never looked at)
        sweep = stage("choose λ on validation", search_weights, ws, list(cfg.modalities),
                      candidates=default_candidates(cfg.modalities), criteria=("ndcg",), mode=cfg.mode,
                      embed_batch_size=cfg.embed_batch_size, precision=cfg.embed_precision,
                      log=console.print if ws.progress else None)
        lambdas = sweep["chosen"]["weights"]
        console.print(sweep_markdown(sweep))
    stage(f"compose {comp_name}", compose, ws, lambdas, mode=cfg.mode, name=comp_name)

    sources = {}
    for m in cfg.modalities:
        sources[f"{m} (before alignment)"] = f"base:{m}"
        sources[f"{m} (aligned alone)"] = m
    sources[f"{comp_name} (composed)"] = comp_name
    report = stage("explain (ROUGE-L)", explain, ws, sources, holdout=cfg.align.holdout, max_items=cfg.explain_items,
                   train_items=min(cfg.explain_train_items, cfg.align.max_items or cfg.explain_train_items))
    console.print(report["markdown"])

    embed_sources = [cfg.modalities[0], comp_name] if len(cfg.modalities) > 1 else [cfg.modalities[0]]
    notes = []
    for src in embed_sources:
        mods = src.split("+")
        label = label_for(ws.registry, mods)
        if src == comp_name and sweep is not None:
            # The chosen candidate already is this row: the same adapters, λ, mode, prompts, recommender
            # options and seed, so its embeddings and recommender are not computed a second time.
            chosen = next(c for c in sweep["candidates"] if c["name"] == sweep["chosen"]["name"])
            models[label] = {"valid": chosen["valid"], "test": chosen["test"]}
            notes.append(f"{label} is the chosen λ candidate's recommender ({chosen['sources']['test']}): the "
                         f"composition {comp_name} equals {chosen['name']}, so it is not trained twice")
            continue
        out = stage(f"embed {label}", embed, ws, src, batch_size=cfg.embed_batch_size, precision=cfg.embed_precision)
        res = stage(f"recommend {label}", on_embeddings, ws, out, ws["recommender"], label=label,
                    options=ws["embedding_recommender_options"])
        models[label] = {"valid": res.valid, "test": res.test}

    if sweep is not None:
        lam = ", ".join(f"{m}={w:g}" for m, w in lambdas.items())
        notes.append(f"λ ({lam}) chosen on validation NDCG@10 among {len(sweep['candidates'])} candidates "
                     "(RUN/search/sweep.md); test metrics were not used")
    if ws["embed_anchor"]:
        notes.append("stage-2 prompts hold each item's anchor (--embed-anchor); stage-1 prompts never do")
    if cfg.align.max_items is not None:
        notes.append(f"alignment used {cfg.align.max_items} items x {cfg.align.epochs} epoch(s) per modality "
                     "(default budget for a 2-core CPU; --align-items all for the full catalog)")
    results = {"dataset": ds.stats, "weights": lambdas, "mode": cfg.mode, "models": models,
               "rougeL": report["rougeL"], "rougeL_train": report.get("rougeL_train", {}), "seconds": stage.seconds, "notes": notes,
               "settings": ws.settings}
    write_json(ws.results_path("json"), results)
    write_text(ws.results_path("md"), results_markdown(results))
    return results
