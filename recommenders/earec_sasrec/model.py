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

    Item representation, one of three modes:

    * ID mode (``item_features is None``): a learned ``nn.Embedding(N + 1, H, padding_idx=0)``;
      the padding row is zero and receives no gradient (it is never part of a training logit).
    * frozen-feature (inductive) mode: ``item_features`` ``(N + 1, d)`` is a non-trainable buffer and
      an item's representation is ``Linear(d -> H)(features)`` (EARec's adaptor).  Row 0 is never read.
      As in the reference (``downstream/.../seqrec.py``) the adapted vectors get **no dropout of their
      own**: the only input dropout is the one after ``LayerNorm(item + position)``, and candidates
      are scored from the undropped table, in training as in evaluation.
    * transductive mode (``item_features`` given and ``transductive=True``): ``ID embedding +
      Linear(d -> H)(features)``, UniSRec's transductive setting (Hou et al. 2022, sec. 2.4):
      the ID table learns what the content misses, at the price of items unseen in training.

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
        transductive: bool = False,
    ):
        super().__init__()
        if transductive and item_features is None:
            raise ValueError("transductive mode adds an ID embedding to frozen item features: give item_features")
        self.n_items = n_items
        self.n_heads = n_heads
        self.max_len = max_len
        self.temperature = temperature
        self.item_emb: nn.Embedding | None = None
        self.adaptor: nn.Linear | None = None
        if item_features is None or transductive:
            self.item_emb = nn.Embedding(n_items + 1, hidden_size, padding_idx=0)
        if item_features is None:
            self.register_buffer("item_features", None)
        else:
            self.register_buffer("item_features", item_features.detach().float().clone())
            self.adaptor = nn.Linear(item_features.shape[1], hidden_size)
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
        """Representation of every item, padding included: ``(N + 1, H)``; the same in training and
        evaluation (no dropout: candidates are scored from this table)."""
        if self.adaptor is None:
            return self.item_emb.weight
        table = self.adaptor(self.item_features)
        return table if self.item_emb is None else table + self.item_emb.weight

    def item_rows(self, items: torch.Tensor) -> torch.Tensor:
        """Representation ``(..., H)`` of the items ``items`` ``(...)`` only: ``item_table()[items]``
        without adapting the whole table."""
        if self.adaptor is None:
            return self.item_emb(items)
        rows = self.adaptor(self.item_features[items])
        return rows if self.item_emb is None else rows + self.item_emb(items)

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

    def _embed(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Transformer input ``(B, L, H)`` and attention mask ``(B * n_heads, L, L)`` of ``seq`` ``(B, L)``."""
        if seq.shape[1] > self.max_len:
            raise ValueError(f"sequence length {seq.shape[1]} exceeds max_len {self.max_len}")
        mask = seq > 0
        positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0)  # 0 at the first real item
        # frozen features: adapt the (N + 1) table once, then gather (cheaper than adapting B x L wide rows)
        items = self.item_emb(seq) if self.adaptor is None else self.item_table()[seq]
        x = items * mask[..., None] + self.pos_emb(positions)
        return self.input_dropout(self.input_norm(x)), self._attention_mask(mask)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(B, L, H)`` of left-padded item sequences ``seq`` ``(B, L)``, ``L <= max_len``."""
        x, attn_mask = self._embed(seq)
        for layer in self.layers:
            x = layer(x, src_mask=attn_mask)
        return x

    # Scores factorise as user_side(hidden) @ item_side(table).T: the same two factors serve training
    # (logits, sampled_loss), score_all and the recommender's user_vectors / item_vectors, so scoring
    # in chunks from the vectors reproduces score_all exactly.

    def user_side(self, hidden: torch.Tensor) -> torch.Tensor:
        """The user factor of a score: ``hidden`` ``(..., H)``, or ``normalize(hidden) / temperature``."""
        if self.temperature is not None:
            return F.normalize(hidden, dim=-1) / self.temperature
        return hidden

    def item_side(self, table: torch.Tensor) -> torch.Tensor:
        """The item factor of a score: ``table`` ``(M, H)``, or its L2-normalised rows with a temperature."""
        if self.temperature is not None:
            return F.normalize(table, dim=-1)
        return table

    def logits(self, hidden: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Scores ``(..., M)`` of hidden states ``(..., H)`` against item rows ``table`` ``(M, H)``:
        inner products, or cosine / temperature if ``temperature`` is set."""
        return self.user_side(hidden) @ self.item_side(table).T

    def user_vectors(self, seq: torch.Tensor) -> torch.Tensor:
        """User vector ``(B, H)``: the hidden state at the last (newest) position of ``seq`` ``(B, L)``.

        Equal to ``forward(seq)[:, -1]``, but the last layer is run for the last query only (its keys and
        values still come from every position), which skips most of that layer's work at inference.
        """
        if not len(self.layers):
            return self.forward(seq)[:, -1]
        x, attn_mask = self._embed(seq)
        for layer in self.layers[:-1]:
            x = layer(x, src_mask=attn_mask)
        return self._last_query(self.layers[-1], x, attn_mask[:, -1:])[:, 0]

    @staticmethod
    def _last_query(layer: nn.TransformerEncoderLayer, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """``layer(x, src_mask)[:, -1:]`` computed for the last query only: ``(B, 1, H)``.

        Spells out ``nn.TransformerEncoderLayer``'s post-norm forward (``norm_first=False``) with the
        layer's own modules; ``attn_mask`` is the last query row ``(B * n_heads, 1, L)``.
        """
        query = x[:, -1:]
        attended = layer.self_attn(query, x, x, attn_mask=attn_mask, need_weights=False)[0]
        h = layer.norm1(query + layer.dropout1(attended))
        return layer.norm2(h + layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(h))))))

    def score_all(self, seq: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, N + 1)`` of every item for each sequence; column 0 (padding) is meaningless."""
        return self.logits(self.user_vectors(seq), self.item_table())

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Full-softmax cross-entropy over real items, averaged over every real target position.

        Args:
            inputs: ``(B, L)`` left-padded item sequences.
            targets: ``(B, L)`` next item at each position (``0`` where there is none: ignored).
            exclude: ``(N + 1,)`` bool, items left out of the softmax (the new items of an inductive
                split: they get no gradient at all); never a target.
        """
        hidden = self.forward(inputs)
        keep = targets > 0
        logits = self.logits(hidden[keep], self.item_table()[1:])  # (T, N): padding column left out
        if exclude is not None:
            logits = logits.masked_fill(exclude[1:][None, :], -torch.inf)
        return F.cross_entropy(logits, targets[keep] - 1)

    def sampled_loss(self, inputs: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
                     log_q: torch.Tensor | None = None, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Sampled-softmax cross-entropy with negatives shared by the whole batch.

        For each real target position with hidden state ``h`` and target ``y``, the softmax runs over
        ``{y} + negatives`` instead of all ``N`` items: with ``s_j`` the logit of item ``j`` (as in
        :meth:`logits`) and ``q_j`` its sampling probability,

            loss = -log( exp(s_y - log q_y) /
                         (exp(s_y - log q_y) + sum_{j in negatives, j != y} exp(s_j - log q_j)) )

        The ``- log q`` terms are the logQ correction (Jean et al. 2015; Yi et al. 2019): sampling item
        ``j`` with probability ``q_j`` over-represents popular items among the negatives; with ``M``
        negatives drawn with replacement, ``E[sum_{j in negatives} exp(s_j) / q_j] = M * sum_k exp(s_k)``,
        so the corrected negatives estimate the full softmax's denominator without that bias.  The
        positive gets the same correction (as in TensorFlow's ``sampled_softmax_loss``), so for uniform
        sampling, where ``q_j = 1 / N`` is one constant for every candidate, the correction cancels:
        ``log_q=None`` means "no correction".  A negative equal to the position's own target ("accidental
        hit") is left out of that position's denominator.

        Args:
            inputs: ``(B, L)`` left-padded item sequences.
            targets: ``(B, L)`` next item at each position (``0``: ignored).
            negatives: ``(M,)`` 1-based item indices, sampled with replacement, shared by every position.
            log_q: ``(N + 1,)`` log sampling probability of each item, or ``None`` (uniform sampling).
            exclude: ``(N + 1,)`` bool, items never used as negatives (as in :meth:`loss`).
        Returns:
            the mean loss over real target positions (a scalar).
        """
        hidden = self.forward(inputs)
        keep = targets > 0
        users = self.user_side(hidden[keep])                               # (T, H)
        positives = targets[keep]                                          # (T,)
        candidates = self.item_side(self.item_rows(torch.cat([positives, negatives])))
        pos_logits = (users * candidates[: len(positives)]).sum(dim=-1, keepdim=True)   # (T, 1)
        neg_logits = users @ candidates[len(positives):].T                 # (T, M)
        if log_q is not None:
            pos_logits = pos_logits - log_q[positives][:, None]
            neg_logits = neg_logits - log_q[negatives][None, :]
        neg_logits = neg_logits.masked_fill(negatives[None, :] == positives[:, None], -torch.inf)
        if exclude is not None:
            neg_logits = neg_logits.masked_fill(exclude[negatives][None, :], -torch.inf)
        logits = torch.cat([pos_logits, neg_logits], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(positives), dtype=torch.long, device=logits.device))


class MeanPoolNet(SASRecNet):
    """Causal mean pooling: the hidden state at position ``t`` is the mean of the (layer-normed)
    item vectors of the real items at positions ``<= t``; attention layers are not used."""

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(B, L, H)`` of left-padded item sequences ``seq`` ``(B, L)``."""
        mask = (seq > 0)[..., None].float()
        items = self.item_emb(seq) if self.adaptor is None else self.item_table()[seq]
        items = self.input_dropout(self.input_norm(items)) * mask
        return items.cumsum(dim=1) / mask.cumsum(dim=1).clamp(min=1.0)

    def user_vectors(self, seq: torch.Tensor) -> torch.Tensor:
        """User vector ``(B, H)``: the mean at the last position (no attention layers to shortcut)."""
        return self.forward(seq)[:, -1]
