"""A small audio encoder: log-mel ``(n_mels, frames)`` -> ``k`` tokens ``(k, dim)``.

Two 1-D convolutions over time (the second with stride 2), one transformer encoder layer, then
the time axis is average-pooled into ``k`` equal chunks.  Weights come from a seed
(deterministic) or from a safetensors checkpoint with the same architecture.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn


class AudioEncoder(nn.Module):
    def __init__(self, n_mels: int = 64, dim: int = 128, tokens: int = 8, heads: int = 4):
        super().__init__()
        self.config = {"n_mels": n_mels, "dim": dim, "tokens": tokens, "heads": heads}
        self.tokens = tokens
        self.norm_in = nn.LayerNorm(n_mels)
        self.conv1 = nn.Conv1d(n_mels, dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size=3, stride=2, padding=1)
        self.layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True,
                                                norm_first=True)
        self.norm_out = nn.LayerNorm(dim)

    @classmethod
    def from_seed(cls, seed: int, **config) -> AudioEncoder:
        """Deterministic random init: the same seed and config give the same weights anywhere."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(**config).eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path, **config) -> AudioEncoder:
        """Load a safetensors checkpoint (``save`` writes one; its metadata may carry the config).

        Raises ValueError when the file's tensors do not fit the configured architecture.
        """
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        if "config" in meta:
            config = {**json.loads(meta["config"]), **config}
        model = cls(**config)
        try:
            model.load_state_dict(load_file(str(path)))
        except RuntimeError as exc:
            raise ValueError(f"checkpoint {path} does not fit the audio encoder {model.config}: {exc}") from None
        return model.eval()

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path),
                  metadata={"config": json.dumps(self.config)})

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``(batch, n_mels, frames)`` -> ``(batch, tokens, dim)``."""
        x = self.norm_in(mel.transpose(1, 2)).transpose(1, 2)
        x = nn.functional.gelu(self.conv1(x))
        x = nn.functional.gelu(self.conv2(x))  # (b, dim, frames / 2)
        x = self.layer(x.transpose(1, 2))  # (b, frames / 2, dim)
        x = nn.functional.adaptive_avg_pool1d(x.transpose(1, 2), self.tokens).transpose(1, 2)
        return self.norm_out(x)
