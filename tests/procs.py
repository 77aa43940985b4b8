"""Subprocess helpers for the crash tests (a module of its own: ``conftest`` is not importable
by name when several test folders have one)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


@contextlib.contextmanager
def reaped(proc: subprocess.Popen):
    """Yield ``proc``; whatever happens in the block, it is not left running afterwards."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def sigkill(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc`` now and check that this (not a normal exit) is what ended it."""
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the process had already finished"
