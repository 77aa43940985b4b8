"""Reader for RecBole atomic files (``.inter``, ``.item``, ``.user``).

Format (RecBole docs, "Atomic Files"): UTF-8, tab separated, the first line is a header of
``name:type`` fields where type is one of ``token``, ``token_seq``, ``float``, ``float_seq``.
This reader keeps every value as a string; callers convert what they use.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

FIELD_TYPES = {"token", "token_seq", "float", "float_seq"}


@dataclass
class AtomicTable:
    """One atomic file: field names (without type suffix), their types, string rows, and each
    row's line number in the file (blank lines are skipped, so row ``i`` is on ``line_numbers[i]``)."""

    path: Path
    fields: list[str]
    types: list[str]
    rows: list[list[str]]
    line_numbers: list[int] = field(default_factory=list)

    def where(self, index: int) -> str:
        """``PATH:LINE`` of row ``index``, for error messages."""
        line = self.line_numbers[index] if index < len(self.line_numbers) else index + 2
        return f"{self.path}:{line}"

    def column(self, name: str) -> int:
        """Index of field ``name``. Raises DataError naming the available fields."""
        try:
            return self.fields.index(name)
        except ValueError:
            raise DataError(f"{self.path.name}: no field {name!r} (fields: {', '.join(self.fields)})") from None


def read_atomic(path: str | Path) -> AtomicTable:
    """Read one atomic file.

    Raises:
        DataError: missing file, not UTF-8, empty, malformed header, or a row with the wrong
            number of columns (the line number is given).
    """
    path = Path(path)
    if not path.is_file():
        others = sorted(p.name for p in path.parent.glob(f"*{path.suffix}")) if path.parent.is_dir() else []
        hint = (f"; a dataset folder names its files after itself (FOLDER/FOLDER.inter, FOLDER/FOLDER.item), "
                f"and {path.parent} holds {', '.join(others[:3])}: rename them, or name the folder after them"
                if others else "")
        raise DataError(f"atomic file not found: {path}{hint}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a leading byte-order mark is not part of the header
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 (byte {exc.start}); re-encode the file as UTF-8") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DataError(f"{path}: empty file or missing header")
    fields, types = [], []
    for col in lines[0].split("\t"):
        name, sep, typ = col.strip().rpartition(":")
        if not sep or typ not in FIELD_TYPES or not name:
            raise DataError(f"{path}: header field {col!r} is not NAME:TYPE with TYPE in {sorted(FIELD_TYPES)}")
        fields.append(name)
        types.append(typ)
    rows, numbers = [], []
    reader = csv.reader(lines[1:], delimiter="\t", quoting=csv.QUOTE_NONE)
    for lineno, row in enumerate(reader, start=2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) < len(fields):  # RecBole tolerates trailing empty fields
            row = row + [""] * (len(fields) - len(row))
        if len(row) != len(fields):
            raise DataError(f"{path}:{lineno}: {len(row)} columns, header has {len(fields)}")
        rows.append(row)
        numbers.append(lineno)
    return AtomicTable(path=path, fields=fields, types=types, rows=rows, line_numbers=numbers)


def read_dataset_files(directory: str | Path, name: str | None = None) -> tuple[AtomicTable, AtomicTable]:
    """``(NAME.inter, NAME.item)`` of a RecBole atomic dataset folder (``NAME``: the folder's
    name by default), read in that order.  Raises DataError as :func:`read_atomic`."""
    directory = Path(directory)
    name = name or directory.name
    return read_atomic(directory / f"{name}.inter"), read_atomic(directory / f"{name}.item")


def guess_anchor_field(fields: list[str]) -> str:
    """The anchor (title) field among an item file's ``fields``. Raises DataError naming them."""
    for name in ("title", "movie_title", "item_name", "name"):
        if name in fields:
            return name
    raise DataError(f"cannot tell which item field is the anchor (title); pass --anchor-field (fields: {fields})")
