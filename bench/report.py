#!/usr/bin/env python
"""Turn bench/out/*.json into bench/RESULTS.md (``--smoke``: bench/out/RESULTS-smoke.md).

Only ratios measured inside one script run are compared; absolute seconds are given for context.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_DIR, OUT_DIR  # noqa: E402


def load(name: str, smoke: bool):
    path = OUT_DIR / f"{name}{'-smoke' if smoke else ''}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def f(x, nd=3):
    if x is None:
        return "n/a"
    return f"{x:.{nd}f}"


def verdict(ok):
    return "met" if ok else "**not met**"


def load_line(d):
    return f"1-min load avg {d['load1_min']}-{d['load1_max']} (mean {d['load1_mean']})"


EVAL_SPEED_RUNS = (
    ("eval_speed", "torch default threads"),
    ("eval_speed-passive", "torch default threads, `OMP_WAIT_POLICY=PASSIVE` for both"),
    ("eval_speed-threads1", "1 torch thread each"),
)


def sasrec_section(r, es_runs=()) -> list[str]:
    rb, ours, tt, ev, te = r["recbole"], r["ours"], r["time_to_target"], r["eval"], r["test"]
    rbt = rb["timing"]
    our_epoch_s = [b["seconds"] - a["seconds"] for a, b in zip([{"seconds": 0.0}] + ours["history"], ours["history"])]
    ratio_tt = tt["ratio_ours_over_recbole"]
    lines = [
        "## 1. SASRec: ours vs RecBole 1.2.1",
        "",
        "Same data (MovieLens-100k from the recbole wheel, 5-core, leave-one-out), same network (max length 50, "
        "hidden 64, 2 layers, 2 heads, inner 256, dropout 0.5, GELU, full-softmax CE), full-ranking evaluation "
        "(HR/NDCG@10/50 over all items, history masked), torch default threads "
        f"(ours {ours['torch_threads']}, RecBole {rb['torch_num_threads']}). "
        f"RecBole: batch {rb['batch_size']}, Adam 1e-3, budget **{rbt['epochs_run']} epochs** "
        f"({f(rbt['fit_wall_s'], 0)} s of fit; stopped by budget: {rb['stopped_by_budget'] or rbt['epochs_run'] < 200}). "
        f"Ours: batch {ours['options']['batch_size']} training windows, Adam 1e-3, early stopping (patience "
        f"{ours['options']['patience']}), wall cap = RecBole's fit time ({f(ours['budget_s'], 0)} s); "
        f"ran {ours['epochs_run']} epochs, stopped by {ours['stopped_by']}.",
        "",
        f"Target = RecBole's best validation NDCG@10 within its budget: **{f(r['target_valid_ndcg10'], 4)}** "
        f"(its epoch {r['target_epoch_recbole']}).",
        "",
        "| quantity | ours | RecBole | ratio | issue target | |",
        "|---|---|---|---|---|---|",
        f"| wall time to valid NDCG@10 >= target (s, from fit start, training + validation) | "
        f"{f(tt['ours_s'], 1)} (epoch {tt['ours_epoch']}) | {f(tt['recbole_s'], 1)} (epoch {r['target_epoch_recbole']}) | "
        f"{f(ratio_tt)} (ours/RecBole) | <= 0.333 | {verdict(ratio_tt is not None and ratio_tt <= 1 / 3)} |",
        f"| full-ranking evaluation, all {ours['dataset']['users']} valid users x {ours['dataset']['items']} items "
        f"(s, median; timed in this SASRec run, {r['machine'].get('date_utc')}) | "
        f"{f(ev['ours_valid_eval_s_median'], 4)} | {f(ev['recbole_valid_eval_s_median'], 4)} | "
        f"{f(ev['speedup_median'], 2)}x faster | >= 5x | {verdict(ev['speedup_median'] >= 5)} |",
    ]
    for x, threads in es_runs:
        if x:
            lines.append(
                f"| same, measured side by side by `bench/eval_speed.py` (untrained weights, ours / RecBole / ours "
                f"again, {x['reps']} repeats each, {threads}, {x['machine'].get('date_utc')}, 1-min load "
                f"{x['load']['load1_mean']}; s, median) | {f(x['ours_median'], 4)} | {f(x['recbole_median'], 4)} | "
                f"{f(x['speedup_median'], 2)}x faster | >= 5x | {verdict(x['speedup_median'] >= 5)} |")
    lines += [
        f"| test NDCG@10 (best-validation weights) | {f(te['ours']['NDCG@10'], 4)} | {f(te['recbole']['ndcg@10'], 4)} | "
        f"{te['ndcg10_delta_ours_minus_recbole']:+.4f} (ours - RecBole) | >= 0 | "
        f"{verdict(te['ndcg10_delta_ours_minus_recbole'] >= 0)} |",
        f"| test HR@10 / HR@50 / NDCG@50 | {f(te['ours']['HR@10'], 4)} / {f(te['ours']['HR@50'], 4)} / "
        f"{f(te['ours']['NDCG@50'], 4)} | {f(te['recbole']['hit@10'], 4)} / {f(te['recbole']['hit@50'], 4)} / "
        f"{f(te['recbole']['ndcg@50'], 4)} | | | |",
        f"| best valid NDCG@10 within the budget | {f(ours['best_valid']['NDCG@10'], 4)} | "
        f"{f(rb['best_valid_score_ndcg10'], 4)} | | | |",
        f"| seconds per training epoch incl. validation (mean) | {f(sum(our_epoch_s) / len(our_epoch_s), 2)} | "
        f"{f(rbt['fit_wall_s'] / rbt['epochs_run'], 1)} | | | |",
        f"| sequences through the transformer per epoch | {ours['dataset']['train_windows_per_epoch']} windows "
        f"({ours['dataset']['train_targets_per_epoch']} targets) | {rb['dataset']['train_samples_per_epoch']} "
        f"prefixes (1 target each) | | | |",
        f"| users / items / interactions after 5-core | {ours['dataset']['users']} / {ours['dataset']['items']} / "
        f"{ours['dataset']['interactions']} | {rb['dataset']['users']} / {rb['dataset']['items']} / "
        f"{rb['dataset']['interactions']} | | | |",
        f"| model parameters | {ours['n_params']} | {rb['n_params']} | | | |",
        "",
        "Time to reach each of RecBole's per-epoch validation values:",
        "",
        "| RecBole epoch | valid NDCG@10 | RecBole s | ours s (epoch) | ours/RecBole |",
        "|---|---|---|---|---|",
    ]
    for p in r["time_to_recbole_epochs"]:
        lines.append(f"| {p['recbole_epoch']} | {f(p['valid_ndcg10'], 4)} | {f(p['recbole_s'], 1)} | "
                     f"{f(p['ours_s'], 1)} ({p['ours_epoch']}) | {f(p['ratio_ours_over_recbole'])} |")
    curve = ", ".join(f"{i + 1}: {h['NDCG@10']:.4f} @ {h['seconds']:.0f}s" for i, h in enumerate(ours["history"]))
    lines += [
        "",
        f"Our validation curve (epoch: NDCG@10 @ seconds since fit start): {curve}.",
        "",
        f"Evaluation timings: ours = `earec_core.metrics.evaluate(rec.score, valid)` (256 users a batch), "
        f"{len(ours['valid_eval_s'])} repeats after a warm-up: "
        + ", ".join(f(x, 4) for x in ours["valid_eval_s"])
        + f" s; RecBole = `trainer.evaluate(valid_data)` inside its fit loop (all users in one 4096-row batch), "
        f"once per epoch: " + ", ".join(f(x, 4) for x in ev["recbole_valid_eval_s_all"])
        + f" s. RecBole's test evaluation incl. reloading the best checkpoint: {f(ev['recbole_test_eval_incl_reload_s'], 3)} s; "
        f"ours on test: {f(ev['ours_test_eval_s'], 4)} s.",
        "",
        f"Load during the run: RecBole {load_line(rb['load'])}; ours (training) {load_line(ours['load'])}"
        + "".join(f"; eval_speed.py ({label}) {load_line(x['load'])}" for x, label in es_runs if x) + ".",
        "",
    ]
    return lines


def embed_section(r) -> list[str]:
    p = r["paths"]
    names = {"ours_fp32": "ours, `encode_items` fp32 (batch %d, length-sorted, left-padded, shared-prefix KV cache, inference_mode)" % r["batch_size_ours"],
             "loop_fp32": "reference-style loop, batch 1, fp32 (same decoder call, no_grad)",
             "ours_bf16": "ours, `encode_items` bf16 autocast",
             "loop_full_fp32": "loop, batch 1, fp32, whole causal LM with `output_hidden_states=True`"}
    agree = r["agreement"]
    sp = p["ours_fp32"]["speedup_vs_loop_fp32"]
    lines = [
        "## 2. Item-embedding extraction: batched vs one item at a time",
        "",
        f"Backbone: {Path(r['llm']).name} ({r['n_params'] / 1e6:.0f}M parameters), text modality (`base:text`), "
        f"{r['n_items']} MovieLens-100k items (catalog order), prompt length {r['prompt_tokens']['min']}-"
        f"{r['prompt_tokens']['max']} tokens (median {r['prompt_tokens']['median']}). Every path includes prompt building.",
        "",
        "| path | seconds | items/s | speed-up vs batch-1 loop (fp32) |",
        "|---|---|---|---|",
    ]
    for k in ("ours_fp32", "loop_fp32", "ours_bf16", "loop_full_fp32"):
        if k in p:
            lines.append(f"| {names[k]} | {f(p[k]['seconds_median'], 2)} | {f(p[k]['items_per_s'], 1)} | "
                         f"{f(p[k]['speedup_vs_loop_fp32'], 2)}x |")
    lines += [
        "",
        f"Issue target: ours >= 5x the batch-1 loop at the same precision (fp32): {f(sp, 2)}x, {verdict(sp >= 5)}.",
        "",
        "Outputs agree: ours fp32 vs loop fp32 max |diff| = %s (min cosine %s); ours bf16 vs loop fp32 max |diff| = %s "
        "(min cosine %s)%s." % (
            f"{agree['ours_fp32_vs_loop_fp32']['max_abs_diff']:.2e}", f(agree['ours_fp32_vs_loop_fp32']['min_cosine'], 6),
            f"{agree['ours_bf16_vs_loop_fp32']['max_abs_diff']:.2e}", f(agree['ours_bf16_vs_loop_fp32']['min_cosine'], 4),
            (f"; whole-LM loop vs decoder loop max |diff| = {agree['loop_full_vs_loop_fp32']['max_abs_diff']:.2e}"
             if "loop_full_vs_loop_fp32" in agree else "")),
        "",
        f"Load during the run: {load_line(r['load'])}.",
        "",
    ]
    return lines


def align_section(r) -> list[str]:
    v = r["variants"]
    names = {"ours_lightning": "ours: `AnchorGeneration` in a Lightning Trainer",
             "bare_same_loss": "bare loop, same loss (`anchor_loss`, LM head on supervised positions only)",
             "bare_hf_loss": "bare loop, stock HF loss (`model(..., labels=...)`, LM head everywhere)"}
    ratio = r["ratio_ours_over_bare_same_loss"]
    lines = [
        "## 3. Alignment step overhead: Lightning vs a bare transformers+peft loop",
        "",
        f"Backbone {Path(r['llm']).name}, {r['precision']}, batch {r['batch_size']} (median {r['tokens_per_batch_median']} "
        f"real tokens a batch), LoRA r={r['lora']['r']} alpha={r['lora']['alpha']} dropout {r['lora']['dropout']} on "
        f"{r['lora']['target']}, AdamW + cosine schedule + grad clipping 1.0 in every variant; a fresh model and "
        f"adapter per variant; same samples.",
        "",
        "| variant | s/step (median) | real tokens/s | steps measured | first losses |",
        "|---|---|---|---|---|",
    ]
    for k in ("ours_lightning", "bare_same_loss", "bare_hf_loss"):
        lines.append(f"| {names[k]} | {f(v[k]['step_s_median'])} | {f(v[k]['tokens_per_s_median'], 0)} | "
                     f"{v[k]['steps_measured']} | {', '.join(f(x, 4) for x in v[k]['first_losses'])} |")
    lines += [
        "",
        f"Step-time ratio ours / bare loop with the same loss: **{f(ratio)}** (issue target <= 1.1: {verdict(ratio <= 1.1)}); "
        f"ours / bare loop with the stock HF loss: {f(r['ratio_ours_over_bare_hf_loss'])}.",
        "",
        f"Load during the run: {load_line(r['load'])}.",
        "",
    ]
    return lines


def sampled_section(r) -> list[str]:
    runs = r["runs"]
    names = {"full": "full softmax (all items)",
             "sampled-uniform": f"sampled softmax, {r['n_negatives']} uniform negatives",
             "sampled-popularity": f"sampled softmax, {r['n_negatives']} popularity negatives + logQ"}
    d = r["dataset"]
    lines = [
        "## 4. SASRec training loss: full vs sampled softmax (MovieLens-100k)",
        "",
        f"`python bench/sampled_vs_full.py --max-epochs {r['max_epochs']}`: ID SASRec with the network of section 1 "
        f"(max length 50, hidden 64, 2 layers, 2 heads, inner 256, dropout 0.5), batch 128 windows, Adam 1e-3, "
        f"seed {r['seed']}, early stopping (patience 10) capped at {r['max_epochs']} epochs; only the `loss` option "
        f"differs. {d['users']} users / {d['items']} items / {d['interactions']} interactions (5-core). Fit time "
        "includes the per-epoch validation; test metrics are full-ranking (all items, history masked) from the "
        "best-validation weights. Runs are sequential in one process.",
        "",
        "| training loss | fit s | epochs (best) | s/epoch | s/epoch vs full | test NDCG@10 | vs full | "
        "test HR@10 | test NDCG@50 | load (1-min mean) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, x in runs.items():
        vs = x.get("vs_full")
        lines.append(
            f"| {names.get(name, name)} | {f(x['fit_s'], 1)} | {x['epochs_run']} ({x['best_epoch']}) | "
            f"{f(x['s_per_epoch'], 2)} | {f(vs['s_per_epoch_ratio'], 2) + 'x' if vs else '1.00x'} | "
            f"{f(x['test']['NDCG@10'], 4)} | {'%+.4f' % vs['test_ndcg10_delta'] if vs else ''} | "
            f"{f(x['test']['HR@10'], 4)} | {f(x['test']['NDCG@50'], 4)} | {x['load']['load1_mean']} |")
    lines += ["", "Validation NDCG@10 per epoch:", ""]
    for name, x in runs.items():
        lines.append(f"- {names.get(name, name)}: " + ", ".join(f"{v:.4f}" for v in x["valid_curve"]))
    return lines + [""]


def scale_section(r) -> list[str]:
    c, d, t, e, rss = r["config"], r["data"], r["train"], r["eval"], r["peak_rss_gib"]
    m = e["metrics"]
    lines = [
        "## 5. Scale: 1M items x 1M users (synthetic), sampled-softmax training + chunked full ranking",
        "",
        f"`python bench/scale.py{' ' + ' '.join(r['argv']) if r['argv'] else ''}` on the machine above "
        f"(torch {r['machine'].get('torch_threads')} threads). A scale proof, not a quality result.",
        "",
        f"- **Data** (`generate`, seeded, vectorised numpy): {d['users']:,} users, {d['items']:,} items, "
        f"{d['interactions']:,} interactions in {f(d['generate_s'], 1)} s; sequence lengths "
        f"{d['length_min']}-{d['length_max']} (uniform, mean {f(d['length_mean'], 1)}); Zipf popularity "
        f"(a = {c['zipf_a']}; the most popular item is {100 * d['top_item_share']:.1f}% of training interactions, "
        f"{d['items_seen_in_training']:,} items occur in training); {100 * d['successor_rate']:.0f}% of "
        f"consecutive pairs are the successor pattern (p_follow = {c['p_follow']}).",
        f"- **Training**: ID SASRec (hidden {c['hidden_size']}, 2 layers, max_len {c['max_len']}, "
        f"{t['n_params']:,} parameters, {t['n_params'] * 4 / 2**20:.0f} MiB of fp32 weights), `loss=\"sampled\"` "
        f"with {c['n_negatives']} {c['negatives']} negatives per batch"
        f"{' + logQ correction' if c['negatives'] == 'popularity' else ''}, batch {c['batch_size']} users' windows "
        f"(~{t['targets_per_step_mean']:.0f} targets a step), Adam {c['lr']}, **{t['steps']} steps** in "
        f"{f(t['seconds'], 0)} s ({f(t['s_per_step'], 2)} s/step; a full-softmax step would need a "
        f"{t['targets_per_step_mean']:.0f} x {d['items']:,} logit matrix, "
        f"{t['targets_per_step_mean'] * d['items'] * 4 / 2**30:.0f} GiB). Sampled loss on a fixed probe batch: "
        f"{f(t['probe_sampled_loss_before'], 3)} before, {f(t['probe_sampled_loss_after'], 3)} after.",
        f"- **Evaluation**: `earec_core.metrics.evaluate` took the {e['path']} path by itself (catalog "
        f"{'>=' if e['path'] == 'chunked' else '<'} `chunked_min_items` = {c['chunked_min_items']:,}): "
        f"{e['users_evaluated']:,} random users, each ranked against all {e['items_ranked_per_user']:,} items "
        f"({c['chunk_size']:,} at a time, history masked), in {f(e['seconds'], 1)} s = "
        f"**{f(e['s_per_1k_users'], 2)} s per 1,000 users**, extrapolated to all {d['users']:,} users: "
        f"**{f(e['extrapolated_all_users_h'], 2)} h** on this machine (not run: a linear extrapolation from the "
        f"sample). HR@10 {f(m['HR@10'], 4)}, NDCG@10 {f(m['NDCG@10'], 4)}, HR@50 {f(m['HR@50'], 4)} "
        f"(random: HR@10 = {e['random_hr10']:.0e}). Dense scores for the sample alone would be "
        f"{f(e['dense_matrix_would_be_gib'], 1)} GiB, for all users "
        f"{f(e['all_users_dense_matrix_would_be_gib'] / 1024, 1)} TiB.",
        f"- **Top-10 lists** (`chunked_topk`, history excluded) for the same users: {f(e['topk10_seconds'], 1)} s "
        f"({f(e['topk10_s_per_1k_users'], 2)} s per 1,000 users).",
        f"- **Peak RSS** (`resource.getrusage`, whole process): {f(rss['after_generate'], 2)} GiB after generation, "
        f"{f(rss['after_train'], 2)} GiB after training, {f(rss['after_evaluate'], 2)} GiB after evaluation, "
        f"**{f(r['peak_rss_gib_max'], 2)} GiB** at most: within the {c['rss_limit_gib']:.0f} GiB limit: "
        f"{verdict(r['rss_within_limit'])}.",
        "",
        f"Load during the run: {load_line(r['load'])}.",
        "",
    ]
    return lines


def embed_scale_section(r) -> list[str]:
    lines = [
        "## 6. Item-embedding extraction memory as the catalog grows",
        "",
        f"`python bench/embed_scale.py{' ' + ' '.join(r['argv']) if r['argv'] else ''}` "
        f"(torch {r['machine'].get('torch_threads')} thread(s)). Every size runs in a fresh process. The "
        "backbone is a tiny Llama (hidden 32, 1 layer, SmolLM2's tokenizer) on a synthetic catalog, and "
        "extraction is the real `earec_core.embed.embed` on `base:text`, which streams shards of `--shard-size` "
        "items to disk. RSS is VmRSS, sampled every 20 ms.",
        "",
        "| items | shards | RSS after loading the dataset (MiB) | peak RSS during embed (MiB) | embed adds (MiB) | "
        "items/s |",
        "|---|---|---|---|---|---|",
    ]
    for x in r["rows"]:
        lines.append(f"| {x['n_items']:,} | {x['n_files']} | {x['rss_after_dataset_mib']} | {x['rss_peak_embed_mib']} | "
                     f"{x['embed_increase_mib']} | {f(x['items_per_s'], 1)} |")
    lines += ["", "The dataset (catalog and splits) grows with the catalog, and is meant to. What embedding adds "
              "on top stays flat, because each shard is written and freed before the next one starts.", "",
              f"Load during the run: {load_line(r['load'])}.", ""]
    return lines


def profile_section(r) -> list[str]:
    o = r["options"]
    masks = r["mask_seconds"]
    base = masks.get("F.dropout (bernoulli_)")
    lines = [
        "## 7. Where a SASRec training step spends its time (MovieLens-100k, ID SASRec)",
        "",
        f"`python bench/profile_sasrec.py`: the default network (hidden {o['hidden_size']}, {o['n_layers']} layers, "
        f"dropout {o['dropout']}, batch {o['batch_size']} windows of up to {o['max_len']} items, full softmax over "
        f"the catalog); {r['windows_per_epoch']} windows = {r['steps_per_epoch']} steps an epoch. "
        f"**{f(r['s_per_step'], 3)} s per training step** (mean of {r['steps_timed']}, torch "
        f"{r['machine'].get('torch_threads')} threads; {load_line(r['load'])}).",
        "",
        f"Self CPU time by operator over {r['profile_steps']} profiled steps (`torch.profiler`):",
        "",
        "| operator | share of self CPU time | calls |",
        "|---|---|---|",
    ]
    lines += [f"| `{t['op']}` | {100 * t['self_cpu_share']:.1f}% | {t['calls']} |" for t in r["top_ops"]]
    lines += [
        "",
        f"Dropout masks for one step ({r['mask_elements_per_step']:,} elements: the input dropout, and per layer "
        "the attention probabilities, the attention output, the feed-forward activation and its output), side by "
        "side in the same run (median s):",
        "",
        "| mask generator | s per step's masks | speed vs `F.dropout` |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {f(v, 4)} | {f(base / v, 2) + 'x' if base and v else ''} |" for name, v in masks.items()]
    return lines + [""]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--notes", default=str(BENCH_DIR / "NOTES.md"),
                    help="hand-written notes appended verbatim if the file exists")
    args = ap.parse_args()
    sasrec, embed, align, sampled, scale, embed_scale, prof = (
        load(n, args.smoke)
        for n in ("sasrec_vs_recbole", "embed_vs_loop", "align_overhead", "sampled_vs_full", "scale", "embed_scale",
                  "profile_sasrec"))
    es_runs = [(load(name, args.smoke), label) for name, label in EVAL_SPEED_RUNS]
    any_r = sasrec or embed or align or sampled or scale
    if any_r is None:
        raise SystemExit("no results under bench/out; run bench/run_all.sh first")
    m = any_r["machine"]
    run_info = OUT_DIR / f"run_all{'-smoke' if args.smoke else ''}.txt"
    lines = [
        "# Benchmarks: EARec vs peers" + (" (SMOKE RUN: tiny sizes, numbers meaningless)" if args.smoke else ""),
        "",
        "Command (repo root): `bash bench/run_all.sh` (creates the RecBole venv with `bench/peer_env.sh` if needed, "
        "runs `bench/sasrec_vs_recbole.py`, `bench/eval_speed.py`, `bench/embed_vs_loop.py`, `bench/align_overhead.py`, "
        "`bench/sampled_vs_full.py`, `bench/scale.py`, `bench/embed_scale.py`, `bench/profile_sasrec.py`, then `bench/report.py`, which writes this file from "
        "`bench/out/*.json`).",
        "",
        f"Machine: {m.get('nproc')} CPU cores ({m.get('cpu_model', '?')}), {m.get('ram_total_gib', '?')} GiB RAM "
        f"(`free -g`), no GPU; Python {m.get('python')}, torch {m.get('torch')} with {m.get('torch_threads')} threads. "
        f"Date: {m.get('date_utc')}.",
        "",
        "Every comparison below is measured side by side in the same script run and reported as a ratio; absolute "
        "seconds are context only (the machine is shared and its load is given per benchmark).",
        "",
    ]
    if run_info.is_file():
        lines += ["```", run_info.read_text().strip(), "```", ""]
    if sasrec:
        lines += sasrec_section(sasrec, es_runs)
    if embed:
        lines += embed_section(embed)
    if align:
        lines += align_section(align)
    if sampled:
        lines += sampled_section(sampled)
    if scale:
        lines += scale_section(scale)
    if embed_scale:
        lines += embed_scale_section(embed_scale)
    if prof:
        lines += profile_section(prof)
    notes = Path(args.notes)
    if notes.is_file() and not args.smoke:
        lines += [notes.read_text().strip(), ""]
    out = OUT_DIR / "RESULTS-smoke.md" if args.smoke else BENCH_DIR / "RESULTS.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
