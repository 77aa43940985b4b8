"""Markdown rendering of the result tables: pure functions from the stages' result dicts (as
saved in ``results.json``, ``sweep.json``, ``study.json``, ``report.json``, ``RUN/explain/report.json``)
and an aligned-model folder's ``modality.json`` / ``composition.json`` (its model card) to Markdown text.

Nothing here computes a number or touches a file, and no stage is imported: ``pipeline``,
``search``, ``study``, ``report``, ``explain`` and ``aligned`` call these functions on the dicts they write.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

METRIC_COLUMNS = ("HR@10", "NDCG@10", "HR@50", "NDCG@50")
"""The test metrics a table shows by default."""


# -- metric tables ----------------------------------------------------------------------------------
def metric_columns(rows) -> tuple[str, ...]:
    """The test metrics to show for result dicts ``rows`` (each with ``"test"``): the default
    columns, or, when a run set other cutoffs (``--rec-option ks=[5,10]``), those it has."""
    present = {c for r in rows for c in r["test"]}
    if present >= set(METRIC_COLUMNS) or not present:
        return METRIC_COLUMNS
    return tuple(sorted(present, key=lambda c: (int(c.split("@")[1]), c.split("@")[0] != "HR")))


def metric_cell(metrics: dict, column: str) -> str:
    return f"{metrics[column]:.4f}" if column in metrics else "-"


def metrics_table(rows: list[dict], best: str | None = None) -> list[str]:
    """Lines of the model table (valid NDCG@10, then the test metrics) for ``rows`` (each with
    ``model``, ``valid``, ``test``); the row named ``best`` in bold."""
    cols = metric_columns(rows)
    lines = ["| model | valid NDCG@10 | " + " | ".join(f"test {c}" for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for r in rows:
        name = f"**{r['model']}**" if r["model"] == best else r["model"]
        lines.append(f"| {name} | {metric_cell(r['valid'], 'NDCG@10')} | "
                     + " | ".join(metric_cell(r["test"], c) for c in cols) + " |")
    return lines


def ablation_table(rows: list[dict]) -> list[str]:
    """Lines of the ablation table: :func:`metrics_table` with each row's ``variant`` first."""
    cols = metric_columns(rows)
    lines = ["| variant | model | valid NDCG@10 | " + " | ".join(f"test {c}" for c in cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['model']} | {metric_cell(r['valid'], 'NDCG@10')} | "
                     + " | ".join(metric_cell(r["test"], c) for c in cols) + " |")
    return lines


# -- earec run: RUN/results.md ------------------------------------------------------------------------
def results_markdown(results: dict) -> str:
    """``earec run``'s results (``results.json``) as Markdown: models, ROUGE-L, wall time, notes."""
    rows = metrics_table([{"model": name, **r} for name, r in results["models"].items()])
    out = ["## Recommendation (leave-one-out, full ranking over all items)", "", *rows, ""]
    if results.get("rougeL"):
        train = results.get("rougeL_train") or {}
        out += ["## Alignment quality (ROUGE-L F1 vs the anchor)", "",
                "| source | held-out items |" + (" alignment items |" if train else ""), "|---|---|" + ("---|" if train else "")]
        out += [f"| {k} | {v:.4f} |" + (f" {train[k]:.4f} |" if k in train else "")
                for k, v in results["rougeL"].items()] + [""]
    out += ["## Wall time per stage (s)", "", "| stage | seconds |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in results["seconds"].items()]
    if results.get("notes"):
        out += ["", "## Notes", "", *(f"- {n}" for n in results["notes"])]
    return "\n".join(out) + "\n"


# -- earec search-weights: RUN/search/sweep.md --------------------------------------------------------
def sweep_markdown(sweep: dict) -> str:
    """The sweep (``sweep.json``) as a Markdown table (the paper's Table 4), the chosen λ marked."""
    mods = sweep["config"]["modalities"]
    rows = sweep["candidates"]
    has_rouge = any("valid_rougeL" in r for r in rows)
    has_rec = any("valid" in r for r in rows)
    head = [f"λ {m}" for m in mods] + ["composition"]
    if has_rouge:
        head.append("valid ROUGE-L")
    if has_rec:
        head += ["valid HR@10", "valid NDCG@10", *(f"test {c}" for c in METRIC_COLUMNS)]
    step = sweep["config"].get("step")
    how = f"grid on the simplex, step {step:g}" if step is not None else "given candidates"
    lines = [f"## λ search ({how}, mode {sweep['config']['mode']})", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r['weights'][m]:g}" for m in mods]
        cells.append(("**" + r["name"] + "** (chosen)") if r["name"] == sweep["chosen"]["name"] else r["name"])
        if has_rouge:
            cells.append(f"{r.get('valid_rougeL', float('nan')):.4f}")
        if has_rec:
            v, t = r.get("valid", {}), r.get("test", {})
            cells += [f"{v.get('HR@10', float('nan')):.4f}", f"{v.get('NDCG@10', float('nan')):.4f}"]
            cells += [f"{t.get(k, float('nan')):.4f}" for k in METRIC_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    c = sweep["chosen"]
    lam = ", ".join(f"{m}={c['weights'][m]:g}" for m in mods)
    lines += ["", f"Chosen: λ = ({lam}) — `{c['name']}`, best {c['criterion']} = {c['value']:.4f}.",
              f"Seed {sweep['config']['seed']}; {sweep['note']}."]
    return "\n".join(lines) + "\n"


# -- earec study: RUN/study/study.md ------------------------------------------------------------------
def _pm(cell: dict, digits: int = 4, *, sd: bool = True) -> str:
    """``mean ± sd``; the mean alone when ``sd`` is False (one seed: no spread was measured)."""
    return f"{cell['mean']:.{digits}f} ± {cell['sd']:.{digits}f}" if sd else f"{cell['mean']:.{digits}f}"


def _p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def study_markdown(study: dict) -> str:
    """The study (``study.json``) as Markdown: the main table (mean ± sd over seeds) and the slice table."""
    rows, base = study["rows"], study["baseline"]
    seeds = ", ".join(map(str, study["seeds"]))
    multi = len(study["seeds"]) > 1
    spread = "mean ± sd over seeds" if multi else f"one seed ({seeds})"
    over = f"{spread} {seeds}" if multi else f"{spread}: no spread measured"
    pm = functools.partial(_pm, sd=multi)
    lines = [f"## Test metrics, {over} (leave-one-out, full ranking)", "",
             "| model | valid NDCG@10 | " + " | ".join(f"test {c}" for c in METRIC_COLUMNS)
             + f" | Δ NDCG@10 vs {base} | p |",
             "|---|---|" + "---|" * len(METRIC_COLUMNS) + "---|---|"]
    for label, r in rows.items():
        vs = r.get("vs_baseline", {}).get("all")
        name = f"**{label}**" if label == study.get("best_earec_by_valid") else label
        lines.append(f"| {name} | {pm(r['valid']['NDCG@10'])} | " + " | ".join(pm(r["test"][c]) for c in METRIC_COLUMNS)
                     + (f" | {vs['diff']:+.4f} | {_p(vs['p'])} |" if vs else " | – | – |"))
    slice_names = list(study["slice_sizes"])
    lines += ["", f"## Test NDCG@10 by target popularity ({spread}; p: paired t-test vs {base})", "",
              "| model | " + " | ".join(f"{n} ({study['slice_sizes'][n]} users)" for n in slice_names) + " |",
              "|---|" + "---|" * len(slice_names)]
    for label, r in rows.items():
        cells = []
        for n in slice_names:
            vs = r.get("vs_baseline", {}).get(n)
            cells.append(pm(r["slices"][n]) + (f" (p {_p(vs['p'])})" if vs else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if study.get("grid"):
        lines += ["", "## Grid: every setting per row (the chosen one, by mean validation NDCG@10, in bold)", "",
                  "| row | setting | valid NDCG@10 | test NDCG@10 | seconds per training |", "|---|---|---|---|---|"]
        for label, variants in study["grid"].items():
            for v in variants.values():
                setting = ", ".join(f"{k}={val}" for k, val in v["setting"].items())
                setting = f"**{setting}**" if v["chosen"] else setting
                lines.append(f"| {label} | {setting} | {pm(v['valid NDCG@10'])} | {pm(v['test NDCG@10'])} | "
                             f"{v['seconds']['mean']:.0f} |")
    if study.get("best_earec_by_valid"):
        lines += ["", f"Bold: the EARec row with the best mean validation NDCG@10 ({study['best_earec_by_valid']})."]
    lines += ["", f"Method: {study['method']}."]
    lines += [f"- {n}" for n in study.get("notes", [])]
    return "\n".join(lines) + "\n"


# -- earec report: RUN/report/report.md ---------------------------------------------------------------
def report_markdown(report: dict, *, sweep: dict | None = None, study_md: str | None = None) -> str:
    """The report (``report.json``'s dict) as Markdown: Tables 2-4, Figures 5 and 4, and the
    study's tables (``study_md``, the run's ``study.md``) if there are any.  ``sweep`` is the
    whole ``sweep.json`` (Table 4)."""
    settings, stats = report["settings"], report["dataset"]["stats"]
    table2, example = report["table2"], report["figure4"]
    significance = table2["significance"]
    md = [f"# EARec report — {report['run_dir']}", "",
          f"Dataset {settings['dataset']} ({stats.get('users')} users, {stats.get('items')} items), "
          f"seed {report['seed']}, recommender {settings['recommender']} {settings['recommender_options'] or ''}, "
          f"λ {report['weights']} ({report['mode']}).", "",
          "## Table 2 — overall performance (test, leave-one-out, full ranking)", "",
          *metrics_table([*table2["baselines"], *table2["earec"]], best=table2["best_earec"]), ""]
    if significance:
        p = "n/a" if significance["p"] is None else f"{significance['p']:.4g}"
        t = "n/a" if significance["t"] is None else f"{significance['t']:.3f}"
        md += [f"Paired t-test over {significance['n_users']} users, per-user test NDCG@10, "
               f"{significance['a']} vs {significance['b']} (each the best of its group by validation NDCG@10): "
               f"t = {t}, p = {p}.", ""]
    md += ["## Table 3 — ablation of the full composition", "", *ablation_table(report["table3"]), ""]
    md += ["## Table 4 — λ search", ""]
    md += [sweep_markdown(sweep).split("\n", 2)[2]] if sweep else ["No sweep in this run (`earec search-weights` writes one).", ""]
    md += ["## Figure 5 — ROUGE-L per modality and NDCG@10 per model", "", "![figure 5](fig5_rouge_ndcg.png)", "",
           "| source | ROUGE-L (F1, held-out items) |", "|---|---|"]
    md += [f"| {k} | {v['value']:.4f} |" for k, v in report["rougeL"].items()]
    md += ["", f"## Figure 4 — generations for item {example['item']}", "", f"Anchor: **{example['anchor']}**", "",
           "![figure 4](fig4_generations.png)", "", "| source | generation | ROUGE-L |", "|---|---|---|"]
    for label, g in example["generations"].items():
        text = (g["text"] if g["text"] is not None else "(no input)").replace("|", "\\|")
        md.append(f"| {label} | {text} | {g['rougeL']:.4f} |")
    if study_md:  # `earec study` ran: its seeds / paired tests / long-tail slices, with its figure
        md += ["", "## Seeds, paired t-tests and long-tail slices (`earec study`, RUN/study/study.json)", "",
               study_md.replace("## ", "### ")]
    if report["notes"]:
        md += ["", "## Notes", "", *(f"- {n}" for n in report["notes"])]
    return "\n".join(md) + "\n"


# -- earec explain: RUN/explain/report.md -------------------------------------------------------------
def explain_markdown(report: dict, anchors: dict[str, str], scores: dict[str, dict[str, float]], *,
                     n_examples: int = 5) -> str:
    """``earec explain``'s report (``RUN/explain/report.json``'s dict) as Markdown: ROUGE-L per
    source (and on the alignment items, if it scored them), the first ``n_examples`` held-out items'
    generations, and each source's best held-out generations.  ``anchors`` maps item ids to their
    anchor; ``scores`` holds, per source, the ROUGE-L F1 of each held-out item."""
    held, labels = report["items"], list(report["generations"])
    both = bool(report["train_items"])
    lines = ["| source | ROUGE-L (F1, held-out items) |" + (" ROUGE-L (F1, alignment items) |" if both else ""),
             "|---|---|" + ("---|" if both else "")]
    lines += [f"| {k} | {v:.4f} |" + (f" {report['rougeL_train'][k]:.4f} |" if both else "")
              for k, v in report["rougeL"].items()]
    lines += ["", "Examples (anchor → generation per source):", ""]
    for iid in held[:n_examples]:
        lines.append(f"- **{anchors[iid]}**")
        for label in labels:
            lines.append(f"  - {label}: {report['generations'][label].get(iid, '(no input)')!r}")
    lines += ["", "Best held-out generations per source (ROUGE-L ≥ 0.5 shown):", ""]
    for label in labels:
        good = sorted(((v, i) for i, v in scores[label].items() if v >= 0.5), reverse=True)[:3]
        shown = "; ".join(f"{anchors[i]!r} → {report['generations'][label][i]!r} ({v:.2f})" for v, i in good)
        lines.append(f"- {label}: {shown or 'none'}")
    return "\n".join(lines)


# -- an aligned-model folder's README.md ----------------------------------------------------------------
def model_card(meta: dict) -> str:
    """The ``README.md`` of an aligned-model folder (a modality's ``modality.json`` or a
    composition's ``composition.json`` as ``meta``), laid out like a Hugging Face model card:
    YAML front matter for the hub's tools, then what it is, its sources, recipe and metrics, and
    how to load it with stock peft."""
    composed = "weights" in meta
    base = Path(str(meta.get("base_model") or "")).name or "unknown"
    modalities = meta.get("modalities") or [meta.get("modality")]
    lines = ["---", "library_name: peft", f"base_model: {base}",
             "tags: [earec, lora, recommendation, " + ", ".join(modalities) + "]", "---", ""]
    if composed:
        lines += [f"# EARec composition `{meta.get('name')}`", "",
                  "Stage 2 of EARec: per-modality LoRA adapters merged with weights λ (eq. 4 of the paper, "
                  f"mode `{meta.get('mode')}`); projectors of slot modalities in `projectors/`.", "",
                  "| modality | λ | aligned on |", "|---|---|---|"]
        for m in modalities:
            src = ", ".join(s.get("name", "?") for s in (meta.get("modality_meta", {}).get(m, {}).get("sources") or []))
            lines.append(f"| {m} | {meta['weights'][m]:.3g} | {src or 'unrecorded'} |")
        lines.append("")
    else:
        align = meta.get("align") or {}
        log = meta.get("train_log") or {}
        loss = log.get("loss") or []
        lines += [f"# EARec aligned modality `{meta.get('modality')}`", "",
                  "Stage 1 of EARec: a LoRA adapter (and, for slot modalities, a projector in "
                  "`projector.safetensors`) trained alone to generate the item's anchor (title) from a prompt "
                  "holding this modality (eq. 3 of the paper).", "",
                  f"- transferable to other datasets: {'yes' if meta.get('transferable', True) else 'no (align it again on each target)'}",
                  f"- placeholder: `{meta.get('placeholder')}`, encoder width: {meta.get('feature_dim')}, "
                  f"LLM width: {meta.get('hidden_size')}",
                  "", "## Sources", "", "| dataset | items | interactions | alignment samples |", "|---|---|---|---|"]
        for s in meta.get("sources") or []:
            lines.append(f"| {s.get('name')} | {s.get('items')} | {s.get('interactions')} | {s.get('samples')} |")
            for part in s.get("parts") or []:
                lines.append(f"| ↳ {part.get('name')} | {part.get('items')} | {part.get('interactions')} | "
                             f"{part.get('samples')} |")
            if s.get("without_items_of"):
                lines += ["", f"Items whose title names an item of `{s['without_items_of']}` were removed from the "
                          "sources before alignment (a clean transfer test)."]
        lines += ["", "## Recipe", "",
                  f"LoRA r={align.get('lora_rank')}, alpha={align.get('lora_alpha')}, dropout={align.get('lora_dropout')}, "
                  f"lr={align.get('lora_lr')}; projector lr={align.get('projector_lr')} "
                  f"(pre-training {align.get('projector_pretrain_epochs')} epoch(s) at {align.get('projector_pretrain_lr')}); "
                  f"{align.get('epochs')} epoch(s), batch {align.get('batch_size')}, "
                  f"at most {align.get('max_items')} items per source."
                  + (f" Continual alignment: started from `{align['init_from']}`." if align.get("init_from") else ""), ""]
        if loss:
            k = max(1, len(loss) // 5)
            lines += ["## Training", "",
                      f"{len(loss)} steps, {log.get('seconds', 0):.0f} s; anchor loss {sum(loss[:k]) / k:.3f} "
                      f"(first {k} steps) -> {sum(loss[-k:]) / k:.3f} (last {k})", ""]
    if meta.get("metrics"):
        lines += ["## Metrics", "", *(f"- {k}: {v}" for k, v in meta["metrics"].items()), ""]
    lines += ["## Load", "", "```python", "from peft import PeftModel",
              "from transformers import AutoModelForCausalLM", "",
              f"base = AutoModelForCausalLM.from_pretrained(BASE_MODEL_DIR)  # {base}",
              "model = PeftModel.from_pretrained(base, THIS_FOLDER)", "```", "",
              "or with EARec on any dataset: `earec embed THIS_FOLDER --dataset D`"
              + ("" if meta.get("transferable", True) else " (only the dataset it was aligned on)") + ".", ""]
    return "\n".join(lines)
