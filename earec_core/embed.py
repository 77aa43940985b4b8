"""Stage 2b: item embeddings (eq. 5): the last layer's hidden state at the last prompt position.

Each item's prompt holds every modality it has input for (missing ones are left out).  Prompts
are sorted by length and batched with left padding, so the last position of every row is its
last real token, and position ids count real tokens only (embeddings do not depend on the
batch).

Extraction streams: the catalog is cut into shards of ``shard_size`` consecutive items, each
written to disk as soon as it is done (memory does not grow with the catalog), a killed run
resumes from the shards it finished, and with ``devices > 1`` the shards are spread over ranks
launched by Lightning Fabric (DDP) and joined into one output.  Format: :mod:`earec_core.embstore`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import json
import logging
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

from .artifacts import atomic_dir, glob_escape, is_current, manifest_of
from .embstore import EMBEDDINGS_FILE, load_embeddings, publish, read_shard, save_shard  # noqa: F401 (re-exported)
from .backbone import decoder_and_head
from .errors import ArtifactError, EarecError
from .model import AlignedModel, is_folder_source, load_aligned, resolve
from .prompt import build_samples, collate, splice

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 4096
"""Items per shard: the unit of streaming, resumption and work sharing between ranks."""


PRECISIONS = ("auto", "bf16", "fp32")


def resolve_embed_precision(precision: str, accelerator: str = "auto") -> str:
    """``auto``: bf16 autocast on a GPU, fp32 on CPU.  CPU bf16 autocast (torch 2.13, the 2-core
    machines we use) embedded items 7.5x *slower* than fp32: 38.7 s vs 5.1 s for 48 MovieLens
    items with SmolLM2-135M, one thread.  Raises EarecError for an unknown precision."""
    if precision not in PRECISIONS:
        raise EarecError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda") else "fp32"


def _autocast(precision: str):
    if precision == "bf16":
        return torch.autocast("cpu" if not torch.cuda.is_available() else "cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def encode_items(aligned: AlignedModel, builder, catalog, item_ids: list[str], *, batch_size: int = 16,
                 precision: str = "fp32", progress: bool = True, on_batch=None,
                 prefix_cache: bool = True, layers: tuple[int, ...] = (-1,)) -> torch.Tensor:
    """Embeddings ``(len(item_ids), hidden * len(layers))`` float32 for ``item_ids`` (rows in the given order).

    ``layers`` picks decoder outputs by index into HF's ``hidden_states`` (``0``: the token
    embeddings, ``-1``: the last layer, the paper's eq. 5); several are concatenated in the given
    order, each the state at the last prompt position (a wider item vector for the recommender's
    adaptor).  The default ``(-1,)`` is ``last_hidden_state``.

    An item with input for none of the modalities gets the embedding of the bare prompt
    (intro + question), so every item has a valid, finite row.  ``on_batch(n)`` (optional) is
    called after each batch of ``n`` items (for an outer progress bar).

    With ``prefix_cache`` the tokens every prompt starts with (chat-template header, system
    message, intro — up to the first modality slot) run through the decoder once; each batch
    continues from a copy of that KV cache.  Causal attention makes this exact: the prefix's keys
    and values do not depend on what follows.
    """
    from lightning.fabric.utilities.apply_func import move_data_to_device
    from rich.progress import track

    samples, _ = build_samples(builder, catalog, item_ids, with_answer=False, with_related=False)
    by_id = {s.item_id: s for s in samples}
    for iid in item_ids:
        if iid not in by_id:
            by_id[iid] = builder.build_bare(iid)
    prompts = [by_id[iid] for iid in item_ids]
    decoder, _ = decoder_and_head(aligned.model)
    embed_tokens = aligned.model.get_input_embeddings()
    device = embed_tokens.weight.device
    layers = tuple(int(i) for i in layers)
    if not layers:
        raise EarecError("layers: give at least one hidden-state index (-1 is the last layer)")
    width = embed_tokens.weight.shape[1]
    out = torch.full((len(item_ids), width * len(layers)), torch.nan)  # every row is written below
    n_states = getattr(getattr(aligned.model, "config", None), "num_hidden_layers", None)
    if n_states is not None:
        bad = [i for i in layers if not -(n_states + 1) <= i <= n_states]
        if bad:
            raise EarecError(f"layers {bad} out of range: the backbone has hidden states 0..{n_states} "
                             f"(or -{n_states + 1}..-1)")
    want_all = layers != (-1,)
    n_prefix = shared_prefix_length(prompts) if prefix_cache else 0
    cache = None
    if n_prefix:
        head = torch.tensor([prompts[0].input_ids[:n_prefix]], device=device)
        with _autocast(precision):
            first = decoder(inputs_embeds=embed_tokens(head), use_cache=True)
        cache = first.cache if hasattr(first, "cache") else first.past_key_values  # transformers >= 5.2x / older
        cache_arg = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
        prompts = [_drop_prefix(s, n_prefix) for s in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i].input_ids))
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for rows in track(chunks, description="embedding items", disable=not progress, transient=True):
        batch = move_data_to_device(collate([prompts[i] for i in rows], builder.tokenizer.pad_token_id), device)
        extra = {}
        if cache is not None:
            n = len(rows)
            past = copy.deepcopy(cache)
            past.batch_repeat_interleave(n)
            ones = torch.ones(n, n_prefix, dtype=batch.attention_mask.dtype, device=device)
            extra = {cache_arg: past, "use_cache": True}
            batch.attention_mask = torch.cat([ones, batch.attention_mask], dim=1)
            batch.position_ids = batch.position_ids + n_prefix
        with _autocast(precision):
            x = splice(embed_tokens(batch.input_ids), batch, aligned.modalities, aligned.projectors)
            h = decoder(inputs_embeds=x, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                        output_hidden_states=want_all, **extra)
        if want_all:
            last = torch.cat([h.hidden_states[i][:, -1] for i in layers], dim=-1)
        else:
            last = h.last_hidden_state[:, -1]
        out[torch.tensor(rows)] = last.float().cpu()
        if on_batch is not None:
            on_batch(len(rows))
    return out


def prompt_collisions(builder, catalog, item_ids: list[str]) -> dict[str, int]:
    """How many of ``item_ids`` get a stage-2 prompt identical to another item's (same tokens and
    same slot items), so an identical embedding: ``{"items", "distinct_prompts",
    "items_with_shared_prompt"}``.  MovieLens-100k's text modality (year + genres, the title being
    the anchor) gives 647 distinct prompts for 1,349 items; ``--embed-anchor`` separates them."""
    samples, _ = build_samples(builder, catalog, item_ids, with_answer=False, with_related=False)
    counts = Counter((tuple(s.input_ids), tuple(slot.item_id for slot in s.slots)) for s in samples)
    return {"items": len(item_ids), "distinct_prompts": len(counts),
            "items_with_shared_prompt": sum(n for n in counts.values() if n > 1)}


def shared_prefix_length(samples) -> int:
    """Tokens all ``samples`` start with, stopping before the first modality slot and leaving at
    least one token of each prompt (its last position is the embedding)."""
    if not samples:
        return 0
    first = samples[0].input_ids
    n = min(len(s.input_ids) for s in samples) - 1
    n = min([n] + [slot.start for s in samples for slot in s.slots])
    for s in samples[1:]:
        ids = s.input_ids
        while n > 0 and ids[:n] != first[:n]:
            n = next((i for i in range(n) if ids[i] != first[i]), n)
    return max(n, 0)


def _drop_prefix(sample, n: int):
    return replace(sample, input_ids=sample.input_ids[n:], labels=sample.labels[n:],
                   slots=[replace(slot, start=slot.start - n) for slot in sample.slots])


def embed(ws, source: str, *, batch_size: int = 16, precision: str = "auto", force: bool = False,
          shard_size: int = DEFAULT_SHARD_SIZE, devices: int = 1, accelerator: str = "auto",
          strategy: str = "auto", anchor: bool | None = None, layers: tuple[int, ...] | None = None) -> Path:
    """Embed every catalog item with ``source`` (see :func:`earec_core.model.resolve`) into
    ``RUN/embeddings/SOURCE``; skipped when its manifest matches.

    ``anchor`` (default: the run's ``embed_anchor`` setting) puts each item's anchor into its
    stage-2 prompt (``Title: …``, see :class:`~earec_core.prompt.PromptBuilder`); the output then
    goes to ``RUN/embeddings/SOURCE@anchor``.  Stage 1 never sees the anchor in a prompt.
    ``layers`` (default: the run's ``embed_layers``, ``[-1]``) concatenates the last-position
    states of those hidden-state indices (see :func:`encode_items`); output ``SOURCE@L-1,-8``.

    Shards of ``shard_size`` items are written to ``RUN/embeddings/.SOURCE-shards-KEY/`` as they
    finish (KEY: a hash of the manifest, so a changed input never reuses them) and moved into the
    artifact at the end; a re-run after a kill recomputes only the missing shards.  With
    ``devices > 1`` (or under ``torchrun``) Lightning Fabric launches one process per device and
    rank ``r`` computes shards ``r, r + world, …``; rank 0 publishes once every rank is done.

    Raises:
        ArtifactError: NaN/Inf embeddings (try ``--precision fp32``).
        EarecError: ``shard_size`` or ``batch_size`` < 1.
    """
    if shard_size < 1 or batch_size < 1:
        raise EarecError(f"shard size and batch size must be >= 1, got {shard_size} and {batch_size}")
    precision = resolve_embed_precision(precision, accelerator)  # the manifest records what ran
    catalog = ws.dataset.catalog  # loads the dataset (and writes its manifest) first
    adapter, names = resolve(ws, source)
    anchor = ws["embed_anchor"] if anchor is None else bool(anchor)
    layers = tuple(int(i) for i in (ws["embed_layers"] if layers is None else layers))
    label = embeddings_label(source, anchor, layers)
    out = ws.embeddings_dir(label)
    inputs = {"dataset": ws.dataset_dir}
    if adapter is not None:
        inputs["adapter"] = adapter
    for m in names:
        external = adapter is not None and not ws.owns(adapter)
        if not external and (ws.adapter_dir(m) / "manifest.json").is_file():
            inputs[f"aligned:{m}"] = ws.adapter_dir(m)
    # shard_size only changes the file layout, not a number in it: it is not part of the manifest
    config = {"source": source, "modalities": names, "precision": precision, "llm": str(ws.llm_path),
              "max_length": ws["max_length"]}
    if anchor:  # absent when off, so embeddings made before the option existed stay current
        config["anchor_in_prompt"] = True
    if layers != (-1,):
        config["layers"] = list(layers)
    manifest = manifest_of(out, "embed", config, inputs)
    if not force and is_current(out, manifest):
        return out
    fabric = _launch(devices, accelerator, strategy)
    key = hashlib.sha256(json.dumps([manifest, shard_size], sort_keys=True).encode()).hexdigest()[:16]
    work = out.parent / f".{out.name}-shards-{key}"
    ids = catalog.ids
    chunks = [ids[i : i + shard_size] for i in range(0, len(ids), shard_size)]
    paths = [work / f"shard-{i:05d}.safetensors" for i in range(len(chunks))]
    if force and fabric.global_rank == 0:
        shutil.rmtree(work, ignore_errors=True)
    fabric.barrier()
    todo = [i for i in range(len(chunks)) if i % fabric.world_size == fabric.global_rank and not _complete(paths[i], chunks[i])]
    if todo:
        _encode_shards(ws, source, catalog, [(chunks[i], paths[i]) for i in todo], batch_size=batch_size,
                       precision=precision, device=fabric.device, rank=fabric.global_rank, anchor=anchor,
                       layers=layers)
    fabric.barrier()
    if fabric.global_rank == 0:
        modalities = {m: ws.modality(m) for m in names}
        collisions = prompt_collisions(ws.builder(modalities, anchor_in_prompt=anchor), catalog, ids)
        if collisions["items_with_shared_prompt"] > 0.05 * len(ids):
            log.warning("%d of %d items share their stage-2 prompt with another item (%d distinct prompts): those "
                        "items get identical embeddings; --embed-anchor puts each item's anchor into its prompt",
                        collisions["items_with_shared_prompt"], len(ids), collisions["distinct_prompts"])
        info = {"source": source, "modalities": names, "shape": [len(ids), read_shard(paths[0])[1].shape[1]],
                "shard_size": shard_size, "world_size": fabric.world_size, "prompts": collisions}
        with atomic_dir(out, manifest) as tmp:
            publish(tmp, paths, info)
        for stale in out.parent.glob(f".{glob_escape(out.name)}-shards-*"):
            shutil.rmtree(stale, ignore_errors=True)  # this one (now empty) and other configs' leftovers
    fabric.barrier()
    return out


def _launch(devices: int, accelerator: str, strategy: str):
    """A launched Lightning Fabric: one process per device (DDP) or just this one."""
    from lightning.fabric import Fabric

    try:
        fabric = Fabric(accelerator=accelerator, devices=devices, strategy=strategy if devices != 1 else "auto")
    except (ValueError, RuntimeError, TypeError) as exc:
        raise EarecError(f"cannot use {devices} device(s) with accelerator={accelerator!r}, "
                         f"strategy={strategy!r}: {exc}") from None
    fabric.launch()
    return fabric


def _complete(path: Path, item_ids: list[str]) -> bool:
    """True if ``path`` is a finished shard for exactly ``item_ids`` (else it is recomputed)."""
    if not path.is_file():
        return False
    try:
        return read_shard(path)[0] == item_ids
    except ArtifactError:
        return False


def embeddings_label(source: str, anchor: bool = False, layers: tuple[int, ...] = (-1,)) -> str:
    """The folder name under ``RUN/embeddings`` of ``source``'s item embeddings (``@anchor``: with
    the anchor in the stage-2 prompt; ``@L-1,-8``: those hidden states concatenated)."""
    if is_folder_source(source):  # an aligned-model folder elsewhere: its name + a path hash
        digest = hashlib.sha256(str(Path(source).expanduser().resolve()).encode()).hexdigest()[:8]
        source = f"{Path(source).expanduser().resolve().name}@ext-{digest}"
    label = source.replace(":", "-").replace(",", "+") + ("@anchor" if anchor else "")
    return label + ("" if tuple(layers) == (-1,) else "@L" + ",".join(str(i) for i in layers))


def _encode_shards(ws, source, catalog, jobs, *, batch_size, precision, device, rank, anchor=False,
                   layers=(-1,)) -> None:
    """Encode and save each ``(item_ids, path)`` job; the model is loaded once."""
    from rich.progress import Progress

    aligned = load_aligned(ws, source, seed=ws["seed"])
    aligned.model.to(device)
    for projector in aligned.projectors.values():
        projector.to(device)
    builder = ws.builder(aligned.modalities, anchor_in_prompt=anchor)
    total = sum(len(chunk) for chunk, _ in jobs)
    with Progress(disable=not ws.progress or rank != 0, transient=True) as bar:
        task = bar.add_task(f"embedding items ({source})", total=total)
        for chunk, path in jobs:
            emb = encode_items(aligned, builder, catalog, chunk, batch_size=batch_size, precision=precision,
                               progress=False, on_batch=lambda n: bar.advance(task, n), layers=layers)
            if not torch.isfinite(emb).all():
                raise ArtifactError(f"embeddings from {source!r} contain NaN/Inf; try --precision fp32")
            save_shard(path, emb, chunk, source)
