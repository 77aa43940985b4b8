"""EAREC_TRACE_HOOKS=1 traces plugin registration and hook calls to stderr."""

from __future__ import annotations

import pytest

from earec_core import plugins


@pytest.fixture(autouse=True)
def fresh_plugins():
    yield
    plugins.reload_plugins()


def test_trace_env_var_writes_hook_calls_to_stderr(monkeypatch, capsys):
    monkeypatch.setenv("EAREC_TRACE_HOOKS", "1")
    plugins.reload_plugins()
    plugins.registry()
    err = capsys.readouterr().err
    assert "[earec hooks] register plugin 'text'" in err
    assert "call earec_register_modalities(register) -> plugin 'behavior'" in err
    assert "'text' registered ['text']" in err
    # calls through pm.hook.* are traced by pluggy's own tracer
    plugins.plugin_manager().hook.earec_register_modalities(register=lambda cls: None)
    err = capsys.readouterr().err
    assert "[earec hooks]" in err and "earec_register_modalities" in err


def test_no_trace_by_default(monkeypatch, capsys):
    monkeypatch.delenv("EAREC_TRACE_HOOKS", raising=False)
    plugins.reload_plugins()
    plugins.registry()
    assert "[earec hooks]" not in capsys.readouterr().err
