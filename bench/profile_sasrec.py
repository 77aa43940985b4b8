"""Where one ID-SASRec training step spends its CPU time (issue 14: "profile each stage").

Runs the default network on MovieLens-100k training windows (batch 128, Adam 1e-3, dropout 0.5)
and reports, from ``torch.profiler``, the operators with the most self CPU time over
``--profile-steps`` steps.  Side by side in the same run, it times the dropout-mask generators on
the shapes one step draws masks for: ``torch.nn.functional.dropout`` (what
``nn.TransformerEncoderLayer`` calls: ``bernoulli_`` per element) against a uniform draw
compared with the keep probability (``rand_like(x) >= p``), as a ratio.

    python bench/profile_sasrec.py            # writes bench/out/profile_sasrec.json
    python bench/profile_sasrec.py --smoke    # 2 steps, bench/out/profile_sasrec-smoke.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, LoadSampler, machine, median, write_json  # noqa: E402


def mask_shapes(batch: int, length: int, hidden: int, inner: int, heads: int, layers: int) -> list[tuple]:
    """The tensors a training step draws dropout masks for: the input dropout, and per layer the
    attention probabilities, the attention output, the feed-forward activation and its output."""
    per_layer = [(batch * heads, length, length), (batch, length, hidden), (batch, length, inner),
                 (batch, length, hidden)]
    return [(batch, length, hidden)] + per_layer * layers


def time_masks(shapes, repeats: int) -> dict:
    import torch
    import torch.nn.functional as F

    xs = [torch.randn(s) for s in shapes]

    def bernoulli():
        for x in xs:
            F.dropout(x, 0.5, training=True)

    def uniform():
        for x in xs:
            x * (torch.rand_like(x) >= 0.5) * 2.0

    out = {}
    for name, fn in (("F.dropout (bernoulli_)", bernoulli), ("rand_like >= p", uniform), ("F.dropout again", bernoulli)):
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        out[name] = median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12, help="timed training steps (after 2 warm-up steps)")
    ap.add_argument("--profile-steps", type=int, default=4)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.steps, args.profile_steps = 2, 1

    import torch
    from torch.profiler import ProfilerActivity, profile

    import earec_sasrec
    from earec_core.data import load_dataset
    from earec_sasrec.lit import SequenceDataModule

    splits = load_dataset("ml-100k").splits
    rec = earec_sasrec.SASRec()
    o = rec.options
    net = rec._build(splits.n_items, None).train()
    torch.manual_seed(0)
    data = SequenceDataModule(splits.train, splits.valid, o["max_len"], o["batch_size"], o["eval_batch_size"])
    batches = [b for _, b in zip(range(2 + args.steps + args.profile_steps), data.train_dataloader())]
    opt = torch.optim.Adam(net.parameters(), lr=o["lr"])

    def step(batch):
        opt.zero_grad()
        net.loss(*batch).backward()
        opt.step()

    with LoadSampler() as load:
        for b in batches[:2]:
            step(b)
        start = time.perf_counter()
        for b in batches[2 : 2 + args.steps]:
            step(b)
        s_per_step = (time.perf_counter() - start) / args.steps
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for b in batches[2 + args.steps :]:
                step(b)
        shapes = mask_shapes(o["batch_size"], o["max_len"], o["hidden_size"], o["inner_size"], o["n_heads"],
                             o["n_layers"])
        masks = time_masks(shapes, repeats=3 if args.smoke else 15)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    result = {
        "machine": machine(),
        "smoke": args.smoke,
        "options": {k: v for k, v in o.items() if k != "ks"},
        "windows_per_epoch": len(data.windows),
        "steps_per_epoch": -(-len(data.windows) // o["batch_size"]),
        "s_per_step": s_per_step,
        "steps_timed": args.steps,
        "profile_steps": args.profile_steps,
        "top_ops": [{"op": e.key, "self_cpu_share": e.self_cpu_time_total / total, "calls": e.count}
                    for e in top],
        "mask_elements_per_step": sum(int(torch.Size(s).numel()) for s in shapes),
        "mask_seconds": masks,
        "load": load.summary(),
    }
    write_json(OUT_DIR / f"profile_sasrec{'-smoke' if args.smoke else ''}.json", result)
    print(f"s/step {s_per_step:.3f}; " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in masks.items()))


if __name__ == "__main__":
    main()
