#!/usr/bin/env python
"""Full-ranking evaluation speed, ours vs RecBole 1.2.1, interleaved in one run (A B A).

Both evaluate an untrained SASRec of the benchmark's shape (evaluation time does not depend on
the weights) on the ml-100k validation split: 943 users, all 1,349 items ranked, history masked,
HR/NDCG@10/50.  Ours: ``earec_core.metrics.evaluate(rec.score, splits.valid, n_items)``; RecBole:
``trainer.evaluate(valid_data)`` in the peer venv (bench/_recbole_eval_timing.py; its process
start-up and data preparation are not timed).  Complements the in-training timings of
bench/sasrec_vs_recbole.py with a same-conditions measurement.

``--threads N`` runs both with N torch threads (``torch.set_num_threads`` for ours, ``OMP_NUM_THREADS``
for RecBole's process).  ``--omp-passive`` sets ``OMP_WAIT_POLICY=PASSIVE`` for both processes: idle
OpenMP threads sleep instead of spinning.  On a shared, oversubscribed machine the default spinning
makes many-small-op code (ours: 4 batches x length groups) erratically slow (0.5-4 s instead of ~0.2 s
per evaluation, measured); 1 thread or passive waiting removes that effect for both sides.

Usage (repo root, /work/venv):  python bench/eval_speed.py [--reps 7] [--threads 1] [--omp-passive]
Writes bench/out/eval_speed[-threadsN][-passive].json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_DIR, OUT_DIR, LoadSampler, machine, median, write_json  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--peer-venv", default=os.environ.get("PEER_VENV", str(BENCH_DIR / ".peer-venv")))
    ap.add_argument("--threads", type=int, default=None, help="torch threads for both (default: torch's default)")
    ap.add_argument("--omp-passive", action="store_true", help="OMP_WAIT_POLICY=PASSIVE for both processes")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.reps = 2
    if args.omp_passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # read by libgomp when torch loads it, so before the import
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    import earec_sasrec
    from earec_core.data import load_dataset
    from earec_core.metrics import evaluate

    splits = load_dataset("ml-100k", k=5).splits
    torch.manual_seed(0)
    rec = earec_sasrec.SASRec(hidden_size=64, n_layers=2, n_heads=2, inner_size=256, dropout=0.5, max_len=50)
    rec._build(splits.n_items, None).eval()

    def ours():
        evaluate(rec.score, splits.valid, splits.n_items)  # warm-up
        ts = []
        for _ in range(args.reps):
            s = time.perf_counter()
            evaluate(rec.score, splits.valid, splits.n_items)
            ts.append(time.perf_counter() - s)
        return ts

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    with LoadSampler(every=1.0) as load:
        ours_a = ours()
        proc = subprocess.run([str(Path(args.peer_venv) / "bin" / "python"), str(BENCH_DIR / "_recbole_eval_timing.py"),
                               "--reps", str(args.reps), "--out", str(OUT_DIR / "recbole-eval")],
                              capture_output=True, text=True, env=env)
        if proc.returncode:
            raise SystemExit(f"RecBole eval timing failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        rb = json.loads(proc.stdout.strip().splitlines()[-1])
        ours_b = ours()
    ours_all = ours_a + ours_b
    result = {
        "machine": machine(), "reps": args.reps, "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default (active spinning)"),
        "ours_valid_eval_s": ours_all, "ours_median": median(ours_all),
        "recbole_valid_eval_s": rb["valid_eval_s"], "recbole_median": median(rb["valid_eval_s"]),
        "speedup_median": median(rb["valid_eval_s"]) / median(ours_all),
        "recbole_torch_threads": rb["torch_threads"], "valid_users": rb["valid_users"],
        "load": load.summary(),
    }
    name = (f"eval_speed{f'-threads{args.threads}' if args.threads else ''}{'-passive' if args.omp_passive else ''}"
            f"{'-smoke' if args.smoke else ''}")
    write_json(OUT_DIR / f"{name}.json", result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
