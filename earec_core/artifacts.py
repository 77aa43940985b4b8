"""Atomic writes and stage manifests.

Every stage writes its outputs into a temporary sibling folder and renames it into place, so a
killed run leaves either the old complete artifact or none.  Each artifact folder holds
``manifest.json`` with the stage's config and the hashes of its inputs' manifests; a stage is
skipped only when that manifest matches exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (see :func:`write_bytes`)."""
    write_bytes(path, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    """Write bytes atomically (temp file in the same folder + ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: Path, text: str) -> None:
    """Write text atomically."""
    write_bytes(path, text.encode("utf-8"))


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def file_hash(path: Path) -> str:
    """sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_of(directory: Path, stage: str, config: dict, inputs: dict[str, Path]) -> dict:
    """The manifest a stage *would* write: its config and the hashes of its inputs' manifests
    (an input folder without one, e.g. an aligned model copied from elsewhere, is hashed by its files)."""
    return {
        "stage": stage,
        "config": json.loads(json.dumps(config, sort_keys=True, default=str)),
        "inputs": {name: _input_hash(Path(p)) for name, p in sorted(inputs.items())},
    }


def _input_hash(folder: Path) -> str:
    if (folder / MANIFEST).is_file():
        return file_hash(folder / MANIFEST)
    files = sorted(x for x in folder.rglob("*") if x.is_file()) if folder.is_dir() else []
    if not files:  # an input stage that has not run: never vouch for it with the hash of nothing
        raise FileNotFoundError(f"{folder / MANIFEST}: the input {folder} has not been written yet")
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(folder)}:{file_hash(p)}".encode())
    return h.hexdigest()


def is_current(directory: Path, manifest: dict) -> bool:
    """True if ``directory`` holds a complete artifact whose manifest equals ``manifest``."""
    path = directory / MANIFEST
    if not path.is_file():
        return False
    try:
        return read_json(path) == manifest
    except (OSError, json.JSONDecodeError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but is not ours, or cannot tell: leave its folders alone
    return True


def sweep_stale(directory: Path) -> list[Path]:
    """Delete leftovers of *killed* writers of ``directory``: ``.NAME-tmp-PID-*`` and
    ``.NAME-old-PID`` siblings whose process no longer runs.  Folders of live processes (a
    concurrent writer) are kept.  Returns what was removed.  Leftovers are never read as
    results (readers only look at ``directory`` itself and its ``manifest.json``)."""
    directory = Path(directory)
    removed = []
    if not directory.parent.is_dir():
        return removed
    for prefix in (f".{directory.name}-tmp-", f".{directory.name}-old-"):
        for p in directory.parent.glob(f"{glob_escape(prefix)}*"):
            pid = p.name[len(prefix):].split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def glob_escape(text: str) -> str:
    """``text`` with glob metacharacters escaped (artifact names like ``text+behavior`` are literal)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


@contextlib.contextmanager
def atomic_dir(directory: Path, manifest: dict | None = None) -> Iterator[Path]:
    """Yield a temporary folder; on success write ``manifest`` into it and swap it into
    ``directory`` (replacing an older version); on failure delete it and keep the old one.

    The temporary folder is ``.NAME-tmp-PID-XXXX`` next to ``directory``; one left behind by a
    killed process (SIGKILL skips the cleanup) is removed by the next write of ``directory``
    (see :func:`sweep_stale`).  ``manifest.json`` is written last, so an artifact folder with a
    manifest is complete."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(directory)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-tmp-{os.getpid()}-", dir=directory.parent))
    try:
        yield tmp
        if manifest is not None:
            write_json(tmp / MANIFEST, manifest)
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}-old-{os.getpid()}")
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
