"""``earec check-data``: everything in a dataset that would hurt a run, found in one pass before it starts.

Errors stop a run (the importer would refuse the data, or the data would scramble sequences);
warnings are repairs or losses a user should know about.  Every finding has a count and up to
:data:`EXAMPLES` examples naming ``file:line`` (or the item).  :func:`check_dataset` reads the
files itself, so it reports every problem at once instead of stopping at the first, as the
importer does.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .atomic import AtomicTable, guess_anchor_field, read_atomic
from .dataset import Dataset
from .paths import resolve_media_path
from .sequences import Interaction, k_core, user_sequences
from .unisrec import is_unisrec_dir, load_unisrec

EXAMPLES = 3
MEDIA_FIELDS = ("image", "audio", "video")


@dataclass
class Finding:
    """One class of problem: ``kind`` (stable key), ``message``, ``count`` and a few ``examples``."""

    kind: str
    message: str
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, example: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(example)


@dataclass
class CheckReport:
    """``errors`` stop a run; ``warnings`` do not.  ``stats`` are counts for context."""

    dataset: str
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(f.count for f in self.errors)

    def as_dict(self) -> dict:
        def rows(findings):
            return [vars(f) for f in findings if f.count]

        return {"dataset": self.dataset, "ok": self.ok, "errors": rows(self.errors), "warnings": rows(self.warnings),
                "stats": self.stats}

    def markdown(self) -> str:
        lines = [f"# Data check: {self.dataset}", "", "**" + ("OK" if self.ok else "ERRORS: a run would stop") + "**",
                 ""]
        for title, findings in (("Errors", self.errors), ("Warnings", self.warnings)):
            found = [f for f in findings if f.count]
            lines += [f"## {title}", ""] + (["none", ""] if not found else [])
            for f in found:
                lines.append(f"- {f.message}: **{f.count}** (e.g. {'; '.join(f.examples)})")
            lines.append("")
        lines += ["## Counts", ""] + [f"- {k}: {v}" for k, v in self.stats.items()]
        return "\n".join(lines) + "\n"


def check_dataset(directory: str | Path, *, anchor_field: str | None = None, k: int = 5,
                  max_seq_length: int = 50, tables: tuple[AtomicTable, AtomicTable] | None = None,
                  loaded: Dataset | None = None) -> CheckReport:
    """Check the RecBole atomic dataset in ``directory`` (``NAME.inter`` + ``NAME.item``); a
    UniSRec-layout folder is checked by loading it.

    Args:
        anchor_field: the anchor (title) field; default a title-like field.
        k: the run's k-core threshold (reports users and items it would remove).
        max_seq_length: the recommender's input length (reports training sequences it truncates).
        tables: ``(NAME.inter, NAME.item)`` of an atomic folder, if the caller read them already
            (:func:`.atomic.read_dataset_files`); else they are read here.
        loaded: a UniSRec-layout folder as the importer already loaded it; else it is loaded here.
    """
    directory = Path(directory)
    name = directory.name
    report = CheckReport(dataset=str(directory))
    err = {key: Finding(key, msg) for key, msg in [
        ("unreadable", "file missing or malformed"),
        ("timestamp_not_a_number", "timestamps that are not numbers"),
        ("timestamp_not_finite", "timestamps that are NaN or infinite"),
        ("no_interactions", "interaction file without interactions"),
        ("nothing_left", "filtering leaves nothing to train on"),
    ]}
    warn = {key: Finding(key, msg) for key, msg in [
        ("duplicate_item_id", "item ids defined more than once (the first definition is kept)"),
        ("unknown_item", "interactions with an item missing from the .item file (dropped)"),
        ("empty_item_id", "item rows with an empty id (dropped)"),
        ("no_anchor", "items without an anchor (never alignment samples)"),
        ("duplicate_anchor", "items sharing their anchor with another item"),
        ("identical_text", "items whose text (all fields but id and anchor) equals another item's"),
        ("kcore_removed_users", "users removed by the k-core filter"),
        ("kcore_removed_items", "items removed by the k-core filter"),
        ("truncated_sequences", f"users whose training sequence is longer than {max_seq_length} (truncated)"),
        ("missing_media", "media files named by an item that do not exist or are unsafe paths"),
    ]}
    report.errors, report.warnings = list(err.values()), list(warn.values())
    if not (directory / f"{name}.inter").is_file() and is_unisrec_dir(directory):
        try:  # the UniSRec benchmark layout comes split and filtered: what matters is whether it loads
            ds = loaded if loaded is not None else load_unisrec(directory)
            report.stats = {"users": len(ds.users), "items": len(ds.catalog)}
        except DataError as exc:
            err["unreadable"].add(str(exc))
        return report
    try:
        if tables is None:
            items = read_atomic(directory / f"{name}.item")
            inter = read_atomic(directory / f"{name}.inter")
        else:
            inter, items = tables
        id_col, u_col, i_col = items.column("item_id"), inter.column("user_id"), inter.column("item_id")
        a_col = items.column(anchor_field or guess_anchor_field(items.fields))
    except DataError as exc:
        err["unreadable"].add(str(exc))
        return report
    t_col = inter.fields.index("timestamp") if "timestamp" in inter.fields else None

    known: dict[str, int] = {}
    anchors: dict[str, list[str]] = defaultdict(list)
    texts: dict[str, list[str]] = defaultdict(list)
    text_cols = [c for c, f in enumerate(items.fields) if c not in (id_col, a_col) and f not in MEDIA_FIELDS]
    media_cols = [(c, f) for c, f in enumerate(items.fields) if f in MEDIA_FIELDS]
    for index, row in enumerate(items.rows):
        iid = row[id_col].strip()
        if not iid:
            warn["empty_item_id"].add(items.where(index))
            continue
        if iid in known:
            warn["duplicate_item_id"].add(f"{items.where(index)} ({iid!r})")
            continue
        known[iid] = index
        anchor = " ".join(row[a_col].split())
        if anchor:
            anchors[anchor.casefold()].append(iid)
        else:
            warn["no_anchor"].add(f"{items.where(index)} ({iid!r})")
        texts[" | ".join(row[c].strip() for c in text_cols)].append(iid)
        for c, f in media_cols:
            if row[c].strip():
                try:
                    ok = resolve_media_path(directory, row[c].strip()).is_file()
                except DataError:
                    ok = False
                if not ok:
                    warn["missing_media"].add(f"{items.where(index)} ({f}: {row[c].strip()!r})")
    for group in anchors.values():
        for iid in group[1:] if len(group) > 1 else []:
            warn["duplicate_anchor"].add(f"{iid!r} = {group[0]!r}")
    for group in texts.values():
        for iid in group[1:] if len(group) > 1 else []:
            warn["identical_text"].add(f"{iid!r} = {group[0]!r}")

    if not inter.rows:
        err["no_interactions"].add(f"{inter.path} has only its header")
    interactions = []
    for order, row in enumerate(inter.rows):
        item = row[i_col].strip()
        ts = float(order)
        if t_col is not None:
            try:
                ts = float(row[t_col])
            except ValueError:
                err["timestamp_not_a_number"].add(f"{inter.where(order)} ({row[t_col]!r})")
                continue
            if not math.isfinite(ts):
                err["timestamp_not_finite"].add(f"{inter.where(order)} ({row[t_col]!r})")
                continue
        if item not in known:
            warn["unknown_item"].add(f"{inter.where(order)} ({item!r})")
            continue
        interactions.append(Interaction(user=row[u_col].strip(), item=item, timestamp=ts, order=order))
    users_before = {x.user for x in interactions}
    items_before = {x.item for x in interactions}
    try:
        kept = k_core(interactions, k)
    except DataError as exc:  # every user or item falls below k: the run would stop here
        err["nothing_left"].add(str(exc))
        kept = []
    users_after = Counter(x.user for x in kept)
    items_after = {x.item for x in kept}
    for u in sorted(users_before - set(users_after))[:EXAMPLES]:
        warn["kcore_removed_users"].examples.append(repr(u))
    warn["kcore_removed_users"].count = len(users_before) - len(users_after)
    for i in sorted(items_before - items_after)[:EXAMPLES]:
        warn["kcore_removed_items"].examples.append(repr(i))
    warn["kcore_removed_items"].count = len(items_before) - len(items_after)
    for user, seq in user_sequences(kept).items():
        if len(seq) - 2 > max_seq_length:  # leave-one-out: the last two are validation and test targets
            warn["truncated_sequences"].add(f"{user!r} ({len(seq) - 2} training items)")
    report.stats = {"item_rows": len(items.rows), "interaction_rows": len(inter.rows),
                    "users_after_k_core": len(users_after), "items_after_k_core": len(items_after),
                    "interactions_after_k_core": len(kept)}
    return report
