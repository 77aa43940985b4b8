"""Plugin loading: entry points, in-process registration, broken plugins reported, others kept."""

from __future__ import annotations

import importlib.metadata
import json
import sys
import types

import pytest
from click.testing import CliRunner

from earec_core import hookimpl, plugins
from earec_core.cli import cli
from earec_core.modality import Fragment, Modality


class EchoModality(Modality):
    name = "echo"
    description = "test modality"

    def fragment(self, item, *, with_related=True):
        return Fragment(item.anchor)


class GoodPlugin:
    @hookimpl
    def earec_register_modalities(self, register):
        register(EchoModality)


class WrongArgPlugin:
    @hookimpl
    def earec_register_modalities(self, registr):  # misspelled argument
        registr(EchoModality)


class MisspelledHookPlugin:
    @hookimpl
    def earec_register_modality(self, register):  # no such hook
        register(EchoModality)


class RaisingPlugin:
    @hookimpl
    def earec_register_modalities(self, register):
        raise RuntimeError("boom")


class DuplicatePlugin:
    @hookimpl
    def earec_register_modalities(self, register):
        class Text2(EchoModality):
            name = "text"

        register(Text2)


@pytest.fixture(autouse=True)
def fresh_plugins():
    plugins.reload_plugins()
    yield
    plugins.reload_plugins()


def plugins_json():
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_builtins_load_through_entry_points():
    out = plugins_json()
    names = {p["name"] for p in out["plugins"]}
    assert {"text", "behavior", "sasrec"} <= names
    text = next(p for p in out["plugins"] if p["name"] == "text")
    assert text["modalities"] == ["text"] and text["hooks"] == ["earec_register_modalities"]
    assert out["broken"] == {}


def test_in_process_plugin_appears_in_cli_and_is_removed_again():
    assert plugins.register_plugin(GoodPlugin(), "good")
    out = plugins_json()
    good = next(p for p in out["plugins"] if p["name"] == "good")
    assert good["modalities"] == ["echo"]
    assert plugins.registry().modality("echo") is EchoModality
    plugins.unregister_plugin("good")
    assert "echo" not in plugins.registry().modalities


@pytest.mark.parametrize("plugin, fragment", [
    (WrongArgPlugin(), "registr"),
    (MisspelledHookPlugin(), "earec_register_modality"),
])
def test_invalid_hookimpl_is_reported_and_others_still_load(plugin, fragment):
    assert not plugins.register_plugin(plugin, "bad")
    assert plugins.register_plugin(GoodPlugin(), "good")
    out = plugins_json()
    assert "bad" in out["broken"] and fragment in out["broken"]["bad"]
    assert {"text", "behavior", "good"} <= {p["name"] for p in out["plugins"]}
    assert "bad" not in {p["name"] for p in out["plugins"]}


def test_plugin_raising_in_hook_is_reported_others_registered():
    plugins.register_plugin(RaisingPlugin(), "raiser")
    reg = plugins.registry()
    assert any("raiser" in p and "boom" in p for p in reg.problems)
    assert {"text", "behavior"} <= set(reg.modalities)


def test_duplicate_name_keeps_first_and_reports_second():
    plugins.register_plugin(DuplicatePlugin(), "dup")
    reg = plugins.registry()
    assert reg.modality("text").__module__ == "earec_text"
    assert any("'text'" in p and "dup" in p for p in reg.problems)


def test_entry_point_that_fails_to_import_is_reported_by_name(monkeypatch):
    real = importlib.metadata.entry_points

    def with_broken(**kw):
        eps = list(real(**kw))
        if kw.get("group") == "earec":
            eps.append(importlib.metadata.EntryPoint("ghost", "earec_ghost_plugin_missing", "earec"))
        return eps

    monkeypatch.setattr(importlib.metadata, "entry_points", with_broken)
    plugins.reload_plugins()
    broken = plugins.broken_plugins()
    assert "ghost" in broken and "import failed" in broken["ghost"]
    assert {"text", "behavior"} <= set(plugins.registry().modalities)
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0 and "ghost" in result.output


def test_env_var_restricts_entry_points(monkeypatch):
    monkeypatch.setenv("EAREC_LOAD_PLUGINS", "text")
    plugins.reload_plugins()
    reg = plugins.registry()
    assert set(reg.modalities) == {"text"} and reg.recommenders == {}
    monkeypatch.setenv("EAREC_LOAD_PLUGINS", "")
    plugins.reload_plugins()
    assert plugins.registry().modalities == {}


def test_unknown_modality_error_lists_known_ones():
    from earec_core.errors import ModalityNotFound

    with pytest.raises(ModalityNotFound, match=r"registered: (\w+, )*behavior, text"):  # + installed plugins
        plugins.registry().modality("smell")


def test_an_undeclared_modality_option_is_refused_before_anything_is_saved(tmp_path):
    from click.testing import CliRunner

    from earec_core.cli import cli

    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["prepare", "--run-dir", str(run_dir), "--modality-option", "text.max_char=10"])
    assert result.exit_code == 1
    assert "modality 'text' has no option 'max_char'" in result.output and "max_chars" in result.output
    assert not (run_dir / "run.json").exists()
