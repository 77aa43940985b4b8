"""Aligned-model folders, the artifact users share: their on-disk format (written and read here,
side by side, like peft's ``save_pretrained``/``from_pretrained``) and compatibility checks; the
model card is rendered by :func:`earec_core.tables.model_card`.

An **aligned modality** (stage 1, ``RUN/adapters/MODALITY``)::

    adapter_model.safetensors + adapter_config.json   peft LoRA adapter (stock PeftModel.from_pretrained)
    projector.safetensors                             the modality's projector (slot modalities only)
    modality.json                                     dims, backbone fingerprint, recipe, sources, training log
    README.md                                         model card

A **composition** (stage 2a, ``RUN/compositions/NAME``): the merged peft adapter,
``projectors/MODALITY.safetensors``, ``composition.json`` (λ, mode, and every modality's
``modality.json`` under ``modality_meta``) and ``README.md``: self-contained as well.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .artifacts import read_json, write_json, write_text
from .errors import ArtifactError
from .modality import Modality
from .tables import model_card


ADAPTER_WEIGHTS = "adapter_model.safetensors"
MODALITY_META = "modality.json"
COMPOSITION_META = "composition.json"
PROJECTOR = "projector.safetensors"
CARD = "README.md"
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


def write_aligned_modality(folder: Path, peft_model, adapter_state: dict, projector_state: dict | None,
                           meta: dict) -> None:
    """Write an aligned modality into ``folder`` (a fresh temporary folder the caller swaps into
    place): peft's adapter files from ``adapter_state`` (the peft model's state dict),
    ``projector_state`` as float32 safetensors, ``meta`` as ``modality.json``, and the card."""
    folder = Path(folder)
    peft_model.save_pretrained(str(folder), state_dict=adapter_state)
    if projector_state is not None:
        save_file({k: v.detach().float().contiguous() for k, v in projector_state.items()}, str(folder / PROJECTOR))
    write_json(folder / MODALITY_META, meta)
    write_text(folder / CARD, model_card(meta))


def write_composition(folder: Path, peft_model, adapter_name: str, projectors: dict[str, Path], info: dict) -> None:
    """Write a composition into ``folder``: the peft adapter ``adapter_name`` of ``peft_model``
    (saved at the folder's top level), each modality's projector file copied to
    ``projectors/M.safetensors``, ``info`` as ``composition.json``, and the card."""
    folder = Path(folder)
    peft_model.save_pretrained(str(folder), selected_adapters=[adapter_name])
    (folder / "projectors").mkdir()
    for m, path in projectors.items():
        shutil.copy2(path, folder / "projectors" / f"{m}.safetensors")
    write_json(folder / COMPOSITION_META, info)
    write_text(folder / CARD, model_card(info))


def record_metrics(folder: Path, metrics: dict) -> None:
    """Merge ``metrics`` (``{name: value}``, e.g. ROUGE-L from ``earec explain``) into the folder's
    ``modality.json`` / ``composition.json`` under ``metrics`` and re-render its card.  The stage
    manifest is not touched: metrics describe the model, they are not an input of it."""
    folder = Path(folder)
    meta = folder_meta(folder)
    meta["metrics"] = {**meta.get("metrics", {}), **metrics}
    write_json(folder / (COMPOSITION_META if (folder / COMPOSITION_META).is_file() else MODALITY_META), meta)
    write_text(folder / CARD, model_card(meta))


def is_model_folder(path: Path) -> bool:
    """True if ``path`` is an aligned-model folder: an aligned modality or a composition, from any
    run or anywhere on disk."""
    path = Path(path)
    return path.is_dir() and ((path / COMPOSITION_META).is_file() or (path / MODALITY_META).is_file())


def folder_meta(folder: Path) -> dict:
    """``composition.json`` of a composition, else ``modality.json`` (ArtifactError if neither)."""
    folder = Path(folder)
    if (folder / COMPOSITION_META).is_file():
        return read_json(folder / COMPOSITION_META)
    return read_modality_meta(folder)


def meta_modalities(meta: dict) -> list[str]:
    """The modalities of an aligned-model folder whose :func:`folder_meta` is ``meta``, in prompt order."""
    return meta["modalities"] if "modalities" in meta else [meta["modality"]]


def folder_modalities(folder: Path) -> list[str]:
    """The modalities of an aligned-model folder, in prompt order."""
    return meta_modalities(folder_meta(folder))


def modality_parts(folder: Path, info: dict | None = None) -> dict[str, tuple[dict, Path]]:
    """``{modality: (its modality.json, its projector file)}`` of an aligned-model folder
    (``info``: its :func:`folder_meta`, if already read).

    A composition carries both for every modality; an older composition without
    ``modality_meta`` falls back to the aligned modality folders it names under ``adapters``.
    """
    folder = Path(folder)
    if (folder / COMPOSITION_META).is_file():
        if info is None:
            info = read_json(folder / COMPOSITION_META)
        parts = {}
        for m in info["modalities"]:
            meta = (info.get("modality_meta") or {}).get(m)
            if meta is None:
                meta = read_modality_meta(recorded_adapter_dir(folder, info, m) or Path(info["adapters"][m]))
            parts[m] = (meta, folder / "projectors" / f"{m}.safetensors")
        return parts
    meta = read_modality_meta(folder) if info is None else info
    return {meta["modality"]: (meta, folder / PROJECTOR)}


def recorded_adapter_dir(folder: Path, info: dict, modality: str) -> Path | None:
    """The aligned folder a composition ``folder`` (its composition.json ``info``) was composed from
    for ``modality``, or ``None`` if it names none.

    Compositions made before their paths were stored absolute may hold a path relative to the
    directory the command ran in; when that path does not exist from here, the composition's own
    run (``RUN/compositions/NAME`` -> ``RUN/adapters/MODALITY``) is tried before giving up.
    """
    recorded = (info.get("adapters") or {}).get(modality)
    if not recorded:
        return None
    path = Path(recorded)
    if path.is_absolute() or path.is_dir():
        return path
    sibling = Path(folder).resolve().parent.parent / "adapters" / modality
    return sibling if sibling.is_dir() else path


def read_modality_meta(adapter_dir: Path) -> dict:
    """``modality.json`` of an aligned modality. Raises ArtifactError if it is missing."""
    path = Path(adapter_dir) / MODALITY_META
    if not path.is_file():
        raise ArtifactError(f"{adapter_dir} is not an aligned modality (no modality.json); run `earec align` first")
    return read_json(path)


def load_projector(path: Path, meta: dict, modality: Modality, d_llm: int) -> nn.Module | None:
    """The trained projector of ``modality`` from ``path`` (a ``projector.safetensors``), checked
    against ``meta`` (its ``modality.json``); ``None`` for text-like modalities.

    Raises:
        ArtifactError: the adapter was trained for another LLM width or encoder width, or the
            projector file is missing or does not fit the modality's projector.
    """
    path = Path(path)
    if meta["hidden_size"] != d_llm:
        raise ArtifactError(
            f"{path.parent}: aligned for an LLM of hidden size {meta['hidden_size']}, this backbone has {d_llm}; "
            "re-align it on this backbone"
        )
    if modality.placeholder is None:
        return None
    if meta["feature_dim"] != modality.feature_dim:
        raise ArtifactError(
            f"{path.parent}: projector expects encoder width {meta['feature_dim']}, the encoder gives {modality.feature_dim}"
        )
    if not path.is_file():
        raise ArtifactError(f"projector missing: {path}")
    projector = modality.build_projector(modality.feature_dim, d_llm)
    try:
        projector.load_state_dict(load_file(str(path)))
    except RuntimeError as exc:
        raise ArtifactError(f"{path} does not fit {modality.name!r}'s projector: {exc}") from None
    return projector.eval()


def check_transfer(folder: Path, meta: dict, modality: Modality, dataset: dict) -> None:
    """Refuse to apply an aligned ``modality`` from ``folder`` to a dataset it cannot transfer to.

    A transferable modality (text, a pretrained image encoder) may be used on any dataset.  One
    whose encoder is fitted to a dataset's item ids (``Modality.transferable = False``, e.g.
    behaviour) only fits the dataset it was aligned on: ``meta["sources"]`` must hold ``dataset``'s
    fingerprint (see ``Workspace.dataset_identity``).

    Raises:
        ArtifactError: naming the modality, where it was aligned, and what to do instead.
    """
    if modality.transferable:
        return
    sources = meta.get("sources") or []
    if any(s.get("fingerprint") == dataset.get("fingerprint") for s in sources):
        return
    where = ", ".join(s.get("name", "?") for s in sources) or "an unrecorded dataset"
    raise ArtifactError(
        f"{folder}: modality {modality.name!r} was aligned on {where}, not on this run's dataset "
        f"{dataset.get('name')!r}; its encoder is fitted to that dataset's item ids and does not transfer. "
        f"Align it here (`earec align --modality {modality.name}`) and compose it with the transferred "
        "adapters (`earec compose --adapter MODALITY=PATH`)")
