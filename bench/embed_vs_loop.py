#!/usr/bin/env python
"""Item-embedding extraction: our batched path vs a batch-size-1 loop, side by side in one run.

* ours: ``earec_core.embed.encode_items`` (prompts sorted by length, left-padded batches of 16,
  position ids over real tokens, ``torch.inference_mode``, decoder only: no LM head);
* loop: the reference's way, one item at a time under ``torch.no_grad`` over the *same* model,
  the same prompts and the same decoder call (batch of 1, so no padding at all);
* loop-full: one item at a time through the whole causal LM with ``output_hidden_states=True``
  (the reference code's call; also computes the LM head over every position), for context.

Backbone: the default SmolLM2-135M-Instruct (``earec_core.backbone.default_llm_dir()``), text
modality, un-aligned base model (``base:text``): alignment does not change the cost of a forward.
fp32 for every path (fair comparison); ours also in bf16 autocast.  Every path includes prompt
building.  The outputs are also compared (max abs difference, min cosine) so a speed-up cannot
come from computing something else.

Usage (repo root, /work/venv):  python bench/embed_vs_loop.py [--items 256] [--smoke]
Writes bench/out/embed_vs_loop.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, LoadSampler, machine, median, write_json  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=1, help="repeat every path this many times (median reported)")
    ap.add_argument("--no-full-loop", action="store_true", help="skip the whole-LM batch-1 loop")
    ap.add_argument("--smoke", action="store_true", help="tiny dry run: 16 items")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.smoke:
        args.items = 16
    out_json = Path(args.out) if args.out else OUT_DIR / f"embed_vs_loop{'-smoke' if args.smoke else ''}.json"

    import torch
    import torch.nn.functional as F

    from earec_core.backbone import decoder_and_head
    from earec_core.embed import encode_items
    from earec_core.model import load_aligned
    from earec_core.prompt import PromptError, collate, splice
    from earec_core.workspace import Workspace

    t = time.perf_counter()
    ws = Workspace(OUT_DIR / "embed-ws", progress=False)  # default backbone: default_llm_dir()
    aligned = load_aligned(ws, "base:text", seed=0)
    builder = ws.builder(aligned.modalities)
    catalog = ws.dataset.catalog
    item_ids = catalog.ids[: args.items]
    setup_s = time.perf_counter() - t
    model = aligned.model
    decoder, _ = decoder_and_head(model)
    embed_tokens = model.get_input_embeddings()
    pad_id = builder.tokenizer.pad_token_id

    def build(iid):
        try:
            return builder.build(catalog[iid], with_answer=False, with_related=False)
        except PromptError:
            return builder.build_bare(iid)

    lengths = [len(build(i).input_ids) for i in item_ids]

    def ours(precision):
        return encode_items(aligned, builder, catalog, item_ids, batch_size=args.batch_size,
                            precision=precision, progress=False)

    def loop():
        out = torch.empty(len(item_ids), embed_tokens.weight.shape[1])
        with torch.no_grad():
            for row, iid in enumerate(item_ids):
                batch = collate([build(iid)], pad_id)
                x = splice(embed_tokens(batch.input_ids), batch, aligned.modalities, aligned.projectors)
                h = decoder(inputs_embeds=x, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
                out[row] = h.last_hidden_state[0, -1].float()
        return out

    def loop_full():  # the text modality has no slots, so the ids go straight in
        out = torch.empty(len(item_ids), embed_tokens.weight.shape[1])
        with torch.no_grad():
            for row, iid in enumerate(item_ids):
                ids = torch.tensor([build(iid).input_ids])
                res = model(input_ids=ids, output_hidden_states=True)
                out[row] = res.hidden_states[-1][0, -1].float()
        return out

    paths = {"ours_fp32": lambda: ours("fp32"), "loop_fp32": loop, "ours_bf16": lambda: ours("bf16")}
    if not args.no_full_loop:
        paths["loop_full_fp32"] = loop_full

    # warm-up: a few items through every path (allocator, kernels, autocast caches)
    saved = item_ids
    item_ids = saved[:4]
    for fn in paths.values():
        fn()
    item_ids = saved

    times = {k: [] for k in paths}
    outputs = {}
    with LoadSampler(every=2.0) as load:
        for _ in range(args.rounds):
            for name, fn in paths.items():
                s = time.perf_counter()
                outputs[name] = fn()
                times[name].append(time.perf_counter() - s)
                print(f"  {name}: {times[name][-1]:.2f} s", flush=True)

    def agree(a, b):
        return {"max_abs_diff": float((outputs[a] - outputs[b]).abs().max()),
                "min_cosine": float(F.cosine_similarity(outputs[a], outputs[b], dim=1).min())}

    n = len(item_ids)
    rows = {}
    for name, ts in times.items():
        med = median(ts)
        rows[name] = {"seconds": ts, "seconds_median": med, "items_per_s": n / med}
    base = rows["loop_fp32"]["seconds_median"]
    for name in rows:
        rows[name]["speedup_vs_loop_fp32"] = base / rows[name]["seconds_median"]
    result = {
        "machine": machine(),
        "argv": sys.argv[1:],
        "llm": str(ws.llm_path),
        "n_params": sum(p.numel() for p in model.parameters()),
        "n_items": n,
        "batch_size_ours": args.batch_size,
        "prompt_tokens": {"min": min(lengths), "median": median(lengths), "max": max(lengths),
                          "total": sum(lengths)},
        "setup_s": setup_s,
        "paths": rows,
        "agreement": {"ours_fp32_vs_loop_fp32": agree("ours_fp32", "loop_fp32"),
                      "ours_bf16_vs_loop_fp32": agree("ours_bf16", "loop_fp32"),
                      **({"loop_full_vs_loop_fp32": agree("loop_full_fp32", "loop_fp32")} if "loop_full_fp32" in outputs else {})},
        "load": load.summary(),
        "load_at_end": os.getloadavg(),
    }
    write_json(out_json, result)
    print(json.dumps({k: {kk: round(vv, 3) for kk, vv in v.items() if kk != "seconds"} for k, v in rows.items()}, indent=2))
    print(json.dumps(result["agreement"], indent=2))
    print(f"wrote {out_json}")


if __name__ == "__main__":
    main()
