"""The SASRec network (EARec paper eqs. 6-8): item representation + positions -> causal transformer.

Shapes use ``B`` (batch), ``L`` (sequence length), ``H`` (hidden size), ``N`` (number of real items),
``d`` (width of frozen item features).  Item indices are 1-based; 0 is padding.  Sequences are
**left**-padded, so position ``L - 1`` always holds the newest item.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SASRecNet(nn.Module):
    """Self-attentive sequential recommender.

    Item representation, one of two modes:

    * ID mode (``item_features is None``): a learned ``nn.Embedding(N + 1, H, padding_idx=0)``;
      the padding row is zero and receives no gradient (it is never part of a training logit).
    * frozen-feature mode: ``item_features`` ``(N + 1, d)`` is a non-trainable buffer and an item's
      representation is ``dropout(Linear(d -> H)(features))`` (EARec's adaptor).  Row 0 is never read.

    Positions are counted from the first *real* item of each sequence (0, 1, 2, ...), so the amount
    of left padding changes nothing about the real positions.  Every query attends causally to the
    real keys at or before it, and always to itself (so a padded query row never sees an all-masked
    row and cannot produce NaN).

    If ``temperature`` is a float, user and item vectors are L2-normalised and their inner product is
    divided by it (cosine logits, as the EARec reference does with 0.07 on frozen LLM embeddings).
    """

    def __init__(
        self,
        n_items: int,
        hidden_size: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        inner_size: int = 256,
        dropout: float = 0.5,
        max_len: int = 50,
        item_features: torch.Tensor | None = None,
        temperature: float | None = None,
    ):
        super().__init__()
        self.n_items = n_items
        self.n_heads = n_heads
        self.max_len = max_len
        self.temperature = temperature
        if item_features is None:
            self.item_emb: nn.Embedding | None = nn.Embedding(n_items + 1, hidden_size, padding_idx=0)
            self.adaptor: nn.Linear | None = None
            self.register_buffer("item_features", None)
        else:
            self.item_emb = None
            self.register_buffer("item_features", item_features.detach().float().clone())
            self.adaptor = nn.Linear(item_features.shape[1], hidden_size)
        self.item_dropout = nn.Dropout(dropout)
        self.pos_emb = nn.Embedding(max_len, hidden_size)
        self.input_norm = nn.LayerNorm(hidden_size, eps=1e-12)
        self.input_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model=hidden_size,
                nhead=n_heads,
                dim_feedforward=inner_size,
                dropout=dropout,  # hidden and attention dropout alike (RecBole defaults: 0.5 / 0.5)
                activation="gelu",
                layer_norm_eps=1e-12,
                batch_first=True,
            )
            for _ in range(n_layers)
        )
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """RecBole's initialisation: N(0, 0.02) for linear and embedding weights, zero biases."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()

    def item_table(self) -> torch.Tensor:
        """Representation of every item, padding included: ``(N + 1, H)``."""
        if self.item_emb is not None:
            return self.item_emb.weight
        return self.item_dropout(self.adaptor(self.item_features))

    def _attention_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Float attention mask ``(B * n_heads, L, L)`` from the real-item mask ``(B, L)``.

        ``0`` where query ``i`` may attend key ``j`` (``j <= i`` and ``j`` real, or ``j == i``), ``-inf`` elsewhere.
        """
        L = mask.shape[1]
        causal = torch.ones(L, L, dtype=torch.bool, device=mask.device).tril()
        allowed = causal[None] & mask[:, None, :]
        allowed |= torch.eye(L, dtype=torch.bool, device=mask.device)[None]
        float_mask = torch.zeros(allowed.shape, device=mask.device).masked_fill(~allowed, float("-inf"))
        return float_mask.repeat_interleave(self.n_heads, dim=0)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(B, L, H)`` of left-padded item sequences ``seq`` ``(B, L)``, ``L <= max_len``."""
        if seq.shape[1] > self.max_len:
            raise ValueError(f"sequence length {seq.shape[1]} exceeds max_len {self.max_len}")
        mask = seq > 0
        positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0)  # 0 at the first real item
        if self.item_emb is not None:
            items = self.item_emb(seq)
        else:  # adapt the (N + 1) table once, then gather: cheaper than adapting B x L wide rows
            items = self.item_dropout(self.adaptor(self.item_features)[seq])
        x = items * mask[..., None] + self.pos_emb(positions)
        x = self.input_dropout(self.input_norm(x))
        attn_mask = self._attention_mask(mask)
        for layer in self.layers:
            x = layer(x, src_mask=attn_mask)
        return x

    def logits(self, hidden: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Scores ``(..., M)`` of hidden states ``(..., H)`` against item rows ``table`` ``(M, H)``."""
        if self.temperature is not None:
            hidden = F.normalize(hidden, dim=-1)
            table = F.normalize(table, dim=-1)
            return hidden @ table.T / self.temperature
        return hidden @ table.T

    def user_vectors(self, seq: torch.Tensor) -> torch.Tensor:
        """User vector ``(B, H)``: the hidden state at the last (newest) position of ``seq`` ``(B, L)``."""
        return self.forward(seq)[:, -1]

    def score_all(self, seq: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, N + 1)`` of every item for each sequence; column 0 (padding) is meaningless."""
        return self.logits(self.user_vectors(seq), self.item_table())

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Full-softmax cross-entropy over real items, averaged over every real target position.

        Args:
            inputs: ``(B, L)`` left-padded item sequences.
            targets: ``(B, L)`` next item at each position (``0`` where there is none: ignored).
        """
        hidden = self.forward(inputs)
        keep = targets > 0
        logits = self.logits(hidden[keep], self.item_table()[1:])  # (T, N): padding column left out
        return F.cross_entropy(logits, targets[keep] - 1)


class MeanPoolNet(SASRecNet):
    """Causal mean pooling: the hidden state at position ``t`` is the mean of the (layer-normed)
    item vectors of the real items at positions ``<= t``; attention layers are not used."""

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(B, L, H)`` of left-padded item sequences ``seq`` ``(B, L)``."""
        mask = (seq > 0)[..., None].float()
        if self.item_emb is not None:
            items = self.item_emb(seq)
        else:
            items = self.item_dropout(self.adaptor(self.item_features)[seq])
        items = self.input_dropout(self.input_norm(items)) * mask
        return items.cumsum(dim=1) / mask.cumsum(dim=1).clamp(min=1.0)
