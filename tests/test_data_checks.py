"""Input the importer used to pass silently: non-finite timestamps, duplicate item ids, blank lines
before a bad row, a header-only interaction file.  Each is an error naming file and line, or a
repair that is counted and logged."""

from __future__ import annotations

import logging

import pytest

from earec_core.data import load_dataset
from earec_core.errors import DataError

ITEMS = "item_id:token\ttitle:token_seq\n" + "".join(f"i{i}\tMovie {i}\n" for i in range(8))


def write(tmp_path, inter: str, items: str = ITEMS):
    d = tmp_path / "d"
    d.mkdir()
    (d / "d.inter").write_text(inter, encoding="utf-8")
    (d / "d.item").write_text(items, encoding="utf-8")
    return d


def interactions(rows):
    return "user_id:token\titem_id:token\ttimestamp:float\n" + "".join(f"{u}\t{i}\t{t}\n" for u, i, t in rows)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "NaN"])
def test_a_non_finite_timestamp_is_an_error_naming_its_line(tmp_path, bad):
    rows = [("u1", f"i{k}", 100 + k) for k in range(5)] + [("u1", "i5", bad)]
    d = write(tmp_path, interactions(rows))
    with pytest.raises(DataError, match=rf"d\.inter:7: timestamp '{bad}' is not a finite number"):
        load_dataset(d, k=0)


def test_the_line_number_counts_blank_lines(tmp_path):
    text = interactions([("u1", "i1", 1), ("u1", "i2", 2)]) + "\n\n" + "u1\ti3\tlater\n"
    d = write(tmp_path, text)
    lines = text.splitlines()
    bad_line = next(n for n, line in enumerate(lines, start=1) if "later" in line)
    assert bad_line == 6
    with pytest.raises(DataError, match=rf"d\.inter:{bad_line}: timestamp 'later' is not a number"):
        load_dataset(d, k=0)


def test_a_header_only_interaction_file_says_so(tmp_path):
    d = write(tmp_path, interactions([]))
    with pytest.raises(DataError, match=r"d\.inter: no interactions \(the file has only its header\)"):
        load_dataset(d, k=0)


def test_a_duplicate_item_id_is_counted_and_logged(tmp_path, caplog):
    items = ITEMS + "i3\tAnother title for i3\n"
    rows = [(f"u{u}", f"i{(u + k) % 8}", 10 * k) for u in range(4) for k in range(5)]
    d = write(tmp_path, interactions(rows), items)
    with caplog.at_level(logging.WARNING, logger="earec_core.data"):
        ds = load_dataset(d, k=0)
    assert ds.stats["item_ids_duplicated"] == 1
    assert ds.catalog["i3"].anchor == "Movie 3"  # the first definition wins
    assert any("d.item:10" in r.getMessage() and "'i3'" in r.getMessage() for r in caplog.records)
