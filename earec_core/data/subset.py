"""Source datasets for transfer: one or several RecBole atomic datasets, mixed, with the items
of a target removed.

Stage 1 of the paper runs on several source domains mixed; stage 2 on a target it never saw.
:func:`write_source` writes that source as one RecBole atomic dataset:

* every item whose anchor (title) also names an item of the target is left out, with its
  interactions (anchors compared case- and whitespace-insensitively), so nothing of the target
  is memorised: MovieLens-1M minus MovieLens-100k keeps 2,257 of 3,883 listed movies;
* with several sources, user and item ids are prefixed ``NAME:`` (two datasets may both have an
  item ``1``), the anchors go to one ``title`` column, and the other item fields are the union
  of the sources' (empty where a source lacks one);
* ``subset.json`` records every part (folder, counts kept and removed), which stage 1 copies
  into the aligned model's ``sources``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..artifacts import atomic_dir, write_json
from ..errors import DataError
from .atomic import AtomicTable, read_atomic

SUBSET_FILE = "subset.json"
PREFIX_SEP = ":"


def anchor_key(anchor: str) -> str:
    """The form two anchors are compared in: case-folded, whitespace collapsed."""
    return " ".join(anchor.casefold().split())


def write_source(parts: list[tuple[Path, str]], out: Path, *, target_anchors: Iterable[str] = (),
                 target: str | None = None, item_tables: list[AtomicTable] | None = None) -> dict:
    """Write ``out/OUT.{inter,item}`` from ``parts`` (``(folder, anchor field)`` of RecBole atomic
    datasets ``folder/NAME.{inter,item}``) without the items whose anchor is in ``target_anchors``.
    ``item_tables``: the parts' ``NAME.item`` files, in order, if the caller has read them already.

    One part is copied with its own columns and ids; several are mixed as the module docstring
    says.  The folder appears atomically.  Returns what ``subset.json`` holds: per part its
    folder and ``items`` / ``items_removed`` / ``interactions`` / ``interactions_removed``.

    Raises:
        DataError: a part's files are missing or malformed (file and line named), two parts share a
            name, or a part has no interaction left.
    """
    out = Path(out)
    names = [Path(p).name for p, _ in parts]
    if len(set(names)) != len(names):
        raise DataError(f"source datasets must have distinct folder names, got {names}")
    taken = {anchor_key(a) for a in target_anchors if a.strip()}
    mixed = len(parts) > 1
    fields: list[tuple[str, str]] = [("item_id", "token")] + ([("title", "token_seq")] if mixed else [])
    items_out: list[dict] = []
    inter_out: list[tuple[str, list[str]]] = []
    inter_header = [("user_id", "token"), ("item_id", "token"), ("timestamp", "float")]
    records = []
    for index, (folder, anchor_field) in enumerate(parts):
        folder = Path(folder)
        name = folder.name
        items_tab = item_tables[index] if item_tables is not None else read_atomic(folder / f"{name}.item")
        inter = read_atomic(folder / f"{name}.inter")
        id_col, a_col, i_col = items_tab.column("item_id"), items_tab.column(anchor_field), inter.column("item_id")
        u_col = inter.column("user_id")
        prefix = f"{name}{PREFIX_SEP}" if mixed else ""
        drop = {row[id_col].strip() for row in items_tab.rows if anchor_key(row[a_col]) in taken}
        for f, t in zip(items_tab.fields, items_tab.types):
            if f != "item_id" and (not mixed or f != anchor_field) and f not in dict(fields):
                fields.append((f, t))
        n_items = 0
        for row in items_tab.rows:
            if row[id_col].strip() in drop:
                continue
            rec = dict(zip(items_tab.fields, row))
            rec["item_id"] = prefix + row[id_col].strip()
            if mixed:
                rec["title"] = row[a_col]
            items_out.append(rec)
            n_items += 1
        n_inter = 0
        t_col = inter.fields.index("timestamp") if "timestamp" in inter.fields else None
        if not mixed:
            inter_header = list(zip(inter.fields, inter.types))
        for order, row in enumerate(inter.rows):
            if row[i_col].strip() in drop:
                continue
            if mixed:  # the columns every source has; file order stands in for a missing timestamp
                row = [prefix + row[u_col].strip(), prefix + row[i_col].strip(),
                       row[t_col] if t_col is not None else str(order)]
            inter_out.append((name, row))
            n_inter += 1
        if not n_inter:
            raise DataError(f"{inter.path}: every interaction is on an item of the target; nothing left")
        records.append({"name": name, "source": str(folder), "items": n_items,
                        "items_removed": len(items_tab.rows) - n_items, "interactions": n_inter,
                        "interactions_removed": len(inter.rows) - n_inter})
    stats = {"parts": records, "target": target, "target_anchors": len(taken), "mixed": mixed,
             "items": len(items_out), "interactions": len(inter_out)}
    with atomic_dir(out) as tmp:
        item_lines = ["\t".join(f"{f}:{t}" for f, t in fields)]
        item_lines += ["\t".join(rec.get(f, "") for f, _ in fields) for rec in items_out]
        (tmp / f"{out.name}.item").write_text("\n".join(item_lines) + "\n", encoding="utf-8")
        inter_lines = ["\t".join(f"{f}:{t}" for f, t in inter_header)] + ["\t".join(r) for _, r in inter_out]
        (tmp / f"{out.name}.inter").write_text("\n".join(inter_lines) + "\n", encoding="utf-8")
        write_json(tmp / SUBSET_FILE, stats)
    return stats


def source_part(item_id: str, parts: list[str]) -> str | None:
    """Which part of a mixed source ``item_id`` comes from (``None`` if it is not prefixed by one)."""
    name, sep, _ = item_id.partition(PREFIX_SEP)
    return name if sep and name in parts else None
