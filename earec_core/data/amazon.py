"""Importer for the Amazon review data layout (McAuley lab, 2018 release; 2014 field names too).

Input, all inside one dataset folder ``ROOT``:

* a reviews file, one record per line: ``{"reviewerID", "asin", "unixReviewTime", "overall", …}``;
* a metadata file ``meta_*.json``, one item per line: ``title``, ``description`` (string or list),
  ``brand``, ``category`` (list, coarse → fine; 2014: ``categories``, a list of lists),
  ``also_buy`` / ``also_view`` (2014: ``related.also_bought`` / ``related.also_viewed``),
  ``imageURL`` / ``image`` / ``imUrl``;
* optionally a folder of images already on disk named by ASIN (``images/B000123.jpg``).  Image
  URLs in the metadata are never fetched.

Lines may be strict JSON or Python dict literals (the published 2018 files mix both: single
quotes, ``True``); the latter are parsed with :func:`ast.literal_eval`, never ``eval``.  ``.gz``
files are read directly.  Unparseable lines are skipped and counted.

:func:`convert_amazon` writes RecBole atomic files ``ROOT/NAME.inter`` + ``ROOT/NAME.item`` next to
the data, so ``earec --dataset ROOT`` (or :func:`load_amazon`) uses the ordinary importer:
the item's ``title`` field is the paper's anchor ``"Title. Category. Brand."``, its
``description`` field is the text modality's input and ``image`` the image path.
"""

from __future__ import annotations

import ast
import gzip
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataError
from . import load_recbole_atomic

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif")
_TAG = re.compile(r"<[^>]*>")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


def parse_line(line: str) -> dict | None:
    """One record: strict JSON, else a Python dict literal (``ast.literal_eval``); ``None`` if
    neither gives a dict."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    return record if isinstance(record, dict) else None


def read_records(path: str | Path) -> tuple[list[dict], int]:
    """``(records, n_bad_lines)`` of a JSON-lines / dict-literal-lines file (optionally gzipped).

    Raises:
        DataError: missing file, not UTF-8, or no line parses.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Amazon data file not found: {path}")
    records, bad = [], 0
    try:
        with _open(path) as fh:
            for line in fh:
                if not line.strip():
                    continue
                record = parse_line(line)
                if record is None:
                    bad += 1
                else:
                    records.append(record)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    except (OSError, EOFError) as exc:  # e.g. a truncated .gz
        raise DataError(f"{path}: cannot be read: {exc}") from None
    if not records:
        raise DataError(f"{path}: no line is a JSON object or a Python dict literal ({bad} bad lines)")
    return records, bad


def _clean(value) -> str:
    """Text for one atomic-file cell: lists joined, HTML tags and entities removed, whitespace
    (tabs and newlines included) collapsed."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = " ".join(_clean(v) for v in value)
    text = html.unescape(_TAG.sub(" ", str(value)))
    return " ".join(text.split())


def _category(meta: dict, level: int) -> str:
    cats = meta.get("category")
    if not cats and meta.get("categories"):  # 2014: list of category paths
        cats = meta["categories"][0] if isinstance(meta["categories"][0], list) else meta["categories"]
    if isinstance(cats, str):
        cats = [cats]
    cats = [c for c in (_clean(c) for c in (cats or [])) if c]
    if not cats:
        return ""
    return cats[max(-len(cats), min(level, len(cats) - 1))]


def anchor_of(meta: dict, *, category_level: int = -1) -> str:
    """The paper's anchor, ``"Title. Category. Brand."`` (empty parts left out)."""
    parts = [_clean(meta.get("title")), _category(meta, category_level), _clean(meta.get("brand"))]
    return " ".join(p if p.endswith((".", "!", "?")) else p + "." for p in parts if p)


def also_lists(meta: dict) -> tuple[list[str], list[str]]:
    """``(also_buy, also_view)`` ASINs (2018 names, or 2014's ``related`` dict)."""
    rel = meta.get("related") if isinstance(meta.get("related"), dict) else {}
    buy = meta.get("also_buy") or rel.get("also_bought") or rel.get("bought_together") or []
    view = meta.get("also_view") or rel.get("also_viewed") or []
    return [str(a) for a in buy if isinstance(a, str)], [str(a) for a in view if isinstance(a, str)]


def _find_image(root: Path, image_dir: str | None, asin: str) -> str:
    if not image_dir or not _SAFE_ID.match(asin) or asin.startswith("."):
        return ""
    for ext in IMAGE_EXTENSIONS:
        rel = f"{image_dir.rstrip('/')}/{asin}{ext}"
        if (root / rel).is_file():
            return rel
    return ""


def convert_amazon(
    root: str | Path,
    *,
    reviews: str,
    meta: str,
    name: str | None = None,
    image_dir: str | None = "images",
    category_level: int = -1,
) -> dict:
    """Write ``ROOT/NAME.inter`` and ``ROOT/NAME.item`` from the Amazon files in ``ROOT``.

    Args:
        root: the dataset folder (holds the two files and the image folder).
        reviews, meta: file names inside ``root``.
        name: atomic file stem (default: the folder's name, which is what ``--dataset ROOT`` reads).
        image_dir: folder inside ``root`` with images named ``ASIN.jpg`` (or .jpeg/.png/.webp/.gif).
        category_level: which entry of the category path goes into the anchor (default the
            finest, -1).
    Returns:
        counts (reviews, items, items with an image, skipped lines/records) and the also-buy /
        also-view lists by ASIN under ``"also"`` (not written to the atomic files).
    Raises:
        DataError: missing or unparseable files.
    """
    root = Path(root)
    name = name or root.name
    review_rows, bad_reviews = read_records(root / reviews)
    meta_rows, bad_meta = read_records(root / meta)

    items, also = {}, {}
    skipped_meta = 0
    for m in meta_rows:
        asin = _clean(m.get("asin"))
        if not asin or asin in items:
            skipped_meta += 1  # no id, or a duplicate (the first definition wins)
            continue
        items[asin] = (anchor_of(m, category_level=category_level), _clean(m.get("description")),
                       _find_image(root, image_dir, asin))
        also[asin] = also_lists(m)

    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    skipped_reviews = 0
    for r in review_rows:
        user, asin = _clean(r.get("reviewerID")), _clean(r.get("asin"))
        ts = r.get("unixReviewTime")
        try:
            ts = float(ts)
        except (TypeError, ValueError):
            ts = None
        if not user or not asin or ts is None:
            skipped_reviews += 1
            continue
        try:
            rating = float(r.get("overall", ""))
        except (TypeError, ValueError):
            rating = ""
        inter.append(f"{user}\t{asin}\t{rating}\t{int(ts) if ts.is_integer() else ts}")
    lines = ["item_id:token\ttitle:token_seq\tdescription:token_seq\timage:token"]
    lines += [f"{asin}\t{anchor}\t{desc}\t{img}" for asin, (anchor, desc, img) in items.items()]
    (root / f"{name}.inter").write_text("\n".join(inter) + "\n", encoding="utf-8")
    (root / f"{name}.item").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {
        "reviews": len(inter) - 1, "items": len(items), "items_with_image": sum(1 for v in items.values() if v[2]),
        "bad_lines": {"reviews": bad_reviews, "meta": bad_meta},
        "skipped_records": {"reviews": skipped_reviews, "meta": skipped_meta},
        "also": also,
    }


def load_amazon(
    root: str | Path,
    *,
    reviews: str,
    meta: str,
    name: str | None = None,
    image_dir: str | None = "images",
    category_level: int = -1,
    related: str = "sequences",
    k: int = 5,
    n_related: int = 3,
):
    """Convert (see :func:`convert_amazon`) and load as a :class:`~earec_core.data.Dataset`.

    Args:
        related: where an item's related items come from: ``sequences`` (default: co-occurrence
            in *training* sequences, as every dataset), ``also_buy`` or ``also_view`` (the
            metadata's lists, restricted to surviving items; note they were crawled after the
            reviews, so they can leak future co-purchases into training).
    """

    if related not in ("sequences", "also_buy", "also_view"):
        raise DataError(f"related={related!r}: expected 'sequences', 'also_buy' or 'also_view'")
    facts = convert_amazon(root, reviews=reviews, meta=meta, name=name, image_dir=image_dir,
                           category_level=category_level)
    ds = load_recbole_atomic(root, name or Path(root).name, anchor_field="title", text_fields=["description"],
                             k=k, n_related=n_related)
    if related != "sequences":
        pick = 0 if related == "also_buy" else 1
        for item in ds.catalog:
            lst = facts["also"].get(item.id, ([], []))[pick]
            item.related = [a for a in dict.fromkeys(lst) if a != item.id and a in ds.catalog][:n_related]
    ds.stats.update({"amazon_bad_lines": sum(facts["bad_lines"].values()),
                     "amazon_skipped_records": sum(facts["skipped_records"].values()),
                     "items_with_image": sum(1 for it in ds.catalog if it.media.get("image"))})
    return ds
