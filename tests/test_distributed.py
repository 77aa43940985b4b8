"""Stage 1 under Lightning's DDP strategy: `earec align --devices 2 --strategy ddp --accelerator cpu`
runs two real processes (Lightning's launcher re-runs the command line for rank 1) talking over
gloo, each training on its own shard of the samples; only rank 0 writes the adapter."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from earec_core.cli import cli

gloo = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)

ALIGN = ["align", "--modality", "text", "--k-core", "3", "--align-items", "24", "--batch-size", "4",
         "--epochs", "2", "--quiet"]


def _processes_mentioning(text: str) -> list[int]:
    """pids whose command line contains ``text`` (Linux /proc; empty elsewhere)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            pass
    return pids


def _earec(*args, launcher=(), plugins="text") -> subprocess.CompletedProcess:
    env = {**os.environ, "EAREC_LOAD_PLUGINS": plugins, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    env.pop("OMP_NUM_THREADS", None)  # the launchers then give each of the 2 processes cpu_count // 2 threads
    return subprocess.run([sys.executable, *launcher, "-m", "earec_core.cli", *map(str, args)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, tiny_llm_dir, make_dataset):
    """``earec align --devices 2 --strategy ddp --accelerator cpu``: Lightning's launcher starts rank 1."""
    root = tmp_path_factory.mktemp("ddp")
    data = make_dataset(root)
    run_dir = root / "run"
    proc = _earec(*ALIGN, "--run-dir", run_dir, "--dataset", data, "--llm", tiny_llm_dir,
                  "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu")
    return data, run_dir, proc


@gloo
@pytest.mark.skipif(sys.platform == "win32", reason="Lightning's subprocess launcher + /proc")
def test_align_with_two_ddp_processes_on_cpu(ddp_run, tiny_llm_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _, run_dir, proc = ddp_run
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert output.count("adapter + projector for 'text'") == 1, output[-2000:]  # printed by rank 0 only
    # rank 0 returns only after rank 1 has exited: nothing of this run is still running
    assert _processes_mentioning(str(run_dir)) == []

    adapters = run_dir / "adapters"
    assert [p.name for p in adapters.iterdir()] == ["text"]  # written once; no temporary leftovers
    out = adapters / "text"
    assert {p.name for p in out.iterdir()} == {"adapter_model.safetensors", "adapter_config.json", "modality.json",
                                               "manifest.json", "README.md"}

    log = json.loads((out / "modality.json").read_text())["train_log"]
    dist = log["distributed"]
    assert dist["world_size"] == 2 and dist["strategy"] == "DDPStrategy" and dist["accelerator"] == "CPUAccelerator"
    n = log["samples"]
    assert n == 24
    assert [s["epoch"] for s in dist["sample_split"]] == [0, 1]
    for epoch in dist["sample_split"]:
        # DistributedSampler: disjoint halves (padded to equal length) that together cover every sample
        assert epoch["per_rank"] == [math.ceil(n / 2)] * 2 and epoch["distinct"] == n
    assert len(log["loss"]) == 2 * math.ceil(math.ceil(n / 2) / 4)  # per-rank batches: half the steps
    checksums = dist["weight_checksum_per_rank"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]  # gradients were all-reduced: replicas agree

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["distributed"] == {"world_size": 2, "strategy": "ddp", "accelerator": "cpu"}

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llm_dir), str(out))
    lora_b = {k: v for k, v in load_file(str(out / "adapter_model.safetensors")).items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values())  # peft initialises B to zero: trained
    loaded_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert len(loaded_b) == len(lora_b) and all(p.abs().sum() > 0 for p in loaded_b)  # and peft loads them


@pytest.mark.slow  # another ~20-25 s on 2 cores: the ID-SASRec encoder, then two fits over 2 processes
@gloo
@pytest.mark.skipif(sys.platform == "win32", reason="Lightning's subprocess launcher")
def test_projector_pretraining_then_lora_both_run_under_ddp(tmp_path, tiny_llm_dir, make_dataset):
    """behaviour: a projector-only fit on the frozen LLM, then the LoRA fit, two Trainer.fit calls
    in each of the 2 processes (the second reuses the first's process group)."""
    run_dir = tmp_path / "run"
    proc = _earec("align", "--modality", "behavior", "--k-core", "3", "--align-items", "24", "--batch-size", "4",
                  "--quiet", "--run-dir", run_dir, "--dataset", make_dataset(tmp_path), "--llm", tiny_llm_dir,
                  "--rec-option", "max_epochs=2", "--rec-option", "hidden_size=16", "--rec-option", "inner_size=32",
                  "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu", plugins="behavior,sasrec")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    out = run_dir / "adapters" / "behavior"
    assert (out / "projector.safetensors").is_file() and (out / "adapter_model.safetensors").is_file()
    log = json.loads((out / "modality.json").read_text())["train_log"]
    for phase in (log["distributed"]["projector_pretrain"], log["distributed"]):
        assert phase["sample_split"] == [{"epoch": 0, "per_rank": [12, 12], "distinct": 24}]
        first, second = phase["weight_checksum_per_rank"]
        assert first == second
    assert len(log["projector_pretrain_loss"]) == len(log["loss"]) == 3
    assert log["distributed"]["projector_pretrain"]["weight_checksum_per_rank"] != log["distributed"][
        "weight_checksum_per_rank"]  # projector alone, then projector + LoRA


def test_device_settings_that_cannot_work_are_one_line_errors(tmp_path, tiny_llm_dir, make_dataset):
    data = make_dataset(tmp_path)
    common = [*ALIGN, "--run-dir", str(tmp_path / "run"), "--dataset", str(data), "--llm", str(tiny_llm_dir)]
    runner = CliRunner()
    r = runner.invoke(cli, [*common, "--devices", "2", "--strategy", "fsdp", "--accelerator", "cpu"])
    assert r.exit_code == 1 and "needs CUDA GPUs" in r.output and "Traceback" not in r.output
    if not torch.cuda.is_available():
        r = runner.invoke(cli, [*common, "--devices", "2", "--accelerator", "gpu"])
        assert r.exit_code == 1 and "no CUDA GPU is visible" in r.output
    elif torch.cuda.device_count() < 64:
        r = runner.invoke(cli, [*common, "--devices", "64", "--accelerator", "gpu"])
        assert r.exit_code == 1 and "CUDA GPU(s) visible" in r.output
    r = runner.invoke(cli, [*common, "--devices", "0"])
    assert r.exit_code == 2 and "--devices" in r.output
    assert not (tmp_path / "run" / "adapters").exists()  # refused before anything was trained


@gloo
@pytest.mark.skipif(sys.platform == "win32", reason="torchrun")
def test_torchrun_gives_the_same_adapter_as_lightnings_launcher(ddp_run, tiny_llm_dir, tmp_path):
    """torchrun starts both ranks at once on a fresh run directory (rank 0 prepares it first)."""
    data, launched_dir, launched = ddp_run
    assert launched.returncode == 0
    run_dir = tmp_path / "run"
    proc = _earec(*ALIGN, "--run-dir", run_dir, "--dataset", data, "--llm", tiny_llm_dir,
                  "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu",
                  launcher=["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"])
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert [p.name for p in (run_dir / "adapters").iterdir()] == ["text"]
    a = load_file(str(launched_dir / "adapters" / "text" / "adapter_model.safetensors"))
    b = load_file(str(run_dir / "adapters" / "text" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # same shards, same seeds
    logs = [json.loads((d / "adapters" / "text" / "modality.json").read_text())["train_log"]
            for d in (launched_dir, run_dir)]
    assert logs[0]["loss"] == logs[1]["loss"]
    assert logs[0]["distributed"]["sample_split"] == logs[1]["distributed"]["sample_split"]

    r = _earec(*ALIGN, "--run-dir", run_dir, "--devices", "1",
               launcher=["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"])
    assert r.returncode != 0 and "torchrun started 2 processes but --devices x --num-nodes is 1 x 1" in r.stdout + r.stderr
