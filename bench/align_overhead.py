#!/usr/bin/env python
"""Stage-1 alignment step time: our Lightning path vs bare transformers+peft loops, one run.

* ours: ``earec_core.align.AnchorGeneration`` in a Lightning ``Trainer`` configured exactly as
  ``earec_core.align._fit`` does (fp32 on CPU, gradient clipping 1.0, cosine schedule with 3%
  warm-up, AdamW) except the progress bar is off and ``max_steps`` is set;
* bare-hf: a plain PyTorch loop over the same peft model with the stock HF loss
  (``model(..., labels=...)``: LM head over every position, the usual reference code);
* bare-same: the same plain loop with our loss (``anchor_loss``: LM head only at supervised
  positions), so ``ours / bare-same`` isolates the Lightning overhead.

Same backbone (default SmolLM2-135M-Instruct), same samples in the same order (text modality,
anchor = title, seeded shuffle), batch 8, LoRA r=16 alpha=32 dropout 0.05 on all linear layers.
Each variant gets a fresh base model + fresh adapter.  Step time = wall time between successive
optimizer steps (data collation included), the first ``--warmup`` steps dropped; variants are
interleaved over ``--rounds`` rounds (order reversed every other round) and medians reported.

Usage (repo root, /work/venv):  python bench/align_overhead.py [--steps 8] [--rounds 2] [--smoke]
Writes bench/out/align_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, LoadSampler, machine, median, write_json  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8, help="measured steps per variant and round")
    ap.add_argument("--warmup", type=int, default=2, help="steps dropped at the start of each variant")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--smoke", action="store_true", help="tiny dry run: 2 steps, 1 warm-up, 1 round")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.smoke:
        args.steps, args.warmup, args.rounds = 2, 1, 1
    out_json = Path(args.out) if args.out else OUT_DIR / f"align_overhead{'-smoke' if args.smoke else ''}.json"

    import lightning as L
    import torch
    from peft import get_peft_model
    from torch.utils.data import DataLoader
    from transformers import get_cosine_schedule_with_warmup

    from earec_core.align import AlignConfig, AnchorGeneration, anchor_loss, lora_config, resolve_precision
    from earec_core.data import alignment_items
    from earec_core.prompt import build_samples, collate
    from earec_core.workspace import Workspace

    ws = Workspace(OUT_DIR / "embed-ws", progress=False)
    cfg = AlignConfig(batch_size=args.batch_size)
    modality = ws.modality("text")
    builder = ws.builder({"text": modality})
    catalog = ws.dataset.catalog
    total_steps = args.warmup + args.steps
    train_ids, _ = alignment_items(catalog, ws["seed"], cfg.holdout, cfg.batch_size * total_steps)
    samples, skipped = build_samples(builder, catalog, train_ids, with_answer=True, with_related=cfg.with_related)
    samples = samples[: cfg.batch_size * total_steps]
    pad_id = ws.tokenizer.pad_token_id
    precision = resolve_precision(cfg.precision)

    def loader():
        return DataLoader(samples, batch_size=cfg.batch_size, shuffle=True, collate_fn=lambda s: collate(s, pad_id),
                          generator=torch.Generator().manual_seed(0))

    def fresh_peft():
        L.seed_everything(ws["seed"], verbose=False)
        return get_peft_model(ws.base_model(), lora_config(cfg))

    class StepTimer(L.Callback):
        def __init__(self):
            self.stamps, self.tokens = [], []

        def on_train_start(self, trainer, pl_module):
            self.stamps.append(time.perf_counter())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.stamps.append(time.perf_counter())
            self.tokens.append(int(batch.attention_mask.sum()))

    def run_ours():
        peft_model = fresh_peft()
        module = AnchorGeneration(peft_model, modality, None, lora_lr=cfg.lora_lr, projector_lr=cfg.projector_lr,
                                  warmup_ratio=cfg.warmup_ratio, train_lora=True)
        timer = StepTimer()
        trainer = L.Trainer(
            max_epochs=1, max_steps=total_steps, accelerator="auto", devices=1, precision=precision, logger=False,
            enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
            gradient_clip_val=1.0, num_sanity_val_steps=0, callbacks=[timer],
        )
        module.train()
        trainer.fit(module, train_dataloaders=loader())
        return timer.stamps, timer.tokens, module.losses

    def run_bare(loss_kind):
        peft_model = fresh_peft()
        peft_model.train()
        params = [p for p in peft_model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW([{"params": params, "lr": cfg.lora_lr}], weight_decay=0.0)
        sched = get_cosine_schedule_with_warmup(opt, math.ceil(cfg.warmup_ratio * total_steps), total_steps)
        stamps, tokens, losses = [time.perf_counter()], [], []
        for step, batch in enumerate(loader()):
            if step >= total_steps:
                break
            if loss_kind == "hf":
                loss = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                  position_ids=batch.position_ids, labels=batch.labels).loss
            else:
                loss = anchor_loss(peft_model, batch, {"text": modality}, {})
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            stamps.append(time.perf_counter())
            tokens.append(int(batch.attention_mask.sum()))
        return stamps, tokens, losses

    variants = {"ours_lightning": run_ours, "bare_same_loss": lambda: run_bare("same"),
                "bare_hf_loss": lambda: run_bare("hf")}
    per_step = {k: [] for k in variants}
    tok_rate = {k: [] for k in variants}
    first_losses = {}
    with LoadSampler(every=2.0) as load:
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                stamps, tokens, losses = variants[name]()
                steps = [b - a for a, b in zip(stamps, stamps[1:])][args.warmup:]
                toks = tokens[args.warmup:]
                per_step[name].extend(steps)
                tok_rate[name].extend(t / s for t, s in zip(toks, steps))
                first_losses.setdefault(name, losses[:3])
                print(f"  round {r}: {name}: {median(steps):.3f} s/step over {len(steps)} steps", flush=True)

    rows = {name: {"step_s_median": median(v), "step_s_min": min(v), "steps_measured": len(v),
                   "tokens_per_s_median": median(tok_rate[name]), "first_losses": first_losses[name]}
            for name, v in per_step.items()}
    ours = rows["ours_lightning"]["step_s_median"]
    result = {
        "machine": machine(),
        "argv": sys.argv[1:],
        "llm": str(ws.llm_path),
        "precision": precision,
        "batch_size": cfg.batch_size,
        "lora": {"r": cfg.lora_rank, "alpha": cfg.lora_alpha, "dropout": cfg.lora_dropout, "target": cfg.target_modules},
        "samples": len(samples),
        "skipped": skipped,
        "tokens_per_batch_median": median([int(collate(samples[i:i + cfg.batch_size], pad_id).attention_mask.sum())
                                           for i in range(0, len(samples), cfg.batch_size)]),
        "variants": rows,
        "ratio_ours_over_bare_same_loss": ours / rows["bare_same_loss"]["step_s_median"],
        "ratio_ours_over_bare_hf_loss": ours / rows["bare_hf_loss"]["step_s_median"],
        "load": load.summary(),
    }
    write_json(out_json, result)
    print(json.dumps({k: v for k, v in result.items() if k in ("variants", "ratio_ours_over_bare_same_loss",
                                                            "ratio_ours_over_bare_hf_loss", "load")}, indent=2))
    print(f"wrote {out_json}")


if __name__ == "__main__":
    main()
