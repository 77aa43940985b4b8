"""`earec new-plugin`: the scaffolded package passes the contract kit out of the box."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from earec_core.cli import cli


def test_scaffolded_plugin_passes_the_contract_kit(tmp_path):
    result = CliRunner().invoke(cli, ["new-plugin", "sensor", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "earec-sensor"
    assert (root / "pyproject.toml").read_text().count('sensor = "earec_sensor"') == 1
    env = {**os.environ, "PYTHONPATH": str(root), "EAREC_LOAD_PLUGINS": ""}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_bad_names_and_existing_folders_are_refused(tmp_path):
    r = CliRunner().invoke(cli, ["new-plugin", "Bad-Name", "--dir", str(tmp_path)])
    assert r.exit_code == 1 and "lowercase identifier" in r.output
    CliRunner().invoke(cli, ["new-plugin", "ok", "--dir", str(tmp_path)])
    r = CliRunner().invoke(cli, ["new-plugin", "ok", "--dir", str(tmp_path)])
    assert r.exit_code == 1 and "already exists" in r.output


@pytest.mark.parametrize("name, why", [("text", "a registered modality"), ("audio", "a registered modality"),
                                       ("core", "the package earec_core is importable")])
def test_names_already_taken_are_refused(tmp_path, name, why):
    r = CliRunner().invoke(cli, ["new-plugin", name, "--dir", str(tmp_path)])
    assert r.exit_code == 1 and f"is taken ({why})" in r.output
    assert not (tmp_path / f"earec-{name}").exists()


def test_scaffolded_plugin_caches_its_features_in_the_core_table(tmp_path, toy_dataset_dir, monkeypatch):
    import importlib

    import torch

    from earec_core.data import load_dataset
    from earec_core.embstore import ItemFeatures
    from earec_core.modality import ModalityContext

    assert CliRunner().invoke(cli, ["new-plugin", "sensor", "--dir", str(tmp_path)]).exit_code == 0
    monkeypatch.syspath_prepend(str(tmp_path / "earec-sensor"))
    module = importlib.import_module("earec_sensor")
    ds = load_dataset(toy_dataset_dir, k=3)
    ctx = ModalityContext(dataset=ds, encoders_dir=tmp_path / "run" / "encoders")
    fitted = module.SensorModality()
    facts = fitted.prepare(ctx)
    table = ItemFeatures.load(ctx.artifact_dir("sensor") / module.FEATURES)
    assert facts["items_with_input"] == len(table.item_ids) == len(ds.catalog)
    fresh = module.SensorModality()  # another process: only load()
    fresh.load(ctx.artifact_dir("sensor"))
    ids = ds.catalog.ids[:5]
    torch.testing.assert_close(fresh.encode(ids), fitted.encode(ids), rtol=0, atol=0)
    assert fresh.encode(ids).shape == (5, 1, fresh.feature_dim)
