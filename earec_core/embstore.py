"""On-disk format of item embeddings: one safetensors file, or shards with an index.

A folder ``RUN/embeddings/NAME`` holds either

* ``item_embeddings.safetensors``: tensor ``embeddings`` ``(n_items, hidden)`` float32 and the
  item ids (JSON list) in the file's metadata ``item_ids``; or
* ``item_embeddings-00001-of-0000N.safetensors`` … (each in the layout above, rows of consecutive
  catalog slices) plus ``item_embeddings.safetensors.index.json`` listing the files in order, the
  way Hugging Face shards big checkpoints.  Shards let extraction stream to disk (memory does not
  grow with the catalog), resume after a kill, and be written by several ranks at once.

Readers: :func:`iter_embeddings` (one shard at a time), :func:`read_embeddings` and
:func:`load_embeddings` (the whole table).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .artifacts import read_json, write_json
from .errors import ArtifactError

EMBEDDINGS_FILE = "item_embeddings.safetensors"
INDEX_FILE = EMBEDDINGS_FILE + ".index.json"


def shard_name(index: int, total: int) -> str:
    """``item_embeddings-00002-of-00008.safetensors`` for ``index`` 1 (0-based) of 8."""
    return f"item_embeddings-{index + 1:05d}-of-{total:05d}.safetensors"


def _save_atomic(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically (temp file + ``os.replace``), tensors as contiguous
    float32, so a file at ``path`` is always complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.float().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_shard(path: Path, emb: torch.Tensor, item_ids: list[str], source: str) -> None:
    """Write ``emb`` ``(len(item_ids), hidden)`` atomically, so a file at ``path`` is always complete."""
    if emb.shape[0] != len(item_ids):
        raise ValueError(f"{emb.shape[0]} rows for {len(item_ids)} item ids")
    _save_atomic(path, {"embeddings": emb}, {"item_ids": json.dumps(item_ids), "source": source})


def _read_item_tensor(path: Path, tensor: str, *, unreadable, bad_shape, non_finite, bad_ids: str | None = None,
                      ndim: int | None = None, with_info: bool = False) -> tuple[list[str], torch.Tensor, dict | None]:
    """``(item_ids, tensor, info)`` of one safetensors file holding ``tensor`` and the item ids
    (JSON list) in its metadata ``item_ids`` (and, ``with_info``, a JSON ``info``): the one reader
    of the embedding files and :class:`ItemFeatures`.  Each check raises ArtifactError with its
    caller's message: ``unreadable(exc)``; ``bad_ids`` (if given) when ``item_ids`` is not a list of
    strings; ``bad_shape(shape, n_ids)`` when the tensor has not one row per id (or not ``ndim``
    dimensions); ``non_finite(shape, n_ids)`` when it holds NaN/Inf."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            ids = json.loads(meta["item_ids"])
            info = json.loads(meta.get("info", "{}")) if with_info else None
            values = fh.get_tensor(tensor)
    except Exception as exc:  # OSError, SafetensorError, missing metadata or tensor, bad JSON
        raise ArtifactError(unreadable(exc)) from None
    if bad_ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise ArtifactError(bad_ids)
    if (ndim is not None and values.dim() != ndim) or values.shape[0] != len(ids):
        raise ArtifactError(bad_shape(tuple(values.shape), len(ids)))
    if not torch.isfinite(values).all():
        raise ArtifactError(non_finite(tuple(values.shape), len(ids)))
    return ids, values, info


def read_shard(path: Path) -> tuple[list[str], torch.Tensor]:
    """``(item_ids, embeddings)`` of one file.  Raises ArtifactError if it is unreadable,
    its rows do not match its ids, or it holds NaN/Inf."""
    def mismatch(shape, n):
        return f"{path}: {shape} tensor for {n} ids, or NaN/Inf values"

    ids, emb, _ = _read_item_tensor(
        path, "embeddings", ndim=2, bad_shape=mismatch, non_finite=mismatch,
        unreadable=lambda exc: f"{path}: not a readable item-embedding file ({exc}); re-run `earec embed`")
    return ids, emb


def files(directory: Path) -> list[Path]:
    """The embedding files of ``directory`` in row order.  Raises ArtifactError if there are none."""
    directory = Path(directory)
    if (directory / INDEX_FILE).is_file():
        return [directory / name for name in read_json(directory / INDEX_FILE)["files"]]
    if (directory / EMBEDDINGS_FILE).is_file():
        return [directory / EMBEDDINGS_FILE]
    raise ArtifactError(f"no item embeddings at {directory}; run `earec embed` first")


def iter_embeddings(directory: Path) -> Iterator[tuple[list[str], torch.Tensor]]:
    """``(item_ids, embeddings)`` one file at a time (memory: one shard)."""
    for path in files(directory):
        yield read_shard(path)


def read_embeddings(directory: Path) -> tuple[list[str], torch.Tensor]:
    """All ``(item_ids, embeddings (n_items, hidden))`` of ``directory``, in stored order."""
    ids: list[str] = []
    parts = []
    for shard_ids, emb in iter_embeddings(directory):
        ids += shard_ids
        parts.append(emb)
    if len({p.shape[1] for p in parts}) > 1:
        raise ArtifactError(f"{directory}: shards of different widths {sorted({p.shape[1] for p in parts})}")
    return ids, torch.cat(parts)


def load_embeddings(directory: Path, expected_ids: list[str] | None = None) -> torch.Tensor:
    """``(n_items, hidden)`` float32 embeddings from ``directory``; rows re-ordered to ``expected_ids``.

    Raises ArtifactError if nothing is there, a file is unreadable or non-finite, or an expected
    item has no row.
    """
    ids, emb = read_embeddings(directory)
    if expected_ids is None or ids == expected_ids:
        return emb
    row = {iid: i for i, iid in enumerate(ids)}
    missing = [i for i in expected_ids if i not in row]
    if missing:
        raise ArtifactError(f"{directory}: no embedding for {len(missing)} items (e.g. {missing[:3]}); "
                            "re-run `earec embed`")
    return emb[torch.tensor([row[i] for i in expected_ids])]


def publish(tmp: Path, shards: list[Path], info: dict) -> None:
    """Move finished ``shards`` (in row order) into the artifact folder ``tmp`` under their final
    names (no copy, no load): one file becomes ``item_embeddings.safetensors``; several get
    ``shard_name`` plus the index."""
    if len(shards) == 1:
        os.replace(shards[0], tmp / EMBEDDINGS_FILE)
        names = [EMBEDDINGS_FILE]
    else:
        names = [shard_name(i, len(shards)) for i in range(len(shards))]
        for src, name in zip(shards, names):
            os.replace(src, tmp / name)
        write_json(tmp / INDEX_FILE, {"files": names, **info})
    write_json(tmp / "info.json", {**info, "files": names})


class ItemFeatures:
    """An item-keyed feature table ``(n_items, *feature_shape)`` float32: the cache format of
    encoders that fit or precompute per-item features (behaviour's ID item table, image or audio
    features; any third-party encoder).  One safetensors file: the tensor plus the item ids (JSON
    list) in the metadata ``item_ids``, like the embedding files above.

    A plugin writes its cache in :meth:`Modality.prepare` with
    ``ItemFeatures(ids, features).save(ctx.artifact_dir(name) / "features.safetensors")`` and
    restores it in :meth:`Modality.load` with :meth:`load`; :meth:`rows` looks items up.
    """

    def __init__(self, item_ids: list[str], features: torch.Tensor, info: dict | None = None):
        if features.shape[0] != len(item_ids):
            raise ValueError(f"{features.shape[0]} feature rows for {len(item_ids)} item ids")
        self.item_ids = list(item_ids)
        self.features = features
        self.info = dict(info or {})  # e.g. the encoder that made the features, stored as JSON metadata
        self._row = {iid: i for i, iid in enumerate(self.item_ids)}

    def save(self, path: Path, *, tensor: str = "features") -> None:
        """Write atomically (a temp file renamed into place), float32."""
        _save_atomic(path, {tensor: self.features},
                     {"item_ids": json.dumps(self.item_ids), "info": json.dumps(self.info)})

    @classmethod
    def load(cls, path: Path, *, tensor: str = "features", what: str = "item feature table", fix: str = "",
             ndim: int | None = None) -> ItemFeatures:
        """Read a table written by :meth:`save`.

        Raises:
            ArtifactError: naming ``path`` and ``what`` (with ``fix``, what to do): the file is
                missing or unreadable, lacks ``item_ids``, has not one row per id (or not
                ``ndim`` dimensions), or holds NaN/Inf.
        """
        path = Path(path)
        hint = f"; {fix}" if fix else ""
        if not path.is_file():
            raise ArtifactError(f"{what} missing: {path}{hint}")
        ids, features, info = _read_item_tensor(
            path, tensor, ndim=ndim, with_info=True,
            unreadable=lambda exc: (f"{path}: not a {what} (safetensors with tensor {tensor!r} and 'item_ids' "
                                    f"metadata): {type(exc).__name__}: {exc}{hint}"),
            bad_ids=f"{path}: 'item_ids' metadata is not a JSON list of ids{hint}",
            bad_shape=lambda shape, n: f"{path}: {what} shape {shape} does not match {n} item ids{hint}",
            non_finite=lambda shape, n: f"{path}: {what} contains NaN/Inf{hint}")
        return cls(ids, features, info if isinstance(info, dict) else {})

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._row

    def rows(self, item_ids: list[str]) -> torch.Tensor:
        """Features ``(len(item_ids), *feature_shape)`` of those items, in that order.  Raises
        ArtifactError naming the first id the table lacks."""
        missing = next((i for i in item_ids if i not in self._row), None)
        if missing is not None:
            raise ArtifactError(f"item {missing!r} is not in this feature table ({len(self.item_ids)} items); "
                                "its encoder state belongs to another catalog: re-run prepare")
        return self.features[[self._row[i] for i in item_ids]]
