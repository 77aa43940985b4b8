"""Loading what stage 1 wrote: a modality's projector and metadata, with compatibility checks."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from .artifacts import read_json
from .errors import ArtifactError
from .modality import Modality


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
