#!/usr/bin/env python
"""SASRec at scale on a CPU: 1M items x 1M users of synthetic data (issue 6, "recommender at scale").

1. **Data** (:func:`generate`, seeded, vectorised numpy: seconds for ~27M interactions): sequence
   lengths uniform in ``min_len..max_len``; item popularity Zipf-like (the item of popularity rank
   ``r`` is drawn with probability proportional to ``r ** -zipf_a``, ranks shuffled over item ids);
   with probability ``p_follow`` a position repeats a learnable pattern instead (the successor
   ``id + 1`` of the previous item).  Leave-one-out as everywhere in EARec: the last item of each
   sequence is its test target, the second-to-last the validation target, the rest is training data.
2. **Training**: ID SASRec (the plugin's ``SASRecNet`` and ``SASRecLit``, i.e. what ``SASRec.fit``
   trains) with ``loss="sampled"`` under a Lightning ``Trainer`` for ``--steps`` steps, without
   per-epoch validation (a scale proof, not a quality result).  Each step draws ``--batch-size``
   random users and trains on the most recent window of their training sequence (``max_len + 1``
   items; with sequences of <= 50 items that is the whole training sequence, like
   ``earec_sasrec.lit.train_windows``).  A full softmax would need a ``(targets x 1M)`` logit
   matrix per step; sampled softmax needs ``(targets x n_negatives)``.
3. **Evaluation**: ``earec_core.metrics.evaluate`` on the test examples of ``--eval-users`` random
   users, which takes the chunked path on its own (SASRec offers user/item vectors and the catalog
   is above ``chunked_min_items``): every one of the 1M items is ranked for every user, a chunk of
   items at a time, history masked; no ``(users x items)`` matrix exists.  Seconds per 1,000 users are
   extrapolated linearly to all users.  ``chunked_topk`` then produces top-10 lists for the same users.
4. **Memory**: peak resident set size of the process (``resource.getrusage``), after each phase.

Usage (repo root, /work/venv):  python bench/scale.py [--smoke] [--steps 200] [--eval-users 2000]
Writes bench/out/scale.json (``--smoke``: tiny sizes, bench/out/scale-smoke.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, LoadSampler, machine, write_json  # noqa: E402

GIB = 1024**3


def generate(n_users: int, n_items: int, *, min_len: int = 5, max_len: int = 50, zipf_a: float = 1.0,
             p_follow: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic user sequences in CSR form.

    * length of each sequence: uniform in ``min_len..max_len``;
    * a "fresh" item is drawn by popularity: the item of popularity rank ``r`` (1-based) has probability
      ``r ** -zipf_a / sum_k k ** -zipf_a``; ranks are assigned to item ids by a random permutation;
    * every position but a sequence's first, with probability ``p_follow``, is instead the successor of
      the previous item (``id % n_items + 1``), so runs of consecutive ids give a sequential signal.

    Returns:
        ``(items, offsets)``: ``items`` ``(total,)`` int32 in ``1..n_items``, all sequences concatenated;
        ``offsets`` ``(n_users + 1,)`` int64, user ``u``'s sequence is ``items[offsets[u]:offsets[u + 1]]``.
    Raises:
        ValueError: ``min_len < 4`` (leave-one-out needs two training items), ``max_len < min_len``,
            or fewer than one user or item.
    """
    if min_len < 4 or max_len < min_len or n_users < 1 or n_items < 1:
        raise ValueError(f"need 4 <= min_len <= max_len and positive sizes, got min_len={min_len}, "
                         f"max_len={max_len}, n_users={n_users}, n_items={n_items}")
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, max_len + 1, n_users)
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    cdf = np.cumsum(np.arange(1, n_items + 1, dtype=np.float64) ** -zipf_a)
    rank = np.minimum(np.searchsorted(cdf, rng.random(total) * cdf[-1], side="right"), n_items - 1)
    fresh = rng.permutation(n_items)[rank]  # 0-based item ids
    follow = rng.random(total) < p_follow
    follow[offsets[:-1]] = False  # a sequence starts with a fresh item
    position = np.arange(total)
    run_start = np.where(follow, 0, position)
    np.maximum.accumulate(run_start, out=run_start)  # the fresh item each run of successors starts from
    items = (fresh[run_start] + (position - run_start)) % n_items + 1
    return items.astype(np.int32), offsets


def training_mask(offsets: np.ndarray, total: int) -> np.ndarray:
    """``(total,)`` bool: the training part of every sequence (all but its last two items)."""
    mask = np.ones(total, dtype=bool)
    mask[offsets[1:] - 1] = False
    mask[offsets[1:] - 2] = False
    return mask


def window_batch(items: np.ndarray, offsets: np.ndarray, users: np.ndarray, max_len: int):
    """``(inputs, targets)`` long tensors ``(B, W - 1)`` for ``users``: the most recent ``<= max_len + 1``
    items of each training sequence, left-padded with 0 (as ``earec_sasrec.lit.collate_windows``)."""
    import torch

    ends = offsets[users + 1] - 2  # exclusive end of the training part
    starts = np.maximum(offsets[users], ends - (max_len + 1))
    width = int((ends - starts).max())
    index = ends[:, None] - width + np.arange(width)[None, :]
    real = index >= starts[:, None]
    padded = torch.from_numpy(np.where(real, items[np.where(real, index, 0)], 0).astype(np.int64))
    return padded[:, :-1], padded[:, 1:]


def test_examples(items: np.ndarray, offsets: np.ndarray, users: np.ndarray) -> list[tuple[list[int], int]]:
    """Leave-one-out test examples ``(history = all but the last item, target = the last item)``."""
    return [(items[offsets[u] : offsets[u + 1] - 1].tolist(), int(items[offsets[u + 1] - 1])) for u in users]


def peak_rss_gib() -> float:
    """Peak resident set size of this process so far (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def train(net, items, offsets, args, counts):
    """``args.steps`` Lightning steps of ``SASRecLit`` (sampled softmax) on random users' windows."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, IterableDataset

    from earec_sasrec.lit import SASRecLit

    class Windows(IterableDataset):
        def __iter__(self):
            rng = np.random.default_rng(args.seed + 1)
            while True:
                yield window_batch(items, offsets, rng.integers(0, len(offsets) - 1, args.batch_size), args.max_len)

    lit = SASRecLit(net, args.lr, 0.0, (10,), loss="sampled", n_negatives=args.n_negatives, item_counts=counts)
    # a fixed probe batch and fixed negatives: the sampled loss before / after training
    probe = window_batch(items, offsets, np.random.default_rng(args.seed + 2).integers(0, len(offsets) - 1, 256),
                         args.max_len)
    probe_negatives = lit.sample_negatives()

    def probe_loss():
        net.eval()
        with torch.no_grad():
            value = net.sampled_loss(*probe, probe_negatives, lit.log_q).item()
        net.train()
        return value

    before = probe_loss()
    trainer = L.Trainer(max_steps=args.steps, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", devices=1)
    start = time.perf_counter()
    trainer.fit(lit, train_dataloaders=DataLoader(Windows(), batch_size=None))
    seconds = time.perf_counter() - start
    targets_per_window = np.minimum(np.diff(offsets) - 2, args.max_len + 1) - 1
    return {"steps": trainer.global_step, "seconds": seconds, "s_per_step": seconds / max(1, trainer.global_step),
            "targets_per_step_mean": float(targets_per_window.mean() * args.batch_size),
            "probe_sampled_loss_before": before, "probe_sampled_loss_after": probe_loss()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--min-len", type=int, default=5)
    ap.add_argument("--max-seq-len", type=int, default=50, help="longest generated sequence")
    ap.add_argument("--zipf-a", type=float, default=1.0)
    ap.add_argument("--p-follow", type=float, default=0.3)
    ap.add_argument("--hidden-size", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=50, help="SASRec max_len (items a user vector sees)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--n-negatives", type=int, default=1000)
    ap.add_argument("--negatives", choices=("uniform", "popularity"), default="popularity")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-users", type=int, default=2000)
    ap.add_argument("--eval-batch-size", type=int, default=256)
    ap.add_argument("--chunk-size", type=int, default=None, help="items scored at once (default: earec_core.metrics')")
    ap.add_argument("--chunked-min-items", type=int, default=None,
                    help="evaluate()'s threshold for the chunked path (default: earec_core.metrics' own)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rss-limit-gib", type=float, default=24.0)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (20k users, 50k items, 20 steps, 300 users)")
    args = ap.parse_args()
    if args.smoke:
        args.users, args.items, args.steps, args.eval_users, args.n_negatives = 20_000, 50_000, 20, 300, 200
        args.chunked_min_items = 10_000  # exercise the chunked path at the tiny size
    import lightning  # noqa: F401  (imported first: it sets its own log level on import)
    import torch

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    for message in ("does not have many workers", "smaller than the logging interval", "no `val_dataloader`",
                    r"isinstance\(treespec, LeafSpec\)"):
        warnings.filterwarnings("ignore", message=f".*{message}.*")

    import earec_sasrec
    from earec_core.metrics import DEFAULT_CHUNK_SIZE, DEFAULT_CHUNKED_MIN_ITEMS, chunked_topk, evaluate

    args.chunk_size = args.chunk_size or DEFAULT_CHUNK_SIZE
    if args.chunked_min_items is None:
        args.chunked_min_items = DEFAULT_CHUNKED_MIN_ITEMS

    result = {"machine": machine(), "argv": sys.argv[1:], "config": vars(args), "load_at_start": os.getloadavg()}
    rss = {"start": peak_rss_gib()}
    with LoadSampler() as load:
        t = time.perf_counter()
        items, offsets = generate(args.users, args.items, min_len=args.min_len, max_len=args.max_seq_len,
                                  zipf_a=args.zipf_a, p_follow=args.p_follow, seed=args.seed)
        gen_s = time.perf_counter() - t
        lengths = np.diff(offsets)
        counts_np = np.bincount(items[training_mask(offsets, len(items))], minlength=args.items + 1)
        counts_np[0] = 0
        follow_rate = float(np.mean(np.diff(items.astype(np.int64)) % args.items == 1))
        result["data"] = {
            "users": args.users, "items": args.items, "interactions": int(len(items)), "generate_s": gen_s,
            "length_min": int(lengths.min()), "length_max": int(lengths.max()), "length_mean": float(lengths.mean()),
            "items_seen_in_training": int((counts_np > 0).sum()),
            "top_item_share": float(counts_np.max() / counts_np.sum()),
            "successor_rate": follow_rate,
        }
        rss["after_generate"] = peak_rss_gib()
        print(f"[data] {result['data']}", flush=True)

        torch.manual_seed(args.seed)
        rec = earec_sasrec.SASRec(hidden_size=args.hidden_size, max_len=args.max_len, loss="sampled",
                                  n_negatives=args.n_negatives, negatives=args.negatives)
        net = rec._build(args.items, None)  # the model SASRec.fit would train; trained below without validation
        counts = torch.from_numpy(counts_np) if args.negatives == "popularity" else None
        result["train"] = train(net, items, offsets, args, counts)
        result["train"]["n_params"] = sum(p.numel() for p in net.parameters())
        rss["after_train"] = peak_rss_gib()
        print(f"[train] {result['train']}", flush=True)
        net.eval()

        users = np.random.default_rng(args.seed + 3).choice(args.users, size=min(args.eval_users, args.users),
                                                             replace=False)
        examples = test_examples(items, offsets, users)
        t = time.perf_counter()
        metrics, ranks = evaluate(rec, examples, args.items, ks=(10, 50), batch_size=args.eval_batch_size,
                                  chunk_size=args.chunk_size, chunked_min_items=args.chunked_min_items)
        eval_s = time.perf_counter() - t
        rss["after_evaluate"] = peak_rss_gib()
        histories = [h for h, _ in examples]
        t = time.perf_counter()
        for start in range(0, len(histories), args.eval_batch_size):
            batch = histories[start : start + args.eval_batch_size]
            chunked_topk(rec.user_vectors(batch), rec.item_vectors(), 10, exclude=batch, chunk_size=args.chunk_size)
        topk_s = time.perf_counter() - t
        rss["after_topk"] = peak_rss_gib()
        per_1k = eval_s / len(examples) * 1000
        result["eval"] = {
            "path": "chunked" if args.items >= args.chunked_min_items else "dense",
            "users_evaluated": len(examples), "items_ranked_per_user": args.items, "seconds": eval_s,
            "s_per_1k_users": per_1k, "extrapolated_all_users_s": per_1k * args.users / 1000,
            "extrapolated_all_users_h": per_1k * args.users / 1000 / 3600,
            "topk10_seconds": topk_s, "topk10_s_per_1k_users": topk_s / len(examples) * 1000,
            "metrics": metrics, "random_hr10": 10 / args.items,
            "median_rank": float(ranks.float().median()),
            "dense_matrix_would_be_gib": len(examples) * (args.items + 1) * 4 / GIB,
            "all_users_dense_matrix_would_be_gib": args.users * (args.items + 1) * 4 / GIB,
        }
        print(f"[eval] {result['eval']}", flush=True)
    result["peak_rss_gib"] = rss
    result["peak_rss_gib_max"] = max(rss.values())
    result["rss_within_limit"] = result["peak_rss_gib_max"] <= args.rss_limit_gib
    result["load"] = load.summary()
    result["load_at_end"] = os.getloadavg()
    out = OUT_DIR / f"scale{'-smoke' if args.smoke else ''}.json"
    write_json(out, result)
    print(json.dumps({k: result[k] for k in ("peak_rss_gib", "rss_within_limit", "load")}, indent=2))
    print(f"wrote {out}")
    if not result["rss_within_limit"]:
        raise SystemExit(f"peak RSS {result['peak_rss_gib_max']:.2f} GiB exceeds {args.rss_limit_gib} GiB")


if __name__ == "__main__":
    main()
