"""Crash safety: `earec align` killed with SIGKILL mid-training leaves no artifact that could be
taken for a result, and running the same command again restarts the stage cleanly and ends with
the same adapter as an uninterrupted run with the same seed.  (Embedding: see
test_embed_kill_and_ranks.py, which resumes from finished shards.)"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner

from procs import reaped, sigkill
from earec_core.cli import cli


@pytest.mark.slow  # a real subprocess (imports torch + lightning): ~20-40 s on 2 shared cores
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_align_killed_mid_training_then_rerun_completes(tmp_path, tiny_llm_dir, make_dataset):
    data = make_dataset(tmp_path)
    run_dir = tmp_path / "run"
    common = ["align", "--modality", "text", "--dataset", str(data), "--llm", str(tiny_llm_dir), "--k-core", "3",
              "--align-items", "all", "--batch-size", "4", "--epochs", "3", "--lora-lr", "0.01"]
    reference = tmp_path / "uninterrupted"
    ok = CliRunner().invoke(cli, [*common, "--run-dir", str(reference), "--quiet"], catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    common += ["--run-dir", str(run_dir)]
    env = {**os.environ, "EAREC_LOAD_PLUGINS": "text,behavior,sasrec", "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
    # a pseudo-terminal, so the progress bar renders live: "Epoch 0/" proves training is under way
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "earec_core.cli", *common],
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    output = b""
    with reaped(proc):
        try:
            deadline = time.monotonic() + 600  # generous: shared 2-core machines can be very slow to import torch
            while b"Epoch 0/" not in output:
                assert proc.poll() is None, output.decode(errors="replace")[-3000:]
                assert time.monotonic() < deadline, "training never started: " + output.decode(errors="replace")[-2000:]
                if select.select([master], [], [], 0.2)[0]:
                    try:
                        output += os.read(master, 65536)
                    except OSError:
                        break
            sigkill(proc)
        finally:
            os.close(master)
    adapters = run_dir / "adapters"
    assert not (adapters / "text" / "manifest.json").exists()  # nothing that looks finished

    # what a writer killed inside atomic_dir leaves behind: a half-written temporary folder
    stale = adapters / f".text-tmp-{proc.pid}-abc123"
    stale.mkdir(parents=True)
    (stale / "modality.json").write_text("{}")
    from earec_core.errors import ArtifactError
    from earec_core.model import resolve
    from earec_core.workspace import Workspace

    with pytest.raises(ArtifactError, match=r"\(found: none\)"):  # never offered as a source
        resolve(Workspace(run_dir, progress=False), "zzz")

    result = CliRunner().invoke(cli, [*common, "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = adapters / "text"
    assert {"manifest.json", "modality.json", "adapter_model.safetensors", "adapter_config.json"} <= {
        p.name for p in out.iterdir()}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "align" and manifest["config"]["align"]["epochs"] == 3
    assert [p.name for p in adapters.iterdir() if p.name.startswith(".")] == []  # stale tmp swept
    from safetensors.torch import load_file

    got = load_file(str(out / "adapter_model.safetensors"))
    want = load_file(str(reference / "adapters" / "text" / "adapter_model.safetensors"))
    assert got.keys() == want.keys() and any(k.endswith("lora_B.weight") and want[k].abs().max() > 0 for k in want)
    for k in want:  # same seed, same command: the restarted stage reproduces the uninterrupted one
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
    before = (out / "adapter_model.safetensors").stat().st_mtime_ns
    again = CliRunner().invoke(cli, [*common, "--quiet"], catch_exceptions=False)
    assert again.exit_code == 0 and (out / "adapter_model.safetensors").stat().st_mtime_ns == before  # current: skipped


def test_sweep_keeps_folders_of_live_writers(tmp_path):
    from earec_core.artifacts import atomic_dir, sweep_stale

    target = tmp_path / "a+b"
    live = tmp_path / f".a+b-tmp-{os.getpid()}-xyz"
    live.mkdir()
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()
    dead = tmp_path / f".a+b-tmp-{dead_pid}-xyz"
    dead.mkdir()
    other = tmp_path / ".a+bc-tmp-1-xyz"  # another artifact's name: not ours to touch
    other.mkdir()
    assert sweep_stale(target) == [dead]
    with atomic_dir(target, {"stage": "t"}) as tmp:
        assert tmp.name.startswith(f".a+b-tmp-{os.getpid()}-")
        (tmp / "x").write_text("1")
    assert (target / "manifest.json").is_file() and live.exists() and other.exists() and not dead.exists()
