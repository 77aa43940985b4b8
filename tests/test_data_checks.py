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


def test_check_data_reports_every_problem_at_once(tmp_path):
    import json

    from click.testing import CliRunner

    from earec_core.cli import cli

    items = ("item_id:token\ttitle:token_seq\tgenre:token_seq\timage:token\n"
             + "".join(f"i{i}\tMovie {i}\tDrama\t\n" for i in range(6))
             + "i2\tDuplicate\tDrama\t\n" + "i9\t\tComedy\tmissing.jpg\n" + "i10\tMovie 1\tWestern\t\n")
    rows = [(f"u{u}", f"i{(u + k) % 6}", 10 * k) for u in range(6) for k in range(4)]
    rows += [("u1", "i9", "nan"), ("u2", "ghost", 5), ("u3", "i10", "soon")]
    d = write(tmp_path, interactions(rows), items)
    result = CliRunner().invoke(cli, ["check-data", "--dataset", str(d), "--k-core", "3", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    errors = {f["kind"]: f for f in report["errors"]}
    warnings = {f["kind"]: f for f in report["warnings"]}
    assert errors["timestamp_not_finite"]["count"] == 1 and "d.inter:26" in errors["timestamp_not_finite"]["examples"][0]
    assert errors["timestamp_not_a_number"]["count"] == 1 and "d.inter:28" in errors["timestamp_not_a_number"]["examples"][0]
    assert warnings["duplicate_item_id"]["count"] == 1 and "d.item:8" in warnings["duplicate_item_id"]["examples"][0]
    assert warnings["unknown_item"]["count"] == 1 and "'ghost'" in warnings["unknown_item"]["examples"][0]
    assert warnings["no_anchor"]["count"] == 1 and warnings["missing_media"]["count"] == 1
    assert warnings["duplicate_anchor"]["count"] == 1  # i10 is also "Movie 1"
    assert warnings["identical_text"]["count"] == 5  # i1..i5 share "Drama" with i0
    human = CliRunner().invoke(cli, ["check-data", "--dataset", str(d), "--k-core", "3"])
    assert human.exit_code == 1 and "ERRORS" in human.output


def test_check_data_passes_movielens(ml100k):
    from earec_core.data import default_dataset_dir
    from earec_core.data.check import check_dataset

    report = check_dataset(default_dataset_dir("ml-100k"))
    assert report.ok and report.stats["users_after_k_core"] == len(ml100k.users) == 943
    assert report.stats["items_after_k_core"] == len(ml100k.catalog)
    found = {f["kind"]: f["count"] for f in report.as_dict()["warnings"]}
    assert found["kcore_removed_items"] == 1682 - len(ml100k.catalog)
    # a run reads the files once, for the importer and the check: the same tables give the same report
    from earec_core.data.atomic import read_dataset_files

    tables = read_dataset_files(default_dataset_dir("ml-100k"))
    assert check_dataset(default_dataset_dir("ml-100k"), tables=tables).as_dict() == report.as_dict()


def test_a_run_records_the_check_of_its_dataset(tmp_path, toy_dataset_dir):
    import json

    from earec_core.workspace import Workspace

    ws = Workspace(tmp_path / "run", progress=False, dataset=str(toy_dataset_dir), k_core=3)
    ws.dataset
    checks = json.loads((tmp_path / "run" / "dataset" / "checks.json").read_text())
    assert checks["ok"] and checks["stats"]["users_after_k_core"] == len(ws.dataset.users)
