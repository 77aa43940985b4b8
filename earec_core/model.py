"""An aligned model ready for inference: backbone + (composed) adapter + modality projectors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .aligned import (check_adapter, check_transfer, folder_meta, folder_modalities, is_model_folder, load_projector,
                      meta_modalities, modality_parts)
from .errors import ArtifactError
from .modality import Modality


@dataclass
class AlignedModel:
    """``model`` (LoRA merged into the weights), the modalities in prompt order and their projectors."""

    model: nn.Module
    modalities: dict[str, Modality]
    projectors: dict[str, nn.Module]
    source: str


def is_folder_source(source: str) -> bool:
    """True if ``source`` names an aligned-model folder by path (``runs/src/adapters/text``,
    ``./model``) rather than by its name in the run."""
    return "/" in source or source.startswith(".")


def resolve(ws, source: str) -> tuple[Path | None, list[str]]:
    """``(adapter folder or None, modality names)`` for a source: a composition under
    ``RUN/compositions``, an aligned modality under ``RUN/adapters``, ``base:M1,M2`` for the
    un-aligned backbone with those modalities (fresh projectors; the "before alignment" state),
    or the path of an aligned-model folder made anywhere (another run, another dataset: transfer).

    Raises ArtifactError naming what exists if ``source`` is none of these.
    """
    folder, names = _locate(ws, source)
    return folder, folder_modalities(folder) if names is None else names


def _locate(ws, source: str) -> tuple[Path | None, list[str] | None]:
    """:func:`resolve` without reading the folder: names ``None`` means they are the folder's own
    (:func:`~earec_core.aligned.meta_modalities` of its meta)."""
    if source.startswith("base:"):
        return None, [m for m in source[5:].split(",") if m]
    if is_folder_source(source):
        path = Path(source).expanduser()
        if not is_model_folder(path):
            raise ArtifactError(f"{source} is not an aligned-model folder (it needs composition.json or modality.json: "
                                "a RUN/adapters/MODALITY or RUN/compositions/NAME folder)")
        return path.resolve(), None
    comp = ws.composition_dir(source)
    if not is_model_folder(comp) and "+" in source:
        # "behavior+text" finds the composition named "text+behavior" (same modalities)
        wanted = sorted(source.split("+"))
        for cand in ws.compositions_root.glob("*+*"):
            if sorted(cand.name.split("+")) == wanted and is_model_folder(cand):
                comp = cand
                break
    if is_model_folder(comp):
        return comp, None
    adapter = ws.adapter_dir(source)
    if is_model_folder(adapter):
        return adapter, [source]
    known = sorted(p.name for root in (ws.compositions_root, ws.adapters_root) for p in root.glob("*")
                   if p.is_dir() and not p.name.startswith("."))
    raise ArtifactError(f"no composition or aligned modality named {source!r} in {ws.dir} (found: {known or 'none'}); "
                        "a path to an aligned-model folder also works")


def load_aligned(ws, source: str, *, seed: int = 0) -> AlignedModel:
    """Backbone with ``source``'s adapter merged in (peft ``merge_and_unload``) and every
    modality's trained projector.  For ``base:…`` sources projectors are freshly initialised
    with ``seed``.

    Raises:
        ArtifactError: the adapter folder has no ``adapter_model.safetensors`` (pickled weights are
            never loaded), it was aligned on another base model / hidden size, or it holds a
            non-transferable modality (behaviour) aligned on another dataset than the run's.
    """
    from peft import PeftModel

    adapter, names = _locate(ws, source)
    meta = folder_meta(adapter) if adapter is not None else {}  # composition.json / modality.json, read once
    if names is None:
        names = meta_modalities(meta)
    parts = modality_parts(adapter, meta) if adapter is not None else {}
    if adapter is not None and not ws.owns(adapter):
        # a folder from elsewhere (the run's own were checked when they were composed), before any
        # encoder is fitted for a model that cannot be used here
        for m, (meta, _) in parts.items():
            check_transfer(adapter, meta, ws.registry.modality(m), ws.dataset_identity)
    modalities = {m: ws.modality(m) for m in names}
    model = ws.base_model()
    if adapter is not None:
        check_adapter(adapter, model, fingerprint=meta.get("base_config"))
        try:
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        except (RuntimeError, ValueError) as exc:
            raise ArtifactError(f"{adapter}: adapter does not fit backbone {ws.llm_path}: {exc}") from None
    d_llm = model.get_input_embeddings().weight.shape[1]
    projectors = {}
    gen = torch.random.fork_rng()
    with gen:
        torch.manual_seed(seed)
        for m, modality in modalities.items():
            if modality.placeholder is None:
                continue
            if adapter is None:
                projectors[m] = modality.build_projector(modality.feature_dim, d_llm).eval()
            else:
                meta, path = parts[m]
                projectors[m] = load_projector(path, meta, modality, d_llm)
    model.requires_grad_(False)
    return AlignedModel(model=model.eval(), modalities=modalities, projectors=projectors, source=source)
