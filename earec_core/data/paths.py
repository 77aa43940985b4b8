"""Paths that a dataset names (``item.media`` entries) resolved safely inside the dataset folder."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError


def resolve_media_path(root: str | os.PathLike, relative: str | os.PathLike) -> Path:
    """The absolute, symlink-resolved path of ``relative`` inside the dataset folder ``root``.

    Modality plugins must open ``item.media`` files only through this function, so a dataset
    cannot make EARec read files outside its own folder.  The file need not exist (a missing
    media file is the plugin's "no input for this item" case, not an error here).

    Raises:
        DataError: ``relative`` is empty, absolute (``/etc/passwd``, ``~``-free but rooted), holds a
            NUL byte, or resolves outside ``root`` — through ``..`` components or through a
            symlink inside ``root`` that points elsewhere.
    """
    text = os.fspath(relative)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text.strip():
        raise DataError(f"empty media path in dataset {root}")
    if "\0" in text:
        raise DataError(f"media path {text!r} contains a NUL byte")
    if Path(text).is_absolute() or text.startswith(("/", "\\")):
        raise DataError(f"media path {text!r} is absolute; dataset media paths must be relative to {root}")
    base = Path(root).resolve()
    target = (base / text).resolve()
    if target != base and base not in target.parents:
        raise DataError(f"media path {text!r} escapes the dataset folder {base} (resolves to {target})")
    return target
