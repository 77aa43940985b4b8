"""Embedding extraction killed with SIGKILL resumes from the shards it finished, and extraction
spread over 2 processes (Lightning Fabric, DDP on gloo) writes one joinable output; both give
the same embeddings as one uninterrupted process."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner

from procs import reaped, sigkill
from earec_core.cli import cli
from earec_core.embed import embed, load_embeddings
from earec_core.workspace import Workspace

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL / gloo")
ENV = {**os.environ, "EAREC_LOAD_PLUGINS": "text,behavior,sasrec", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_llm_dir, make_dataset):
    root = tmp_path_factory.mktemp("embed-kill")
    data = make_dataset(root, n_users=80, n_items=80)
    ws = Workspace(root / "reference", progress=False, llm=str(tiny_llm_dir), dataset=str(data), k_core=3)
    reference = load_embeddings(embed(ws, "base:text", precision="fp32"), ws.dataset.catalog.ids)
    common = ["embed", "base:text", "--precision", "fp32", "--dataset", str(data), "--llm", str(tiny_llm_dir),
              "--k-core", "3"]
    return root, common, reference, ws.dataset.catalog.ids


def _cli(*args):
    return [sys.executable, "-m", "earec_core.cli", *map(str, args)]


@pytest.mark.slow  # a real subprocess (imports torch + lightning)
def test_embed_killed_mid_stage_resumes_from_finished_shards(setup):
    root, common, reference, ids = setup
    run_dir = root / "killed"
    args = [*common, "--run-dir", run_dir, "--shard-size", "2", "--batch-size", "1"]
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    with reaped(proc):
        deadline = time.monotonic() + 600
        while not list((run_dir / "embeddings").glob(".base-text-shards-*/shard-*.safetensors")):
            assert proc.poll() is None, proc.stderr.read().decode(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "no shard was ever written"
            time.sleep(0.005)
        sigkill(proc)
    out = run_dir / "embeddings" / "base-text"
    assert not out.exists()  # nothing that looks finished
    (work,) = (run_dir / "embeddings").glob(".base-text-shards-*")
    done = {p.name: p.stat().st_mtime_ns for p in work.glob("shard-*.safetensors")}
    assert 0 < len(done) < len(ids) / 2

    result = CliRunner().invoke(cli, [*map(str, args), "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    total = -(-len(ids) // 2)
    for name, mtime in done.items():  # finished shards were moved into place, not recomputed
        final = out / f"item_embeddings-{int(name[6:11]) + 1:05d}-of-{total:05d}.safetensors"
        assert final.stat().st_mtime_ns == mtime
    torch.testing.assert_close(load_embeddings(out, ids), reference, rtol=1e-4, atol=1e-4)
    assert not work.exists()


@pytest.mark.slow  # two real processes
def test_embed_on_two_processes_writes_one_joinable_output(setup):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    root, common, reference, ids = setup
    run_dir = root / "ddp"
    args = [*common, "--run-dir", run_dir, "--shard-size", "7", "--devices", "2", "--accelerator", "cpu",
            "--strategy", "ddp", "--quiet"]
    proc = subprocess.run(_cli(*args), capture_output=True, text=True, env=ENV, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = run_dir / "embeddings" / "base-text"
    from earec_core.artifacts import read_json

    info = read_json(out / "info.json")
    assert info["world_size"] == 2 and len(info["files"]) == -(-len(ids) // 7)
    torch.testing.assert_close(load_embeddings(out, ids), reference, rtol=1e-4, atol=1e-4)
    assert proc.stdout.count("item embeddings:") <= 1  # rank 0 speaks for both
