"""Training plumbing for SASRec: training windows, left padding, dataloaders and the LightningModule.

Training windows (the original SASRec's "all positions in one pass", not RecBole's augmentation):
a user's train sequence ``s_1..s_n`` is cut from the end backwards into windows of at most
``max_len + 1`` items; each window's input is its first ``max_len`` items and its targets the last
``max_len`` (``input = w[:-1]``, ``target = w[1:]``).  Window starts step back by ``max_len``, so
consecutive windows share one item (input-only in the newer window, the last target of the older):
the *targets* ``s_2..s_n`` are partitioned and every target is trained exactly once per epoch.

RecBole instead turns every prefix into its own sample (up to 50 items of context, loss on the last
position only), about ``max_len`` times more forward passes per epoch for the same targets.  Here the
early positions of a window see less context than RecBole gives them; in exchange an epoch is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import lightning as L
import torch
from torch.utils.data import DataLoader

from earec_core.metrics import evaluate, metrics_from_ranks

from .model import SASRecNet


def train_windows(sequences: Sequence[Sequence[int]], max_len: int) -> list[list[int]]:
    """Cut every sequence into windows of ``<= max_len + 1`` items from the end backwards.

    Window starts step back by ``max_len``, so windows overlap by one item and each target item
    (every item but a sequence's first) is a target in exactly one window.  Sequences with fewer
    than two items have no target and yield nothing.
    """
    windows = []
    for seq in sequences:
        seq = list(seq)
        end = len(seq)
        while end >= 2:
            start = max(0, end - max_len - 1)
            windows.append(seq[start:end])
            end = start + 1
    return windows


def left_pad(seqs: Sequence[Sequence[int]], length: int | None = None) -> torch.Tensor:
    """Left-pad with 0 to ``length`` (default: the longest) into a ``(B, length)`` long tensor.

    Sequences longer than ``length`` keep their last ``length`` items.  One ``index_put_`` for the
    whole batch (no per-row tensor).
    """
    if length is None:
        length = max((len(s) for s in seqs), default=1) or 1
    out = torch.zeros(len(seqs), length, dtype=torch.long)
    tails = [list(s)[-length:] for s in seqs] if length else []
    if tails:
        lengths = torch.tensor([len(t) for t in tails], dtype=torch.long)
        rows = torch.repeat_interleave(torch.arange(len(tails)), lengths)
        # column of each item: its position counted from the row's end
        ends = torch.cumsum(lengths, 0)
        cols = length - (ends[rows] - torch.arange(len(rows)))
        out.index_put_((rows, cols), torch.tensor(list(chain.from_iterable(tails)), dtype=torch.long))
    return out


def collate_windows(windows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows -> ``(inputs, targets)``, both ``(B, W - 1)`` with ``W`` the longest window; 0 = no target."""
    padded = left_pad(windows)
    return padded[:, :-1], padded[:, 1:]


def collate_examples(examples: list[tuple[list[int], int]]) -> list[tuple[list[int], int]]:
    """Validation batches stay lists of ``(history, target)``: the evaluator pads them itself."""
    return examples


class SequenceDataModule(L.LightningDataModule):
    """Training windows (shuffled) and validation examples (in order, ``eval_batch_size`` users a batch)."""

    def __init__(self, train: Sequence[Sequence[int]], valid: Sequence[tuple[list[int], int]],
                 max_len: int, batch_size: int, eval_batch_size: int):
        super().__init__()
        self.windows = train_windows(train, max_len)
        self.valid = list(valid)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.windows, batch_size=self.batch_size, shuffle=True, collate_fn=collate_windows)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.valid, batch_size=self.eval_batch_size, shuffle=False, collate_fn=collate_examples)


class SASRecLit(L.LightningModule):
    """Adam on the full- or sampled-softmax loss; each validation epoch ranks all items for every valid user.

    Args:
        loss: ``"full"`` (:meth:`SASRecNet.loss`) or ``"sampled"`` (:meth:`SASRecNet.sampled_loss` with
            ``n_negatives`` negatives drawn per training step and shared by the batch).
        item_counts: ``(N + 1,)`` item frequencies for popularity sampling with the logQ correction
            (negatives drawn with probability ``q_j = count_j / sum(count)``); ``None``: uniform over ``1..N``.
        exclude: 1-based items kept out of training (``SequenceSplits.new_items``): masked out of the
            full softmax and out of the sampled negatives, so they receive no gradient.
    Logs ``train/loss`` and ``val/HR@K`` / ``val/NDCG@K`` for each K in ``ks``; keeps the per-epoch
    validation metrics in ``history``.
    Raises:
        ValueError: unknown ``loss``, or ``item_counts`` of the wrong shape or without a positive count.
    """

    def __init__(self, net: SASRecNet, lr: float, weight_decay: float, ks: Sequence[int], *,
                 loss: str = "full", n_negatives: int = 100, item_counts: torch.Tensor | None = None,
                 exclude: Sequence[int] = ()):
        super().__init__()
        if loss not in ("full", "sampled"):
            raise ValueError(f"loss must be 'full' or 'sampled', got {loss!r}")
        self.net = net
        self.lr = lr
        self.weight_decay = weight_decay
        self.ks = tuple(ks)
        self.loss_kind = loss
        self.n_negatives = n_negatives
        self.sampling_probs: torch.Tensor | None = None
        self.log_q: torch.Tensor | None = None
        if item_counts is not None:
            counts = torch.as_tensor(item_counts, dtype=torch.float64)
            if counts.shape != (net.n_items + 1,) or not counts[1:].sum() > 0:
                raise ValueError(f"item_counts must have shape ({net.n_items + 1},) and a positive count, "
                                 f"got shape {tuple(counts.shape)}")
            counts[0] = 0
            probs = counts / counts.sum()
            self.sampling_probs = probs.float()
            self.log_q = probs.log().float()  # -inf for never-seen items: never sampled, never a target
        self.exclude: torch.Tensor | None = None
        if exclude:  # new items of an inductive split: no softmax column, never a negative
            self.exclude = torch.zeros(net.n_items + 1, dtype=torch.bool)
            self.exclude[torch.tensor(sorted(exclude), dtype=torch.long)] = True
        self.history: list[dict[str, float]] = []
        self._ranks: list[torch.Tensor] = []

    def sample_negatives(self) -> torch.Tensor:
        """``(n_negatives,)`` 1-based item indices, with replacement: uniform, or by ``item_counts``."""
        if self.sampling_probs is None:
            return torch.randint(1, self.net.n_items + 1, (self.n_negatives,), device=self.device)
        probs = self.sampling_probs.to(self.device)
        return torch.multinomial(probs, self.n_negatives, replacement=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, targets = batch
        exclude = None if self.exclude is None else self.exclude.to(self.device)
        if self.loss_kind == "sampled":
            log_q = None if self.log_q is None else self.log_q.to(self.device)
            loss = self.net.sampled_loss(inputs, targets, self.sample_negatives(), log_q, exclude)
        else:
            loss = self.net.loss(inputs, targets, exclude)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=inputs.shape[0])
        return loss

    def score(self, histories: list[list[int]]) -> torch.Tensor:
        """Scores ``(B, N + 1)`` for raw histories (the last ``max_len`` items of each are used)."""
        seq = left_pad(histories, min(self.net.max_len, max((len(h) for h in histories), default=1) or 1))
        return self.net.score_all(seq.to(self.device)).float().cpu()

    def validation_step(self, batch: list[tuple[list[int], int]], batch_idx: int) -> None:
        _, ranks = evaluate(self.score, batch, self.net.n_items, self.ks, batch_size=len(batch))
        self._ranks.append(ranks)

    def on_validation_epoch_end(self) -> None:
        metrics = metrics_from_ranks(torch.cat(self._ranks), self.ks)
        self._ranks.clear()
        self.history.append({"epoch": self.current_epoch, **metrics})
        for name, value in metrics.items():
            self.log(f"val/{name}", value, prog_bar=name.startswith("NDCG"))
