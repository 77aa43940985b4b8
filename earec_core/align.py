"""Stage 1: anchor-generation alignment of ONE modality (Section 3.2 of the paper).

The LLM is wrapped with a fresh LoRA adapter (peft) and the modality gets a fresh projector;
both are trained with next-token cross-entropy on the answer tokens (anchor + EOS) of prompts
whose modality slot holds that modality's input (eq. 3).  Nothing of any other modality is read
or written, so modalities can be aligned in parallel or added later.

Outputs (``RUN/adapters/MODALITY/``): ``adapter_model.safetensors`` + ``adapter_config.json``
(peft's own format, loadable with ``PeftModel.from_pretrained``), ``projector.safetensors``,
``modality.json`` (dimensions, options, training log) and ``manifest.json``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import lightning as L
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader

from .aligned import base_fingerprint
from .artifacts import atomic_dir, is_current, manifest_of, write_json
from .backbone import decoder_and_head
from .modality import Modality
from .prompt import IGNORE_INDEX, Batch, PromptError, Sample, collate, splice


@dataclass
class AlignConfig:
    """Stage-1 hyper-parameters.  Paper values: r=128, alpha=256, LoRA lr 2e-4, projector lr 2e-5,
    2 epochs, cosine schedule with 3% warmup; defaults here are scaled for a 135M model on CPU."""

    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    lora_lr: float = 2e-4
    projector_lr: float = 2e-5
    projector_pretrain_epochs: int = 1
    projector_pretrain_lr: float = 1e-3
    epochs: int = 1
    batch_size: int = 8
    max_items: int | None = 400
    holdout: int = 32
    warmup_ratio: float = 0.03
    precision: str = "auto"
    with_related: bool = True
    log: list = field(default_factory=list, repr=False, compare=False)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("log")
        return d


def alignment_items(catalog, seed: int, holdout: int, max_items: int | None) -> tuple[list[str], list[str]]:
    """``(train_ids, holdout_ids)``: a seeded shuffle of items with a non-empty anchor; the first
    ``holdout`` are never trained on (explainability is scored on them), the next ``max_items``
    (all if ``None``) are the alignment samples.  Same for every modality of a run."""
    ids = [it.id for it in catalog if it.anchor.strip()]
    random.Random(seed).shuffle(ids)
    held, rest = ids[:holdout], ids[holdout:]
    return (rest if max_items is None else rest[:max_items]), held


def anchor_loss(
    model: nn.Module,
    batch: Batch,
    modalities: Mapping[str, Modality],
    projectors: Mapping[str, nn.Module],
) -> torch.Tensor:
    """Mean next-token cross-entropy over supervised (answer) tokens, eq. 3.

    Runs the decoder on spliced ``inputs_embeds`` ``(batch, seq_len, hidden)`` and applies the LM
    head only at positions whose next token is supervised, which saves the
    ``(batch, seq_len, vocab)`` logits tensor.
    """
    decoder, head = decoder_and_head(model)
    embeds = model.get_input_embeddings()(batch.input_ids)
    embeds = splice(embeds, batch, modalities, projectors)
    hidden = decoder(
        inputs_embeds=embeds, attention_mask=batch.attention_mask, position_ids=batch.position_ids
    ).last_hidden_state
    targets = batch.labels[:, 1:]
    supervised = targets != IGNORE_INDEX
    logits = head(hidden[:, :-1][supervised])
    return nn.functional.cross_entropy(logits.float(), targets[supervised])


class AnchorGeneration(L.LightningModule):
    """LightningModule for one modality: trains the LoRA parameters and/or the projector."""

    def __init__(self, model, modality: Modality, projector: nn.Module | None, *, lora_lr: float,
                 projector_lr: float, warmup_ratio: float, train_lora: bool):
        super().__init__()
        self.model = model
        self.modality = modality
        self.projectors = nn.ModuleDict({modality.name: projector} if projector is not None else {})
        self.lora_lr, self.projector_lr, self.warmup_ratio = lora_lr, projector_lr, warmup_ratio
        self.train_lora = train_lora
        self.losses: list[float] = []

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = anchor_loss(self.model, batch, {self.modality.name: self.modality}, self.projectors)
        self.log("loss", loss, prog_bar=True, batch_size=batch.input_ids.shape[0])
        self.losses.append(float(loss.detach()))
        return loss

    def configure_optimizers(self):
        from transformers import get_cosine_schedule_with_warmup

        groups = []
        if self.train_lora:
            groups.append({"params": [p for p in self.model.parameters() if p.requires_grad], "lr": self.lora_lr})
        if len(self.projectors):
            groups.append({"params": list(self.projectors.parameters()), "lr": self.projector_lr})
        optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = get_cosine_schedule_with_warmup(optimizer, math.ceil(self.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def build_samples(builder, catalog, item_ids, *, with_answer: bool, with_related: bool) -> tuple[list[Sample], dict[str, int]]:
    """Samples for ``item_ids``; items that cannot form one (no input for the modality, empty
    anchor, over budget) are skipped and counted by reason, never crash the loop."""
    samples, skipped = [], {}
    for iid in item_ids:
        try:
            samples.append(builder.build(catalog[iid], with_answer=with_answer, with_related=with_related))
        except PromptError as exc:
            reason = str(exc).split(":", 1)[-1].strip().split(";")[0][:60]
            skipped[reason] = skipped.get(reason, 0) + 1
    return samples, skipped


def resolve_precision(precision: str) -> str:
    """``auto``: bf16 mixed precision on a GPU, fp32 on CPU (CPU bf16 autocast made a training
    step ~7x slower than fp32 on the 2-core machines we measured)."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


def _fit(module: AnchorGeneration, samples: list[Sample], pad_id: int, cfg: AlignConfig, epochs: int, progress: bool) -> None:
    loader = DataLoader(samples, batch_size=cfg.batch_size, shuffle=True, collate_fn=lambda s: collate(s, pad_id),
                        generator=torch.Generator().manual_seed(0))
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="auto", devices=1, precision=resolve_precision(cfg.precision), logger=False,
        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress,
        gradient_clip_val=1.0, num_sanity_val_steps=0,
    )
    module.train()  # the backbone is loaded in eval mode; LoRA dropout needs train mode
    trainer.fit(module, train_dataloaders=loader)
    module.eval()


def lora_config(cfg: AlignConfig):
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.target_modules, task_type="CAUSAL_LM")


def align(ws, modality_name: str, cfg: AlignConfig | None = None, *, force: bool = False):
    """Align one modality; returns ``RUN/adapters/MODALITY``.  Skipped when its manifest matches.

    Raises:
        ModalityNotFound: unknown modality.
        EarecError: no item can form an alignment sample.
    """
    from peft import get_peft_model

    from .errors import EarecError

    cfg = cfg or AlignConfig()
    out = ws.adapter_dir(modality_name)
    modality = ws.modality(modality_name)
    manifest = manifest_of(
        out, "align",
        {"modality": modality_name, "align": cfg.as_dict(), "llm": str(ws.llm_path), "seed": ws["seed"],
         "max_length": ws["max_length"]},
        # ws.modality() has fitted (or verified) the encoder state and written its manifest
        {"dataset": ws.dir / "dataset", "encoder": ws.context.artifact_dir(modality_name)},
    )
    if not force and is_current(out, manifest):
        return out

    L.seed_everything(ws["seed"], verbose=False)
    catalog = ws.dataset.catalog
    train_ids, _ = alignment_items(catalog, ws["seed"], cfg.holdout, cfg.max_items)
    builder = ws.builder({modality_name: modality})
    samples, skipped = build_samples(builder, catalog, train_ids, with_answer=True, with_related=cfg.with_related)
    if not samples:
        raise EarecError(f"modality {modality_name!r}: no item can form an alignment sample (skipped: {skipped})")

    model = ws.base_model()
    d_llm = model.get_input_embeddings().weight.shape[1]
    projector = None
    if modality.placeholder is not None:
        projector = modality.build_projector(modality.feature_dim, d_llm)
    start = time.perf_counter()
    log: dict = {"samples": len(samples), "skipped": skipped}
    pad_id = ws.tokenizer.pad_token_id
    if projector is not None and cfg.projector_pretrain_epochs > 0:
        # Reference recipe: warm the projector alone on the frozen LLM before LoRA training.
        pre = AnchorGeneration(model, modality, projector, lora_lr=0.0, projector_lr=cfg.projector_pretrain_lr,
                               warmup_ratio=cfg.warmup_ratio, train_lora=False)
        _fit(pre, samples, pad_id, cfg, cfg.projector_pretrain_epochs, ws.progress)
        log["projector_pretrain_loss"] = pre.losses
    peft_model = get_peft_model(model, lora_config(cfg))
    module = AnchorGeneration(peft_model, modality, projector, lora_lr=cfg.lora_lr, projector_lr=cfg.projector_lr,
                              warmup_ratio=cfg.warmup_ratio, train_lora=True)
    _fit(module, samples, pad_id, cfg, cfg.epochs, ws.progress)
    log.update({"loss": module.losses, "seconds": time.perf_counter() - start})

    with atomic_dir(out, manifest) as tmp:
        peft_model.save_pretrained(str(tmp))
        if projector is not None:
            save_file({k: v.detach().float().contiguous() for k, v in projector.state_dict().items()},
                      str(tmp / "projector.safetensors"))
        write_json(tmp / "modality.json", {
            "modality": modality_name,
            "placeholder": modality.placeholder,
            "feature_dim": modality.feature_dim if projector is not None else None,
            "tokens_per_item": modality.tokens_per_item,
            "hidden_size": d_llm,
            "base_model": str(ws.llm_path),
            "base_config": base_fingerprint(model.config),  # checked before the adapter is loaded again
            "options": modality.options,
            "align": cfg.as_dict(),
            "train_log": log,
        })
    return out
