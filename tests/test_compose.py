"""Composition maths on a tiny Llama: the composed adapter's ΔW equals what compose.py documents."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from earec_core.artifacts import write_json
from earec_core.compose import compose
from earec_core.errors import CompositionError
from earec_core.workspace import Workspace


def make_adapter(ws, llm_dir, name, seed, r=4, alpha=8):
    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(llm_dir)
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base, cfg)
    out = ws.adapter_dir(name)
    model.save_pretrained(str(out))
    write_json(out / "modality.json", {"modality": name, "hidden_size": 64, "feature_dim": None})
    write_json(out / "manifest.json", {"stage": "align", "seed": seed})
    return out


def lora_factors(adapter_dir, llm_dir):
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(llm_dir), str(adapter_dir))
    out = {}
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            out[name] = (module.lora_A["default"].weight.detach().clone(), module.lora_B["default"].weight.detach().clone(),
                         module.scaling["default"], module.get_delta_weight("default").detach().clone())
    return out


@pytest.fixture
def ws(tmp_path, tiny_llm_dir, make_dataset):
    w = Workspace(tmp_path / "run", progress=False, llm=str(tiny_llm_dir), dataset=str(make_dataset(tmp_path)))
    make_adapter(w, tiny_llm_dir, "a", seed=1)
    make_adapter(w, tiny_llm_dir, "b", seed=2)
    return w


def test_param_mode_sums_A_and_B_separately(ws, tiny_llm_dir):
    fa, fb = lora_factors(ws.adapter_dir("a"), tiny_llm_dir), lora_factors(ws.adapter_dir("b"), tiny_llm_dir)
    out = compose(ws, {"a": 0.7, "b": 0.3}, mode="param", name="ab")
    composed = lora_factors(out, tiny_llm_dir)
    assert composed.keys() == fa.keys() and len(composed) == 4
    for layer, (_, _, _, delta) in composed.items():
        A1, B1, s, _ = fa[layer]
        A2, B2, s2, _ = fb[layer]
        assert s == s2 == 2.0
        expected = s * (0.7 * B1 + 0.3 * B2) @ (0.7 * A1 + 0.3 * A2)  # θ = Σλθ on A and B, eq. 4
        torch.testing.assert_close(delta, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("weights", [{"a": 0.7, "b": 0.3}, {"a": 1.0, "b": -1.0}])
def test_delta_mode_is_exact_weighted_sum_of_deltas(ws, tiny_llm_dir, weights):
    fa, fb = lora_factors(ws.adapter_dir("a"), tiny_llm_dir), lora_factors(ws.adapter_dir("b"), tiny_llm_dir)
    out = compose(ws, weights, mode="delta", name="d")
    lam = weights  # delta mode uses the weights as given (task arithmetic)
    for layer, (_, _, _, delta) in lora_factors(out, tiny_llm_dir).items():
        expected = lam["a"] * fa[layer][3] + lam["b"] * fb[layer][3]
        torch.testing.assert_close(delta, expected, rtol=1e-4, atol=1e-6)


def test_one_hot_weights_reproduce_the_adapter(ws, tiny_llm_dir):
    fa = lora_factors(ws.adapter_dir("a"), tiny_llm_dir)
    out = compose(ws, {"a": 1.0, "b": 0.0}, mode="param", name="onlya")
    for layer, (_, _, _, delta) in lora_factors(out, tiny_llm_dir).items():
        torch.testing.assert_close(delta, fa[layer][3], rtol=1e-4, atol=1e-6)


def test_recomposing_under_the_same_name_replaces_the_result(ws, tiny_llm_dir):
    first = lora_factors(compose(ws, {"a": 0.9, "b": 0.1}, name="same"), tiny_llm_dir)
    second = lora_factors(compose(ws, {"a": 0.1, "b": 0.9}, name="same"), tiny_llm_dir)
    layer = next(iter(first))
    assert not torch.allclose(first[layer][3], second[layer][3])


def test_param_mode_refuses_unequal_ranks_and_negative_weights(ws, tiny_llm_dir):
    make_adapter(ws, tiny_llm_dir, "c", seed=3, r=8, alpha=16)
    with pytest.raises(CompositionError, match="equal ranks"):
        compose(ws, {"a": 0.5, "c": 0.5}, mode="param")
    with pytest.raises(CompositionError, match="negative weights"):
        compose(ws, {"a": 2.0, "b": -1.0}, mode="param")
    # delta mode handles different ranks exactly
    out = compose(ws, {"a": 0.5, "c": 0.5}, mode="delta", name="ac")
    assert (out / "adapter_model.safetensors").is_file()


def test_missing_adapter_is_a_clear_error(ws):
    with pytest.raises(CompositionError, match="no aligned adapter"):
        compose(ws, {"a": 0.5, "zzz": 0.5})


def test_a_modality_called_default_composes_like_any_other(ws, tiny_llm_dir):
    """peft names a saved top-level adapter "default"; a modality of that name must not collide with it."""
    make_adapter(ws, tiny_llm_dir, "default", seed=2)  # the same weights as "b"
    plain = lora_factors(compose(ws, {"a": 0.6, "b": 0.4}, mode="delta", name="ab"), tiny_llm_dir)
    named = lora_factors(compose(ws, {"a": 0.6, "default": 0.4}, mode="delta", name="a-default"), tiny_llm_dir)
    assert plain.keys() == named.keys()
    for layer in plain:
        torch.testing.assert_close(named[layer][3], plain[layer][3], rtol=1e-5, atol=1e-7)


def test_a_composition_made_from_a_relative_run_dir_is_usable_from_any_directory(tmp_path, tiny_llm_dir, make_dataset,
                                                                                   monkeypatch):
    """composition.json names its adapters by absolute path; one written before that (a path relative
    to wherever the command ran, no embedded modality records) still finds its run's adapters."""
    import json

    from earec_core.aligned import modality_parts

    data = make_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    rel = Workspace("run", progress=False, llm=str(tiny_llm_dir), dataset=str(data))
    make_adapter(rel, tiny_llm_dir, "a", seed=1)
    make_adapter(rel, tiny_llm_dir, "b", seed=2)
    out = compose(rel, {"a": 0.5, "b": 0.5}, name="ab")
    info = json.loads((out / "composition.json").read_text())
    assert all(Path(p).is_absolute() and Path(p).is_dir() for p in info["adapters"].values())

    # the older form: relative paths, no modality_meta; read from another working directory
    info["adapters"] = {m: f"run/adapters/{m}" for m in info["adapters"]}
    info.pop("modality_meta", None)
    (out / "composition.json").write_text(json.dumps(info))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    parts = modality_parts((tmp_path / "run" / "compositions" / "ab"))
    assert {m: meta["modality"] for m, (meta, _) in parts.items()} == {"a": "a", "b": "b"}
