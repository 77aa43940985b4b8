#!/usr/bin/env python
"""Our SASRec (earec_sasrec) vs RecBole 1.2.1 SASRec, side by side in one run.

Same data (MovieLens-100k from the recbole wheel, 5-core, leave-one-out), same network
(max length 50, hidden 64, 2 layers, 2 heads, inner 256, dropout 0.5, full-softmax CE), same
full-ranking evaluation (HR/NDCG@10/50 over all items, history masked).

1. RecBole runs first, in its own venv (bench/peer_env.sh), through the team's peer script
   (shared/peers/recbole_sasrec_peer.py: drives recbole.config/data/trainer directly) with
   batch 2048 and a fixed epoch budget.  Its best validation NDCG@10 within that budget is the
   **target**; its time to the target is the fit wall time at that epoch (training + validation).
2. Ours then trains (our defaults: batch 128 training windows, Adam 1e-3, early stopping with
   patience 10) with a wall-time cap equal to RecBole's fit time; per-epoch (seconds since
   ``fit()`` was called, validation metrics) are recorded by wrapping
   ``SASRecLit.on_validation_epoch_end`` in this script (no change to the plugin).
3. Full-ranking evaluation speed: ours = ``earec_core.metrics.evaluate(rec.score, valid)`` over
   all users, repeated; RecBole = its ``trainer.evaluate`` on the validation set, timed once per
   epoch by the peer script (``valid_s``).
4. Test NDCG@10 of both (each from its best-validation weights, each framework's own evaluator).

Usage (from the repo root, with /work/venv):  python bench/sasrec_vs_recbole.py [--smoke]
Writes bench/out/sasrec_vs_recbole.json (and RecBole's own files under bench/out/recbole/).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_DIR, OUT_DIR, LoadSampler, machine, median, write_json  # noqa: E402

DEFAULT_PEER_SCRIPT = BENCH_DIR.parent.parent / "shared" / "peers" / "recbole_sasrec_peer.py"
NET = dict(hidden_size=64, n_layers=2, n_heads=2, inner_size=256, dropout=0.5, max_len=50)


def run_recbole(args) -> dict:
    out = OUT_DIR / ("recbole-smoke" if args.smoke else "recbole")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [str(Path(args.peer_venv) / "bin" / "python"), str(args.peer_script),
           "--batch-size", str(args.recbole_batch_size), "--epochs", str(args.recbole_epochs),
           "--out", str(out)]
    if args.recbole_max_minutes:
        cmd += ["--max-minutes", str(args.recbole_max_minutes)]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    print("[recbole]", " ".join(cmd), flush=True)
    start = time.perf_counter()
    with LoadSampler() as load, open(out / "stdout.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (out / "stdout.log").read_text()[-3000:]
        raise SystemExit(f"RecBole peer failed (exit {proc.returncode}); log tail:\n{tail}")
    summary = json.loads((out / "summary.json").read_text())
    summary["process_wall_s"] = wall
    summary["load"] = load.summary()
    summary["command"] = " ".join(cmd)
    return summary


def run_ours(args, budget_s: float) -> dict:
    import torch

    import earec_sasrec
    from earec_core.data import load_dataset
    from earec_core.metrics import evaluate
    from earec_sasrec.lit import SASRecLit, train_windows

    t = time.perf_counter()
    ds = load_dataset("ml-100k", k=5)
    load_s = time.perf_counter() - t
    splits = ds.splits

    clock = {"t0": None}
    original = SASRecLit.on_validation_epoch_end

    def timed_on_validation_epoch_end(self):
        original(self)
        elapsed = time.perf_counter() - clock["t0"]
        self.history[-1]["seconds"] = elapsed
        if budget_s and elapsed > budget_s:
            self.trainer.should_stop = True  # wall-time cap (same budget as RecBole's fit)

    SASRecLit.on_validation_epoch_end = timed_on_validation_epoch_end
    try:
        rec = earec_sasrec.SASRec(**NET, max_epochs=args.our_max_epochs)
        with LoadSampler() as load:
            clock["t0"] = time.perf_counter()
            best_valid = rec.fit(splits, None, seed=args.seed, progress=False)
            fit_wall = time.perf_counter() - clock["t0"]
    finally:
        SASRecLit.on_validation_epoch_end = original
    history = [dict(h) for h in rec.history]

    # full-ranking evaluation speed over all validation users (warm-up once, then repeat)
    n_items = splits.n_items
    evaluate(rec.score, splits.valid, n_items)
    eval_times = []
    with LoadSampler(every=1.0) as eval_load:
        for _ in range(args.eval_reps):
            s = time.perf_counter()
            valid_metrics, _ = evaluate(rec.score, splits.valid, n_items)
            eval_times.append(time.perf_counter() - s)
    s = time.perf_counter()
    test_metrics, _ = evaluate(rec.score, splits.test, n_items)
    test_eval_s = time.perf_counter() - s
    return {
        "options": dict(rec.options, ks=list(rec.options["ks"])),
        "torch_threads": torch.get_num_threads(),
        "dataset": {**ds.stats, "train_windows_per_epoch": len(train_windows(splits.train, NET["max_len"])),
                    "train_targets_per_epoch": sum(max(0, len(s) - 1) for s in splits.train)},
        "dataset_load_s": load_s,
        "budget_s": budget_s,
        "fit_wall_s": fit_wall,
        "epochs_run": len(history),
        "stopped_by": ("budget" if budget_s and history and history[-1]["seconds"] > budget_s
                       else "early stopping" if len(history) < args.our_max_epochs else "max_epochs"),
        "history": history,
        "best_valid": best_valid,
        "valid_eval_s": eval_times,
        "valid_eval_s_median": median(eval_times),
        "valid_eval_s_min": min(eval_times),
        "valid_metrics_recomputed": valid_metrics,
        "test_eval_s": test_eval_s,
        "test": test_metrics,
        "load": load.summary(),
        "eval_load": eval_load.summary(),
        "n_params": sum(p.numel() for p in rec.net.parameters()),
    }


def time_to(curve, target, key):
    """(seconds, 1-based epoch) of the first curve point whose NDCG@10 >= target, else (None, None)."""
    for i, point in enumerate(curve):
        if point[key] >= target - 1e-12:
            return point["seconds"], i + 1
    return None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer-venv", default=os.environ.get("PEER_VENV", str(BENCH_DIR / ".peer-venv")))
    ap.add_argument("--peer-script", default=os.environ.get("PEER_SCRIPT", str(DEFAULT_PEER_SCRIPT)))
    ap.add_argument("--recbole-epochs", type=int, default=4,
                    help="RecBole training budget in epochs (batch 2048: ~130-150 s each on 2 cores)")
    ap.add_argument("--recbole-max-minutes", type=float, default=0, help="optional extra wall cap for RecBole")
    ap.add_argument("--recbole-batch-size", type=int, default=2048)
    ap.add_argument("--our-max-epochs", type=int, default=200)
    ap.add_argument("--our-budget-s", type=float, default=None,
                    help="wall cap for our fit (default: RecBole's fit wall time)")
    ap.add_argument("--eval-reps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny dry run: 1 RecBole epoch, ours capped at 20 s")
    ap.add_argument("--out", default=None, help="result JSON (default bench/out/sasrec_vs_recbole[-smoke].json)")
    args = ap.parse_args()
    if args.smoke:
        args.recbole_epochs, args.eval_reps = 1, 2
        args.our_budget_s = args.our_budget_s or 20.0
    out_json = Path(args.out) if args.out else OUT_DIR / f"sasrec_vs_recbole{'-smoke' if args.smoke else ''}.json"

    result = {"machine": machine(), "load_at_start": os.getloadavg(), "argv": sys.argv[1:]}
    rb = run_recbole(args)
    curve = rb["curve"]
    for point in curve:
        point["seconds"] = point["wall_since_fit_start_s"]
        point["ndcg10"] = point["valid_result"]["ndcg@10"]
    best = max(range(len(curve)), key=lambda i: (curve[i]["ndcg10"], -i))
    target = curve[best]["ndcg10"]
    budget = args.our_budget_s if args.our_budget_s is not None else rb["timing"]["fit_wall_s"]
    print(f"[recbole] target valid NDCG@10 = {target:.4f} at epoch {best + 1}, "
          f"{curve[best]['seconds']:.1f} s; our budget {budget:.0f} s", flush=True)

    ours = run_ours(args, budget)
    for point in ours["history"]:
        point["ndcg10"] = point["NDCG@10"]
    our_s, our_epoch = time_to(ours["history"], target, "ndcg10")
    rb_s = curve[best]["seconds"]

    # time to each of RecBole's per-epoch validation values (the whole curve, not just the target)
    per_epoch = []
    for i, point in enumerate(curve):
        s, e = time_to(ours["history"], point["ndcg10"], "ndcg10")
        per_epoch.append({"recbole_epoch": i + 1, "valid_ndcg10": point["ndcg10"], "recbole_s": point["seconds"],
                          "ours_s": s, "ours_epoch": e, "ratio_ours_over_recbole": (s / point["seconds"]) if s else None})

    rb_eval = [p["valid_s"] for p in curve]
    result.update({
        "load_at_end": os.getloadavg(),
        "recbole": rb,
        "ours": ours,
        "target_valid_ndcg10": target,
        "target_epoch_recbole": best + 1,
        "time_to_target": {"recbole_s": rb_s, "ours_s": our_s, "ours_epoch": our_epoch,
                           "ratio_ours_over_recbole": (our_s / rb_s) if our_s else None},
        "time_to_recbole_epochs": per_epoch,
        "eval": {"recbole_valid_eval_s_median": median(rb_eval), "recbole_valid_eval_s_min": min(rb_eval),
                 "recbole_valid_eval_s_all": rb_eval,
                 "ours_valid_eval_s_median": ours["valid_eval_s_median"], "ours_valid_eval_s_min": ours["valid_eval_s_min"],
                 "speedup_median": median(rb_eval) / ours["valid_eval_s_median"],
                 "recbole_test_eval_incl_reload_s": rb["timing"]["test_eval_s"], "ours_test_eval_s": ours["test_eval_s"]},
        "test": {"recbole": rb["test"], "ours": ours["test"],
                 "ndcg10_delta_ours_minus_recbole": ours["test"]["NDCG@10"] - rb["test"]["ndcg@10"]},
    })
    write_json(out_json, result)
    tt = result["time_to_target"]
    print(json.dumps({"target": target, "time_to_target": tt, "eval": result["eval"], "test": result["test"],
                      "ours_epochs": ours["epochs_run"], "ours_stopped_by": ours["stopped_by"]}, indent=2))
    print(f"wrote {out_json}")


if __name__ == "__main__":
    main()
