#!/usr/bin/env python
"""SASRec training loss on MovieLens-100k: full softmax vs sampled softmax, side by side in one run.

Same data (ml-100k from the recbole wheel, 5-core, leave-one-out), same network as
bench/sasrec_vs_recbole.py (ID SASRec: max length 50, hidden 64, 2 layers, 2 heads, inner 256,
dropout 0.5), same seed, same optimiser and early stopping (patience 10 on validation NDCG@10, at
most ``--max-epochs`` epochs); only ``loss`` differs: ``full`` (softmax over all 1,349 items) vs
``sampled`` with ``--n-negatives`` shared negatives per batch, uniform and (optionally) popularity-
sampled with the logQ correction.  Reports fit wall time (training + per-epoch validation), seconds
per epoch, epochs run, and test HR/NDCG@10/50 of the best-validation weights (full-ranking evaluation).

Usage (repo root, /work/venv):  python bench/sampled_vs_full.py [--max-epochs 20] [--smoke]
Writes bench/out/sampled_vs_full.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, LoadSampler, machine, write_json  # noqa: E402

NET = dict(hidden_size=64, n_layers=2, n_heads=2, inner_size=256, dropout=0.5, max_len=50)
CONFIGS = {
    "full": dict(loss="full"),
    "sampled-uniform": dict(loss="sampled", negatives="uniform"),
    "sampled-popularity": dict(loss="sampled", negatives="popularity"),
}


def run(name: str, splits, args) -> dict:
    import torch

    import earec_sasrec
    from earec_core.metrics import evaluate

    options = {**NET, **CONFIGS[name], "max_epochs": args.max_epochs}
    if options["loss"] == "sampled":
        options["n_negatives"] = args.n_negatives
    rec = earec_sasrec.SASRec(**options)
    with LoadSampler() as load:
        start = time.perf_counter()
        best_valid = rec.fit(splits, None, seed=args.seed, progress=False)
        fit_s = time.perf_counter() - start
    test, _ = evaluate(rec, splits.test, splits.n_items)
    epochs = len(rec.history)
    best_epoch = max(range(epochs), key=lambda i: (rec.history[i]["NDCG@10"], -i)) + 1
    result = {"options": {k: v for k, v in rec.options.items() if k != "ks"}, "fit_s": fit_s, "epochs_run": epochs,
              "s_per_epoch": fit_s / epochs, "best_epoch": best_epoch, "best_valid": best_valid, "test": test,
              "valid_curve": [h["NDCG@10"] for h in rec.history], "torch_threads": torch.get_num_threads(),
              "load": load.summary()}
    print(f"[{name}] {json.dumps({k: result[k] for k in ('fit_s', 'epochs_run', 'best_epoch', 'test')})}", flush=True)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-epochs", type=int, default=20)
    ap.add_argument("--n-negatives", type=int, default=100)
    ap.add_argument("--configs", default="full,sampled-uniform,sampled-popularity",
                    help=f"comma-separated, from {', '.join(CONFIGS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="1 epoch each")
    args = ap.parse_args()
    if args.smoke:
        args.max_epochs = 1
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown config(s) {unknown}; choose from {list(CONFIGS)}")
    from earec_core.data import load_dataset

    ds = load_dataset("ml-100k", k=5)
    result = {"machine": machine(), "argv": sys.argv[1:], "max_epochs": args.max_epochs,
              "n_negatives": args.n_negatives, "seed": args.seed, "dataset": ds.stats, "runs": {}}
    for name in names:
        result["runs"][name] = run(name, ds.splits, args)
    full = result["runs"].get("full")
    for name, r in result["runs"].items():
        if full and name != "full":
            r["vs_full"] = {"fit_time_ratio": r["fit_s"] / full["fit_s"],
                            "s_per_epoch_ratio": r["s_per_epoch"] / full["s_per_epoch"],
                            "test_ndcg10_delta": r["test"]["NDCG@10"] - full["test"]["NDCG@10"]}
    result["load_at_end"] = os.getloadavg()
    out = OUT_DIR / f"sampled_vs_full{'-smoke' if args.smoke else ''}.json"
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
