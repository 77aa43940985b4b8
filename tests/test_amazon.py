"""The Amazon 2018 review-layout importer on a small hand-written fixture (mixed strict-JSON and
Python-dict-literal lines, as the published files are) with images on disk for some ASINs."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from earec_core.data import load_dataset
from earec_core.data.amazon import anchor_of, convert_amazon, load_amazon, parse_line, read_records
from earec_core.errors import DataError

SHOP_IMAGES = Path(__file__).parent / "fixtures" / "vision-shop" / "images"

META = [
    # 2018 strict JSON
    {"asin": "B0001", "title": "Gel Ink Pen", "brand": "Pilot", "category": ["Office Products", "Writing", "Pens"],
     "description": ["Smooth <b>gel</b> ink.", "Pack of 12 &amp; refill."], "also_buy": ["B0002", "B0009"],
     "imageURL": ["https://example.invalid/B0001.jpg"]},
    {"asin": "B0002", "title": "Spiral Notebook", "brand": "Mead", "category": ["Office Products", "Paper"],
     "description": "College ruled, 70 sheets.", "also_view": ["B0003"]},
    {"asin": "B0003", "title": "Desk Stapler", "brand": "Swingline", "category": [], "description": ""},
    {"asin": "B0004", "title": "Sticky Notes", "category": ["Office Products", "Paper", "Notes"],
     "description": "Yellow, 3x3 inches."},
    {"asin": "B0005", "title": "Paper Clips", "brand": "ACCO", "category": ["Office Products"], "also_buy": ["B0004"]},
]
USERS = {f"A{u}": ["B0001", "B0002", "B0003", "B0004", "B0005"][u % 2: u % 2 + 4] for u in range(8)}


def _write_fixture(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    meta_lines = [json.dumps(m) for m in META[:3]]
    meta_lines.append(repr(META[3]))  # Python dict literal: single quotes
    meta_lines.append(repr({**META[4], "has_video": True}))  # ... and True, not true
    meta_lines.append("__import__('os').system('touch pwned')")  # never evaluated
    meta_lines.append("{'asin': 'B0001', 'title': 'Duplicate definition'}")
    meta_lines.append("not a record at all")
    (root / "meta_Office_Products.json").write_text("\n".join(meta_lines) + "\n", encoding="utf-8")
    reviews, t = [], 1_400_000_000
    for user, asins in USERS.items():
        for asin in asins:
            t += 3600
            rec = {"reviewerID": user, "asin": asin, "unixReviewTime": t, "overall": 5.0, "reviewText": "ok\tfine"}
            reviews.append(json.dumps(rec) if t % 2 else repr(rec))
    reviews.append(json.dumps({"reviewerID": "A0", "asin": "B0001"}))  # no time: skipped, counted
    with gzip.open(root / "Office_Products_5.json.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(reviews) + "\n")
    (root / "images").mkdir()
    shutil.copy(SHOP_IMAGES / "p13.jpg", root / "images" / "B0001.jpg")
    shutil.copy(SHOP_IMAGES / "p36.jpg", root / "images" / "B0002.jpg")
    return root


def test_lines_are_json_or_dict_literals_never_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_line('{"a": 1}') == {"a": 1}
    assert parse_line("{'a': True, 'b': None}") == {"a": True, "b": None}
    assert parse_line("__import__('os').system('touch pwned')") is None
    assert parse_line("[1, 2]") is None and parse_line("{'a': 1") is None
    assert not (tmp_path / "pwned").exists()


def test_anchor_is_title_category_brand():
    assert anchor_of(META[0]) == "Gel Ink Pen. Pens. Pilot."
    assert anchor_of(META[0], category_level=0) == "Gel Ink Pen. Office Products. Pilot."
    assert anchor_of(META[2]) == "Desk Stapler. Swingline."  # empty parts left out
    assert anchor_of({"title": "Old", "categories": [["Office", "Pens"]]}) == "Old. Pens."  # 2014 layout


def test_convert_and_load_amazon(tmp_path):
    root = _write_fixture(tmp_path / "office")
    facts = convert_amazon(root, reviews="Office_Products_5.json.gz", meta="meta_Office_Products.json")
    assert facts["items"] == 5 and facts["items_with_image"] == 2 and facts["reviews"] == 32
    assert facts["bad_lines"] == {"reviews": 0, "meta": 2} and facts["skipped_records"] == {"reviews": 1, "meta": 1}
    # the atomic files load through the ordinary importer, as `earec --dataset ROOT` does
    ds = load_dataset(root, k=2)
    pen = ds.catalog["B0001"]
    assert pen.anchor == "Gel Ink Pen. Pens. Pilot."
    assert pen.attributes == {"description": "Smooth gel ink. Pack of 12 & refill."}
    assert pen.media == {"image": "images/B0001.jpg"} and "image" not in ds.catalog["B0004"].media
    assert ds.directory == root and ds.stats["interactions"] == 32

    ds2 = load_amazon(root, reviews="Office_Products_5.json.gz", meta="meta_Office_Products.json", k=2,
                      related="also_buy")
    assert ds2.catalog["B0001"].related == ["B0002"]  # B0009 is not in the catalog
    assert ds2.catalog["B0005"].related == ["B0004"] and ds2.stats["items_with_image"] == 2


def test_unreadable_amazon_files_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_records(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("nonsense\n{broken\n")
    with pytest.raises(DataError, match="2 bad lines"):
        read_records(tmp_path / "bad.json")
    with pytest.raises(DataError, match="related="):
        load_amazon(tmp_path, reviews="r", meta="m", related="bought")
