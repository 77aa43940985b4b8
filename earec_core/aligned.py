"""Loading what stage 1 wrote: a modality's projector and metadata, with compatibility checks."""

from __future__ import annotations

from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from .artifacts import read_json
from .errors import ArtifactError
from .modality import Modality


ADAPTER_WEIGHTS = "adapter_model.safetensors"
_FINGERPRINT_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size",
                     "num_attention_heads", "num_key_value_heads")


def base_fingerprint(config) -> dict:
    """The backbone facts an adapter depends on (architecture and sizes), from a HF config.

    Stage 1 records it in ``modality.json`` (and compositions in ``composition.json``) so an
    adapter is never applied to another base model, even one of the same width.
    """
    return {k: getattr(config, k, None) for k in _FINGERPRINT_KEYS}


def check_adapter(adapter_dir: Path, model: nn.Module, *, fingerprint: dict | None = None,
                  error: type[Exception] = ArtifactError) -> None:
    """Refuse an adapter folder before peft reads it, unless it is safe to load and fits ``model``.

    * Weights are read only from ``adapter_model.safetensors``: a folder without it (e.g. only a
      pickled ``adapter_model.bin``) is refused, so peft never falls back to unpickling.
    * Every LoRA factor must target a linear layer that ``model`` has, with matching in/out
      widths (an adapter trained on another backbone or hidden size is refused by name).
    * If ``fingerprint`` (see :func:`base_fingerprint`, recorded at alignment time) is given, it
      must equal ``model``'s: same architecture, depth and sizes.

    Raises:
        ``error`` (ArtifactError by default; compose passes CompositionError) saying what does not fit.
    """
    adapter_dir = Path(adapter_dir)
    weights = adapter_dir / ADAPTER_WEIGHTS
    if not weights.is_file():
        others = sorted(p.name for p in adapter_dir.glob("adapter_model*") if p.name != ADAPTER_WEIGHTS)
        found = f" (found {', '.join(others)}: pickled weights are never loaded)" if others else ""
        raise error(f"{adapter_dir}: no {ADAPTER_WEIGHTS}{found}; adapters are loaded only from safetensors, "
                    "re-align or convert it")
    if fingerprint:
        current = base_fingerprint(model.config)
        diff = {k: (fingerprint.get(k), current[k]) for k in current if fingerprint.get(k) != current[k]}
        if diff:
            what = ", ".join(f"{k} {a!r} vs {b!r}" for k, (a, b) in diff.items())
            raise error(f"{adapter_dir}: aligned on another base model than this backbone ({what}); "
                        "re-align it on this backbone")
    try:
        with safe_open(str(weights), framework="pt") as fh:
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise error(f"{weights}: not a readable safetensors file ({exc})") from None
    modules = dict(model.named_modules())
    for key, shape in shapes.items():
        name = key.removeprefix("base_model.model.")
        for suffix, dim, side in ((".lora_A.weight", 1, "input"), (".lora_B.weight", 0, "output")):
            if not name.endswith(suffix):
                continue
            path = name[: -len(suffix)]
            module = modules.get(path)
            if module is None:
                raise error(f"{adapter_dir}: adapter has LoRA weights for layer {path!r}, which this backbone "
                            "does not have; it was aligned on another base model")
            weight = getattr(module, "weight", None)
            if weight is not None and weight.ndim == 2 and len(shape) == 2 and shape[dim] != weight.shape[dim]:
                raise error(f"{adapter_dir}: layer {path!r} has {side} width {weight.shape[dim]} in this backbone "
                            f"but {shape[dim]} in the adapter; it was aligned on another base model / hidden size")


def read_modality_meta(adapter_dir: Path) -> dict:
    """``modality.json`` of an aligned modality. Raises ArtifactError if it is missing."""
    path = Path(adapter_dir) / "modality.json"
    if not path.is_file():
        raise ArtifactError(f"{adapter_dir} is not an aligned modality (no modality.json); run `earec align` first")
    return read_json(path)


def load_projector(adapter_dir: Path, modality: Modality, d_llm: int) -> nn.Module | None:
    """The trained projector of ``modality`` (``None`` for text-like modalities).

    Raises:
        ArtifactError: the adapter was trained for another LLM width or encoder width, or the
            projector file is missing or does not fit the modality's projector.
    """
    meta = read_modality_meta(adapter_dir)
    if meta["hidden_size"] != d_llm:
        raise ArtifactError(
            f"{adapter_dir}: aligned for an LLM of hidden size {meta['hidden_size']}, this backbone has {d_llm}; "
            "re-align it on this backbone"
        )
    if modality.placeholder is None:
        return None
    if meta["feature_dim"] != modality.feature_dim:
        raise ArtifactError(
            f"{adapter_dir}: projector expects encoder width {meta['feature_dim']}, the encoder gives {modality.feature_dim}"
        )
    path = Path(adapter_dir) / "projector.safetensors"
    if not path.is_file():
        raise ArtifactError(f"projector missing: {path}")
    projector = modality.build_projector(modality.feature_dim, d_llm)
    try:
        projector.load_state_dict(load_file(str(path)))
    except RuntimeError as exc:
        raise ArtifactError(f"{path} does not fit {modality.name!r}'s projector: {exc}") from None
    return projector.eval()
