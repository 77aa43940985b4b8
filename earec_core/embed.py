"""Stage 2b: item embeddings (eq. 5): the last layer's hidden state at the last prompt position.

Each item's prompt holds every modality it has input for (missing ones are left out).  Prompts
are sorted by length and batched with left padding, so the last position of every row is its
last real token, and position ids count real tokens only (embeddings do not depend on the
batch).  Output: ``item_embeddings.safetensors`` with tensor ``embeddings`` ``(n_items, hidden)``
float32, rows in catalog index order, and the item ids in the file's metadata.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .align import build_samples
from .artifacts import atomic_dir, is_current, manifest_of, write_json
from .errors import ArtifactError
from .model import AlignedModel, load_aligned, resolve
from .prompt import collate, splice

EMBEDDINGS_FILE = "item_embeddings.safetensors"


def _autocast(precision: str):
    if precision == "bf16":
        return torch.autocast("cpu" if not torch.cuda.is_available() else "cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def encode_items(aligned: AlignedModel, builder, catalog, item_ids: list[str], *, batch_size: int = 16,
                 precision: str = "bf16", progress: bool = True) -> torch.Tensor:
    """Embeddings ``(len(item_ids), hidden)`` float32 for ``item_ids`` (rows in the given order).

    An item with input for none of the modalities gets the embedding of the bare prompt
    (intro + question), so every item has a valid, finite row.
    """
    from .backbone import decoder_and_head

    samples, _ = build_samples(builder, catalog, item_ids, with_answer=False, with_related=False)
    by_id = {s.item_id: s for s in samples}
    bare = [iid for iid in item_ids if iid not in by_id]
    for iid in bare:
        by_id[iid] = builder.build_bare(iid)
    order = sorted(range(len(item_ids)), key=lambda i: len(by_id[item_ids[i]].input_ids))
    decoder, _ = decoder_and_head(aligned.model)
    embed_tokens = aligned.model.get_input_embeddings()
    hidden = embed_tokens.weight.shape[1]
    out = torch.empty(len(item_ids), hidden, dtype=torch.float32)
    pad_id = builder.tokenizer.pad_token_id
    from rich.progress import track

    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for rows in track(chunks, description="embedding items", disable=not progress, transient=True):
        batch = collate([by_id[item_ids[i]] for i in rows], pad_id)
        with _autocast(precision):
            x = splice(embed_tokens(batch.input_ids), batch, aligned.modalities, aligned.projectors)
            h = decoder(inputs_embeds=x, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
        out[torch.tensor(rows)] = h.last_hidden_state[:, -1].float()
    return out


def embed(ws, source: str, *, batch_size: int = 16, precision: str = "bf16", force: bool = False) -> Path:
    """Embed every catalog item with ``source`` (see :func:`earec_core.model.resolve`) into
    ``RUN/embeddings/SOURCE``; skipped when its manifest matches."""
    catalog = ws.dataset.catalog  # loads the dataset (and writes its manifest) first
    adapter, names = resolve(ws, source)
    label = source.replace(":", "-").replace(",", "+")
    out = ws.embeddings_dir(label)
    inputs = {"dataset": ws.dir / "dataset"}
    if adapter is not None:
        inputs["adapter"] = adapter
    for m in names:
        if (ws.adapter_dir(m) / "manifest.json").is_file():
            inputs[f"aligned:{m}"] = ws.adapter_dir(m)
    manifest = manifest_of(out, "embed", {"source": source, "modalities": names, "precision": precision,
                                          "llm": str(ws.llm_path), "max_length": ws["max_length"]}, inputs)
    if not force and is_current(out, manifest):
        return out
    aligned = load_aligned(ws, source, seed=ws["seed"])
    builder = ws.builder(aligned.modalities)
    emb = encode_items(aligned, builder, catalog, catalog.ids, batch_size=batch_size, precision=precision,
                       progress=ws.progress)
    if not torch.isfinite(emb).all():
        raise ArtifactError(f"embeddings from {source!r} contain NaN/Inf; try --precision fp32")
    with atomic_dir(out, manifest) as tmp:
        save_file({"embeddings": emb.contiguous()}, str(tmp / EMBEDDINGS_FILE),
                  metadata={"item_ids": json.dumps(catalog.ids), "source": source})
        write_json(tmp / "info.json", {"source": source, "modalities": names, "shape": list(emb.shape)})
    return out


def load_embeddings(directory: Path, expected_ids: list[str] | None = None) -> torch.Tensor:
    """``(n_items, hidden)`` embeddings from ``directory``; rows re-ordered to ``expected_ids``.

    Raises ArtifactError if the file is missing, non-finite, or lacks an expected item.
    """
    path = Path(directory) / EMBEDDINGS_FILE
    if not path.is_file():
        raise ArtifactError(f"no item embeddings at {path}; run `earec embed` first")
    with safe_open(str(path), framework="pt") as fh:
        ids = json.loads(fh.metadata()["item_ids"])
        emb = fh.get_tensor("embeddings")
    if emb.shape[0] != len(ids) or not torch.isfinite(emb).all():
        raise ArtifactError(f"{path}: {emb.shape[0]} rows for {len(ids)} ids, or NaN/Inf values")
    if expected_ids is None or ids == expected_ids:
        return emb
    row = {iid: i for i, iid in enumerate(ids)}
    missing = [i for i in expected_ids if i not in row]
    if missing:
        raise ArtifactError(f"{path}: no embedding for {len(missing)} items (e.g. {missing[:3]}); re-run `earec embed`")
    return emb[torch.tensor([row[i] for i in expected_ids])]
