"""An aligned model ready for inference: backbone + (composed) adapter + modality projectors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .aligned import check_adapter, load_projector
from .artifacts import read_json
from .errors import ArtifactError
from .modality import Modality


@dataclass
class AlignedModel:
    """``model`` (LoRA merged into the weights), the modalities in prompt order and their projectors."""

    model: nn.Module
    modalities: dict[str, Modality]
    projectors: dict[str, nn.Module]
    source: str


def resolve(ws, source: str) -> tuple[Path | None, list[str]]:
    """``(adapter folder or None, modality names)`` for a source name: a composition under
    ``RUN/compositions``, an aligned modality under ``RUN/adapters``, or ``base:M1,M2`` for the
    un-aligned backbone with those modalities (fresh projectors; the "before alignment" state).

    Raises ArtifactError naming what exists if ``source`` is none of these.
    """
    if source.startswith("base:"):
        return None, [m for m in source[5:].split(",") if m]
    comp = ws.composition_dir(source)
    if not (comp / "composition.json").is_file() and "+" in source:
        # "behavior+text" finds the composition named "text+behavior" (same modalities)
        wanted = sorted(source.split("+"))
        for cand in (ws.dir / "compositions").glob("*+*"):
            if sorted(cand.name.split("+")) == wanted and (cand / "composition.json").is_file():
                comp = cand
                break
    if (comp / "composition.json").is_file():
        return comp, read_json(comp / "composition.json")["modalities"]
    adapter = ws.adapter_dir(source)
    if (adapter / "modality.json").is_file():
        return adapter, [source]
    known = sorted(p.name for sub in ("compositions", "adapters") for p in (ws.dir / sub).glob("*")
                   if p.is_dir() and not p.name.startswith("."))
    raise ArtifactError(f"no composition or aligned modality named {source!r} in {ws.dir} (found: {known or 'none'})")


def load_aligned(ws, source: str, *, seed: int = 0) -> AlignedModel:
    """Backbone with ``source``'s adapter merged in (peft ``merge_and_unload``) and every
    modality's trained projector.  For ``base:…`` sources projectors are freshly initialised
    with ``seed``.

    Raises:
        ArtifactError: the adapter folder has no ``adapter_model.safetensors`` (pickled weights are
            never loaded), or it was aligned on another base model / hidden size.
    """
    from peft import PeftModel

    adapter, names = resolve(ws, source)
    model = ws.base_model()
    if adapter is not None:
        meta = adapter / ("composition.json" if (adapter / "composition.json").is_file() else "modality.json")
        check_adapter(adapter, model, fingerprint=read_json(meta).get("base_config"))
        try:
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        except (RuntimeError, ValueError) as exc:
            raise ArtifactError(f"{adapter}: adapter does not fit backbone {ws.llm_path}: {exc}") from None
    d_llm = model.get_input_embeddings().weight.shape[1]
    modalities = {m: ws.modality(m) for m in names}
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
                projectors[m] = load_projector(ws.adapter_dir(m), modality, d_llm)
    model.requires_grad_(False)
    return AlignedModel(model=model.eval(), modalities=modalities, projectors=projectors, source=source)
