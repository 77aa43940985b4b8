"""The RecBole/UniSRec benchmark layout (Hou et al., KDD 2022; the "downstream" Amazon sets):
import it as an EARec :class:`~earec_core.data.Dataset`, and export item embeddings the way
UniSRec reads its pre-computed text features.

Layout of a dataset folder ``X/``::

    X.train.inter    user_id:token  item_id_list:token_seq  item_id:token   (one row per training target)
    X.valid.inter    same columns; history = the user's training items, target = validation item
    X.test.inter     same columns; history = training + validation items, target = test item
    X.item2index     RAW_ITEM_ID<TAB>INDEX per line (0-based; the inter files name items by INDEX)
    X.text           optional: item_id:token<TAB>text:token_seq (item by INDEX or raw id) -> anchors
    X.feat1CLS       headerless float32 rows, row i = item with INDEX i (np.ndarray.tofile)

Splits are taken **as given** (no k-core, no re-splitting): histories keep UniSRec's 50-item
truncation, the training sequence of a user is rebuilt from the ``train.inter`` rows (falling
back to the validation history when they do not chain), and users lacking a validation or a test
row are left out (counted in ``stats``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..artifacts import write_bytes
from ..embstore import read_embeddings
from ..errors import ArtifactError, DataError
from ..recommender import SequenceSplits
from .atomic import read_atomic
from .catalog import Catalog, Item
from .dataset import Dataset
from .sequences import related_items

SPLITS = ("train", "valid", "test")


def is_unisrec_dir(directory: str | Path, name: str | None = None) -> bool:
    """True if ``directory`` holds ``NAME.train.inter``, ``NAME.valid.inter``, ``NAME.test.inter`` and
    ``NAME.item2index`` (``NAME`` defaults to the folder name)."""
    d = Path(directory)
    name = name or d.name
    return all((d / f"{name}.{s}.inter").is_file() for s in SPLITS) and (d / f"{name}.item2index").is_file()


def read_item2index(path: str | Path) -> dict[str, int]:
    """``{raw item id: index}`` from an ``item2index`` file.

    Raises DataError: a line that is not ``ID<TAB>INT``, an id or index given twice, or an empty file.
    """
    path = Path(path)
    out: dict[str, int] = {}
    seen: dict[int, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        raw, sep, idx = line.rstrip("\n").rpartition("\t")
        if not sep:
            raw, _, idx = line.strip().rpartition(" ")
        raw = raw.strip()
        try:
            index = int(idx)
        except ValueError:
            raise DataError(f"{path}:{n}: expected ITEM_ID<TAB>INDEX, got {line!r}") from None
        if not raw or index < 0:
            raise DataError(f"{path}:{n}: expected ITEM_ID<TAB>INDEX (index >= 0), got {line!r}")
        if raw in out or index in seen:
            raise DataError(f"{path}:{n}: item {raw!r} or index {index} given twice")
        out[raw], seen[index] = index, raw
    if not out:
        raise DataError(f"{path}: no items")
    return out


def _read_split(path: Path) -> list[tuple[str, list[str], str]]:
    table = read_atomic(path)
    u, h, t = table.column("user_id"), table.column("item_id_list"), table.column("item_id")
    return [(row[u].strip(), row[h].split(), row[t].strip()) for row in table.rows]


def _train_sequence(rows: list[tuple[list[str], str]]) -> list[str] | None:
    """The training sequence behind a user's ``train.inter`` rows (UniSRec writes them last
    target first), or ``None`` when the rows do not chain into one sequence."""
    if not rows:
        return None
    rows = rows[::-1]  # first target first
    seq = list(rows[0][0]) + [rows[0][1]]
    for hist, target in rows[1:]:
        if not hist or hist != seq[-len(hist):]:
            return None
        seq.append(target)
    return seq


def load_unisrec(directory: str | Path, name: str | None = None, *, n_related: int = 3, **_ignored) -> Dataset:
    """Import a UniSRec-layout dataset (see the module docstring) with its splits as given.

    Catalog order is the ``item2index`` order, so EARec item index = UniSRec index + 1.  Anchors
    come from ``NAME.text`` when present (else items have no anchor: embedded and recommended,
    never alignment samples).  ``k``/``anchor_field`` options of :func:`load_dataset` are ignored.

    Raises DataError: missing/malformed files, an item index not in ``item2index``, no usable user.
    """
    if _ignored.get("new_items") or _ignored.get("train_users", 1.0) < 1:
        raise DataError(f"{directory}: --new-items/--train-users are not supported for the UniSRec layout "
                        "(its splits are given)")

    directory = Path(directory)
    name = name or directory.name
    if not is_unisrec_dir(directory, name):
        raise DataError(f"{directory} is not a UniSRec dataset: expected {name}.train.inter, {name}.valid.inter, "
                        f"{name}.test.inter and {name}.item2index")
    item2index = read_item2index(directory / f"{name}.item2index")
    by_index = {str(i): raw for raw, i in item2index.items()}
    anchors: dict[str, str] = {}
    text_path = directory / f"{name}.text"
    if text_path.is_file():
        table = read_atomic(text_path)
        ic, tc = table.column("item_id"), table.column("text")
        for row in table.rows:
            key = row[ic].strip()
            raw = by_index.get(key, key if key in item2index else None)
            if raw is not None and raw not in anchors:
                anchors[raw] = " ".join(row[tc].split())
    ordered = sorted(item2index, key=item2index.get)
    catalog = Catalog([Item(id=raw, anchor=anchors.get(raw, "")) for raw in ordered])

    def idx(token: str, where: Path) -> int:
        raw = by_index.get(token)
        if raw is None:
            raise DataError(f"{where}: item {token!r} is not an index of {name}.item2index")
        return catalog.index(raw)

    splits_raw = {s: _read_split(directory / f"{name}.{s}.inter") for s in SPLITS}
    for s, rows in splits_raw.items():  # every row is checked, also those of users left out below
        where = directory / f"{name}.{s}.inter"
        for user, hist, target in rows:
            for token in (*hist, target):
                idx(token, where)
        if s != "train":
            users_of = [u for u, _, _ in rows]
            if len(set(users_of)) != len(users_of):
                twice = next(u for u in users_of if users_of.count(u) > 1)
                raise DataError(f"{where}: user {twice!r} has more than one row (one {s} target per user)")
    train_rows: dict[str, list] = defaultdict(list)
    for user, hist, target in splits_raw["train"]:
        train_rows[user].append((hist, target))
    valid = {u: (h, t) for u, h, t in splits_raw["valid"]}
    test = {u: (h, t) for u, h, t in splits_raw["test"]}
    users = [u for u in dict.fromkeys(u for u, _, _ in splits_raw["test"]) if u in valid]
    if not users:
        raise DataError(f"{directory}: no user has both a validation and a test row")
    vpath, tpath, trpath = (directory / f"{name}.{s}.inter" for s in ("valid", "test", "train"))
    train, valid_ex, test_ex, rebuilt = [], [], [], 0
    for u in users:
        seq = _train_sequence(train_rows.get(u, []))
        vh, vt = valid[u]
        if seq is None or (vh and seq[-len(vh):] != vh):
            seq = vh
        else:
            rebuilt += 1
        train.append([idx(t, trpath) for t in seq])
        valid_ex.append(([idx(t, vpath) for t in vh], idx(vt, vpath)))
        th, tt = test[u]
        test_ex.append(([idx(t, tpath) for t in th], idx(tt, tpath)))
    splits = SequenceSplits(n_items=len(catalog), train=train, valid=valid_ex, test=test_ex)
    for i, rel in related_items(splits.train, n_related).items():
        catalog.items[i - 1].related = [catalog.items[j - 1].id for j in rel]
    stats = {
        "interactions": sum(len(s) for s in train) + 2 * len(users),
        "users": len(users),
        "users_without_valid_or_test": len(set(valid) | set(test)) - len(users),
        "users_train_rebuilt_from_train_inter": rebuilt,
        "items": len(catalog),
        "items_without_anchor": sum(1 for it in catalog if not it.anchor),
        "train_rows": len(splits_raw["train"]),
    }
    return Dataset(name=name, catalog=catalog, users=users, splits=splits, stats=stats, directory=directory)


def export_feat(embeddings, item_ids: list[str], item2index: dict[str, int] | str | Path, out: str | Path,
                *, missing: str = "error") -> Path:
    """Write item embeddings as UniSRec's ``NAME.featXXX`` file: headerless float32, row ``i`` =
    the item with index ``i`` of ``item2index`` (``np.ndarray.tofile``; UniSRec reads it with
    ``np.fromfile(path, np.float32).reshape(-1, plm_size)``).  Written atomically.

    Args:
        embeddings: ``(len(item_ids), d)`` tensor or array; rows match ``item_ids``.
        item2index: the mapping, or the path of an ``item2index`` file.
        missing: ``error`` (default) or ``zeros`` for indices whose item has no embedding.
    Raises:
        ArtifactError: an indexed item without an embedding (``missing="error"``), indices that
            are not ``0..n-1``, a shape mismatch, or non-finite values.
    """
    if not isinstance(item2index, dict):
        item2index = read_item2index(item2index)
    emb = np.asarray(embeddings.detach().cpu().float().numpy() if hasattr(embeddings, "detach") else embeddings,
                     dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(item_ids):
        raise ArtifactError(f"embeddings of shape {emb.shape} do not match {len(item_ids)} item ids")
    if not np.isfinite(emb).all():
        raise ArtifactError("embeddings contain NaN/Inf")
    n = len(item2index)
    if sorted(item2index.values()) != list(range(n)):
        raise ArtifactError("item2index indices must be exactly 0..n-1 (UniSRec reads row = index)")
    row = {iid: i for i, iid in enumerate(item_ids)}
    lacking = [raw for raw in item2index if raw not in row]
    if lacking and missing != "zeros":
        raise ArtifactError(f"{len(lacking)} items of item2index have no embedding (e.g. {lacking[:3]}); "
                            "pass missing='zeros' to write zero rows for them")
    table = np.zeros((n, emb.shape[1]), dtype=np.float32)
    for raw, i in item2index.items():
        if raw in row:
            table[i] = emb[row[raw]]
    out = Path(out)
    write_bytes(out, table.tobytes())  # raw float32, C order: what np.fromfile(...).reshape(-1, d) reads
    return out


def export_embeddings_dir(embeddings_dir: str | Path, item2index: dict[str, int] | str | Path, out: str | Path,
                          *, missing: str = "error") -> Path:
    """:func:`export_feat` for an EARec ``RUN/embeddings/NAME`` folder."""

    ids, emb = read_embeddings(Path(embeddings_dir))
    return export_feat(emb, ids, item2index, out, missing=missing)
