"""Stage 1: anchor-generation alignment of ONE modality (Section 3.2 of the paper).

The LLM is wrapped with a fresh LoRA adapter (peft) and the modality gets a fresh projector;
both are trained with next-token cross-entropy on the answer tokens (anchor + EOS) of prompts
whose modality slot holds that modality's input (eq. 3).  Nothing of any other modality is read
or written, so modalities can be aligned in parallel or added later.

Outputs (``RUN/adapters/MODALITY/``): ``adapter_model.safetensors`` + ``adapter_config.json``
(peft's own format, loadable with ``PeftModel.from_pretrained``), ``projector.safetensors``,
``modality.json`` (dimensions, options, training log, the source dataset(s)), a model card
``README.md`` and ``manifest.json``.

Multi-device (:class:`DeviceConfig`): the same code runs under Lightning's own strategies
(``ddp``, ``fsdp``).  With ``devices > 1`` Lightning's launcher re-runs the command line once per
extra device; under ``torchrun`` every rank is started by torchrun.  Each rank trains on its own
shard of the samples (Lightning's ``DistributedSampler``); only global rank 0 writes the artifact,
and every rank returns only after it exists.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from .aligned import (PROJECTOR, base_fingerprint, check_adapter, load_projector, read_modality_meta,
                      write_aligned_modality)
from .artifacts import atomic_dir, is_current, manifest_of, read_json
from .backbone import decoder_and_head
from .data import alignment_items
from .data.subset import SUBSET_FILE, source_part
from .errors import EarecError
from .modality import Modality
from .prompt import IGNORE_INDEX, Batch, Sample, build_samples, collate, splice


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
    # continual alignment: start from this aligned folder's adapter (and projector) instead of fresh ones
    init_from: str | None = None
    log: list = field(default_factory=list, repr=False, compare=False)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("log")
        if d["init_from"] is None:  # absent when unused, so adapters aligned before it existed stay current
            d.pop("init_from")
        return d


@dataclass(frozen=True)
class DeviceConfig:
    """Where stage 1 trains: Lightning's ``accelerator``, ``devices`` (processes per node),
    ``strategy`` and ``num_nodes``.

    Deliberately not part of :class:`AlignConfig`: on one process (the default) the manifest is
    exactly what it was before multi-device support, so existing adapters stay current.  With a
    world size above 1 the manifest gains a ``"distributed"`` entry (world size, strategy,
    accelerator), because the result legitimately differs from one process: every rank takes its
    own batch of ``batch_size`` samples, so an optimizer step sees ``batch_size * world_size``
    samples and an epoch has ``world_size`` times fewer steps.  ``modality.json``'s ``train_log``
    always records the world size and how the samples were split over the ranks.
    """

    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"
    num_nodes: int = 1

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    @property
    def on_gpu(self) -> bool:
        return self.accelerator in ("gpu", "cuda") or (self.accelerator == "auto" and torch.cuda.is_available())

    def manifest_entry(self) -> dict | None:
        """What enters the manifest config: nothing on one process."""
        if self.world_size == 1:
            return None
        return {"world_size": self.world_size, "strategy": self.strategy, "accelerator": self.accelerator}

    def check(self) -> None:
        """Refuse settings that cannot work, before any data or model is loaded.

        Raises:
            EarecError: a count below 1, a spawn/fork strategy (its workers would train copies
                whose adapter this process never sees), FSDP without GPUs, a GPU request without
                enough GPUs, or a ``torchrun`` world size that differs from ``devices * num_nodes``.
        """

        if self.devices < 1 or self.num_nodes < 1:
            raise EarecError(f"--devices and --num-nodes must be at least 1 (got {self.devices}, {self.num_nodes})")
        if any(word in self.strategy for word in ("spawn", "fork", "notebook")):
            raise EarecError(f"--strategy {self.strategy}: only script-launched strategies work for alignment "
                             "(auto, ddp, fsdp); spawned workers would train copies this process never saves")
        if "fsdp" in self.strategy and not self.on_gpu:
            raise EarecError(f"--strategy {self.strategy} needs CUDA GPUs (Lightning's FSDP refuses the CPU); "
                             "use --strategy ddp on CPUs")
        if self.on_gpu:
            visible = torch.cuda.device_count()
            if visible == 0:
                raise EarecError(f"--accelerator {self.accelerator}: no CUDA GPU is visible; use --accelerator cpu")
            if self.devices > visible:
                raise EarecError(f"--devices {self.devices}: only {visible} CUDA GPU(s) visible on this machine "
                                 "(--devices counts devices per node)")
        if self.world_size > 1 and not torch.distributed.is_available():
            raise EarecError("--devices > 1 needs torch.distributed, which this torch build lacks")
        if _launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) != self.world_size:
            raise EarecError(f"torchrun started {os.environ['WORLD_SIZE']} processes but --devices x --num-nodes is "
                             f"{self.devices} x {self.num_nodes}; make them match (--devices = --nproc-per-node)")


def _launched_by_torchrun() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_torchelastic_launched()


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
        self.seen: dict[int, list[int]] = {}  # epoch -> indices of the samples this rank trained on

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


def source_record(ws, samples: list[Sample]) -> dict:
    """What ``modality.json`` records about the data a modality was aligned on: the dataset's
    identity (name, folder, sizes, fingerprint) and the number of samples; for a source made by
    ``earec make-source``, its parts (each mixed dataset, and the target whose items were removed)
    with the samples drawn from each."""
    record = {**ws.dataset_identity, "samples": len(samples)}
    directory = ws.dataset.directory
    subset = directory / SUBSET_FILE if directory is not None else None
    if subset is not None and subset.is_file():
        info = read_json(subset)
        parts = info.get("parts", [])
        if info.get("mixed"):  # ids carry their part's name
            drawn = Counter(source_part(s.item_id, [p["name"] for p in parts]) for s in samples)
        else:  # one part: every sample is its own
            drawn = {p["name"]: len(samples) for p in parts}
        record["parts"] = [{**p, "samples": drawn.get(p["name"], 0)} for p in parts]
        record["without_items_of"] = info.get("target")
    return record


def resolve_precision(precision: str) -> str:
    """``auto``: bf16 mixed precision on a GPU, fp32 on CPU (CPU bf16 autocast made a training
    step ~7x slower than fp32 on the 2-core machines we measured)."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


def _fit(module: AnchorGeneration, samples: list[Sample], pad_id: int, cfg: AlignConfig, epochs: int, progress: bool,
         devices: DeviceConfig | None = None) -> L.Trainer:
    """Train ``module`` on ``samples``; returns the (torn-down) Trainer.

    The loader draws sample *indices* (so each rank can report which samples it trained on).  On
    one process it shuffles with a generator seeded 0; under a distributed strategy Lightning
    replaces its sampler by a ``DistributedSampler`` (``shuffle=True``, seeded with the run's seed
    through ``PL_GLOBAL_SEED``, re-shuffled per epoch with ``set_epoch``), so every rank gets a
    disjoint, deterministic shard (padded with repeats to equal length, as DDP needs).  Plain
    ``ddp`` (``find_unused_parameters=False``) suffices: DDP tracks only parameters that require
    grad (the projector while it is pre-trained on the frozen LLM; LoRA + projector afterwards)
    and every step uses all of them.
    """
    devices = devices or DeviceConfig()

    def collate_indices(indices: list[int]) -> Batch:
        trainer = module._trainer
        module.seen.setdefault(trainer.current_epoch if trainer is not None else 0, []).extend(int(i) for i in indices)
        return collate([samples[i] for i in indices], pad_id)

    loader = DataLoader(range(len(samples)), batch_size=cfg.batch_size, shuffle=True, collate_fn=collate_indices,
                        generator=torch.Generator().manual_seed(0))
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        trainer = L.Trainer(
            max_epochs=epochs, accelerator=devices.accelerator, devices=devices.devices, strategy=devices.strategy,
            num_nodes=devices.num_nodes, logger=False,
            precision="32-true" if cfg.precision == "auto" and not devices.on_gpu else resolve_precision(cfg.precision),
            enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress,
            gradient_clip_val=1.0, num_sanity_val_steps=0, use_distributed_sampler=True,
        )
    except (MisconfigurationException, ValueError) as exc:  # e.g. an accelerator this machine lacks
        raise EarecError(f"cannot train on --accelerator {devices.accelerator} --devices {devices.devices} "
                         f"--strategy {devices.strategy}: {exc}") from None
    module.train()  # the backbone is loaded in eval mode; LoRA dropout needs train mode
    trainer.fit(module, train_dataloaders=loader)
    module.eval()
    return trainer


def _phase_log(trainer: L.Trainer, module: AnchorGeneration) -> tuple[list[float], dict]:
    """``(loss per step, {"sample_split": per epoch, "weight_checksum_per_rank": …})`` of one fit,
    over every rank.  ``sample_split`` lists, per epoch, how many samples each rank trained on
    (``per_rank``) and how many distinct samples all ranks saw together (``distinct``).

    The loss of a step is the mean of the ranks' losses (each on its own batch of the same
    size), i.e. the loss of the global batch whose averaged gradient DDP applied.
    """
    # sum of this rank's trainable weights: equal on every rank iff DDP kept the replicas in sync
    # (under a sharded strategy such as FSDP it is the sum of the rank's own shard)
    checksum = sum(float(p.detach().double().sum()) for p in module.parameters() if p.requires_grad)
    mine = (module.losses, module.seen, checksum)
    if trainer.world_size == 1:
        gathered = [mine]
    else:
        gathered = [None] * trainer.world_size
        torch.distributed.all_gather_object(gathered, mine)
    n_steps = min(len(losses) for losses, _, _ in gathered)
    loss = [sum(losses[i] for losses, _, _ in gathered) / len(gathered) for i in range(n_steps)]
    split = []
    for epoch in sorted({e for _, seen, _ in gathered for e in seen}):
        per_rank = [seen.get(epoch, []) for _, seen, _ in gathered]
        split.append({"epoch": epoch, "per_rank": [len(idx) for idx in per_rank],
                      "distinct": len({i for idx in per_rank for i in idx})})
    return loss, {"sample_split": split, "weight_checksum_per_rank": [c for _, _, c in gathered]}


def _launched_children(*trainers: L.Trainer) -> list:
    """Processes Lightning's subprocess launcher started for the other local ranks (rank 0 only)."""
    return [p for t in trainers for p in getattr(t.strategy.launcher, "procs", None) or []]


def lora_config(cfg: AlignConfig):
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.target_modules, task_type="CAUSAL_LM")


def align(ws, modality_name: str, cfg: AlignConfig | None = None, *, force: bool = False,
          devices: DeviceConfig | None = None):
    """Align one modality; returns ``RUN/adapters/MODALITY``.  Skipped when its manifest matches.

    ``devices`` (default: one process) selects Lightning's accelerator / devices / strategy.  With
    more than one device, Lightning re-runs this process's command line for the other local ranks
    (so call it from a script or the ``earec align`` command, not from a notebook or a program
    that would do other work on every rank); under ``torchrun`` the ranks already exist and rank 0
    prepares the run's shared state (dataset, encoder) before the others read it.  Every rank
    returns the same path, after global rank 0 has written the artifact; the process group this
    call created is destroyed before it returns.

    Raises:
        ModalityNotFound: unknown modality.
        EarecError: no item can form an alignment sample; unusable device settings.
    """
    from peft import PeftModel, get_peft_model

    cfg = cfg or AlignConfig()
    devices = devices or DeviceConfig()
    devices.check()
    had_group = torch.distributed.is_available() and torch.distributed.is_initialized()
    launcher_state = ({k: os.environ.get(k) for k in _LAUNCHER_ENV}, torch.get_num_threads())
    out = ws.adapter_dir(modality_name)
    with _rank_zero_first(devices):  # torchrun: one rank fits the encoder / writes the dataset stats
        modality = ws.modality(modality_name)
    if modality.placeholder is not None and cfg.projector_pretrain_epochs > 0 and "fsdp" in devices.strategy:
        # after a first FSDP fit the backbone's weights are local shards, which peft cannot wrap
        raise EarecError(f"--strategy {devices.strategy} cannot pre-train the {modality_name!r} projector before "
                         "LoRA training (two fits on one sharded model); use --projector-pretrain-epochs 0 or "
                         "--strategy ddp")
    config = {"modality": modality_name, "align": cfg.as_dict(), "llm": str(ws.llm_path), "seed": ws["seed"],
              "max_length": ws["max_length"]}
    if devices.manifest_entry() is not None:  # one process: the manifest is unchanged
        config["distributed"] = devices.manifest_entry()
    inputs = {"dataset": ws.dataset_dir, "encoder": ws.encoder_dir(modality_name)}
    init = None
    if cfg.init_from is not None:
        init = Path(cfg.init_from).expanduser().resolve()
        meta = read_modality_meta(init)  # ArtifactError if it is not an aligned modality
        if meta["modality"] != modality_name:
            raise EarecError(f"--init-from {init} holds modality {meta['modality']!r}, not {modality_name!r}")
        inputs["init"] = init
    # ws.modality() has fitted (or verified) the encoder state and written its manifest
    manifest = manifest_of(out, "align", config, inputs)
    if not force and is_current(out, manifest):
        _close_group(had_group)
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
        if init is not None:  # the source's projector, when its widths fit this encoder and backbone
            projector = load_projector(init / PROJECTOR, meta, modality, d_llm).train()
    start = time.perf_counter()
    log: dict = {"samples": len(samples), "skipped": skipped}
    pad_id = ws.tokenizer.pad_token_id
    trainers = []
    if projector is not None and cfg.projector_pretrain_epochs > 0:
        # Reference recipe: warm the projector alone on the frozen LLM before LoRA training.
        pre = AnchorGeneration(model, modality, projector, lora_lr=0.0, projector_lr=cfg.projector_pretrain_lr,
                               warmup_ratio=cfg.warmup_ratio, train_lora=False)
        trainers.append(_fit(pre, samples, pad_id, cfg, cfg.projector_pretrain_epochs, ws.progress, devices))
        log["projector_pretrain_loss"], pre_info = _phase_log(trainers[-1], pre)
    if init is None:
        peft_model = get_peft_model(model, lora_config(cfg))
    else:  # continual alignment (the paper re-aligns behaviour in-domain): keep training that adapter
        check_adapter(init, model, fingerprint=meta.get("base_config"), error=EarecError)
        peft_model = PeftModel.from_pretrained(model, str(init), is_trainable=True)
    module = AnchorGeneration(peft_model, modality, projector, lora_lr=cfg.lora_lr, projector_lr=cfg.projector_lr,
                              warmup_ratio=cfg.warmup_ratio, train_lora=True)
    trainers.append(_fit(module, samples, pad_id, cfg, cfg.epochs, ws.progress, devices))
    trainer = trainers[-1]
    log["loss"], info = _phase_log(trainer, module)
    log["seconds"] = time.perf_counter() - start
    log["distributed"] = {
        "world_size": trainer.world_size, "num_nodes": trainer.num_nodes, "devices": devices.devices,
        "strategy": type(trainer.strategy).__name__, "accelerator": type(trainer.accelerator).__name__, **info,
    }
    if len(trainers) == 2:
        log["distributed"]["projector_pretrain"] = pre_info

    # Lightning's own gathering: the module's state dict on one process or DDP; under FSDP the
    # full (unsharded) weights, on rank 0 only.  Every rank must take part.
    state = trainer.strategy.lightning_module_state_dict()
    if trainer.is_global_zero:
        prefix = f"projectors.{modality_name}."
        with atomic_dir(out, manifest) as tmp:
            write_aligned_modality(
                tmp, peft_model, {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")},
                None if projector is None else {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)},
                {
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
                "transferable": modality.transferable,
                "sources": [source_record(ws, samples)],
                **({"initialised_from": {"path": str(init), "sources": meta.get("sources")}} if init else {}),
                })
    if trainer.world_size > 1:
        trainer.strategy.barrier("earec-align-written")  # no rank returns before the artifact exists
        _close_group(had_group)
        children = _launched_children(*trainers)
        for rank, proc in enumerate(children, start=1):
            if proc.wait() != 0:  # they return right after the barrier; their failure is ours
                raise EarecError(f"alignment rank {rank} (pid {proc.pid}) exited with status {proc.returncode}")
        if children:  # this process was the launcher: undo what it set for its children
            _restore_launcher_state(*launcher_state)
    return out


# set in the launching process by Lightning's subprocess launcher (and its thread count)
_LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def _restore_launcher_state(env: dict, threads: int) -> None:
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    torch.set_num_threads(threads)


def _close_group(had_group: bool) -> None:
    """Destroy the process group that this call (through Lightning or torchrun's rendezvous)
    created, so a later stage in this process starts clean; a group the caller made is kept."""
    if not had_group and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class _rank_zero_first:
    """Under ``torchrun`` (all ranks start together): rank 0 runs the block first, the other ranks
    after it (over a process group created here and then reused by Lightning).  Elsewhere a no-op:
    Lightning's own launcher starts the other ranks only once rank 0 has reached training, so
    the run's shared state is already written when they read it."""

    def __init__(self, devices: DeviceConfig):
        self.active = devices.world_size > 1 and _launched_by_torchrun()
        self.backend = "nccl" if devices.on_gpu else "gloo"  # what Lightning's DDP/FSDP strategies would pick

    def __enter__(self):
        if not self.active:
            return
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(self.backend)
        if torch.distributed.get_rank() != 0:
            torch.distributed.barrier()  # wait for rank 0 to finish the block

    def __exit__(self, *exc):
        if self.active and torch.distributed.get_rank() == 0:
            torch.distributed.barrier()  # release the others
        return False
