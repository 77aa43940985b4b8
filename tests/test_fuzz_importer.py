"""Fuzzing the RecBole atomic importer with hypothesis: random interaction files (blank lines, CRLF,
a byte-order mark, NaN/inf/non-numeric/empty timestamps, unknown items, stray tabs, unicode ids,
duplicate item definitions).  Every file either loads into a dataset whose sequences are
chronological (ties in file order), k-cored and counted, or fails with a DataError naming the file
and the line where the first problem really is (found here by an independent scan)."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from earec_core.data import load_dataset
from earec_core.errors import DataError

ITEMS = [f"i{n}" for n in range(6)] + ["é✓"]  # one unicode id
GOOD = ["0", "1", "2", "3", "4", "5", "1.5", "1e3", "-2"]
BAD = ["nan", "inf", "-inf", "NaN", "x", ""]
TIMESTAMPS = st.sampled_from(GOOD * 30 + BAD)  # mostly good, so that many files load
ROWS = st.lists(st.tuples(st.sampled_from(["u1", "u2", "u3", "ü4"]), st.sampled_from(ITEMS + ["ghost"]), TIMESTAMPS,
                          st.integers(0, 300)), max_size=40)  # 0: a stray tab


def write(tmp, rows, blank_after, crlf, bom, duplicate_item):
    folder = tmp / "fz"
    folder.mkdir(exist_ok=True)
    items = ["item_id:token\ttitle:token_seq"] + [f"{i}\tTitle {n}" for n, i in enumerate(ITEMS)]
    if duplicate_item:
        items.append(f"{ITEMS[0]}\tSecond definition")
    (folder / "fz.item").write_text("\n".join(items) + "\n", encoding="utf-8")
    lines, numbers = ["user_id:token\titem_id:token\ttimestamp:float"], []
    for n, (u, i, t, tab) in enumerate(rows):
        lines.append(f"{u}\t{i}\t{t}" + ("\textra" if tab == 0 else ""))
        numbers.append(len(lines))
        if n in blank_after:
            lines.append("")
    end = "\r\n" if crlf else "\n"
    (folder / "fz.inter").write_bytes(("\ufeff" if bom else "").encode() + (end.join(lines) + end).encode("utf-8"))
    return folder, numbers


def expected_error(rows, numbers):
    """(line, pattern) of the first problem the importer must report, or None."""
    for (u, i, t, tab), line in zip(rows, numbers):
        if tab == 0:
            return line, "columns"
    if not rows:
        return None, "no interactions"
    for (u, i, t, tab), line in zip(rows, numbers):
        if i not in ITEMS:
            continue
        try:
            value = float(t)
        except ValueError:
            return line, "not a number"
        if not math.isfinite(value):
            return line, "not a finite number"
    return None, None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(rows=ROWS, blank_after=st.sets(st.integers(0, 40), max_size=5), crlf=st.booleans(), bom=st.booleans(),
       duplicate_item=st.booleans(), k=st.integers(0, 3))
def test_importer_loads_a_sorted_dataset_or_names_the_bad_line(tmp_path, rows, blank_after, crlf, bom,
                                                               duplicate_item, k):
    folder, numbers = write(tmp_path, rows, blank_after, crlf, bom, duplicate_item)
    line, problem = expected_error(rows, numbers)
    try:
        ds = load_dataset(folder, k=k)
    except DataError as exc:
        message = str(exc)
        event(f"DataError: {problem or 'filtered to nothing'}")
        if line is not None:
            assert f"fz.inter:{line}:" in message and problem in message, (message, line, problem)
        elif problem is not None:
            assert problem in message, message
        else:  # nothing wrong line by line: only filtering may leave nothing
            assert re.search(r"k-core|no interaction refers|3 or more interactions", message), message
        return
    assert line is None and problem is None, f"expected an error at line {line} ({problem}), the file loaded"
    event("loaded")
    known = [(u, i, float(t), n) for n, (u, i, t, tab) in enumerate(rows) if i in ITEMS]
    assert ds.stats["interactions_raw"] == len(rows)
    assert ds.stats["interactions_unknown_item"] == len(rows) - len(known)
    assert ds.stats["item_ids_duplicated"] == int(duplicate_item)
    in_catalog = set(ds.catalog.ids)
    per_user = defaultdict(list)
    for u, i, t, n in known:
        if i in in_catalog:
            per_user[u].append((t, n, i))
    for user, (history, target) in zip(ds.users, ds.splits.test):
        sequence = [ds.catalog.items[x - 1].id for x in [*history, target]]
        assert sequence == [i for _, _, i in sorted(per_user[user])]  # chronological, ties in file order
        assert len(sequence) >= max(k, 3)
    counts = Counter(i for seq in ([ds.catalog.items[x - 1].id for x in [*h, t]] for h, t in ds.splits.test)
                     for i in seq)
    assert ds.stats["interactions"] >= sum(counts.values())
    if k:
        assert min(Counter(i for u, i, t, n in known if i in in_catalog and u in per_user).values()) >= k
