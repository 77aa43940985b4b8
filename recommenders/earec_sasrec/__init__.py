"""EARec's built-in sequential recommender: SASRec on learned item IDs or on frozen item embeddings.

Registered through the ``earec`` entry point ``sasrec``, exactly like a third-party plugin.
The network is in :mod:`.model`, the training plumbing (windows, dataloaders, Lightning) in :mod:`.lit`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from earec_core.errors import ArtifactError, DataError, EarecError
from earec_core.hookspecs import hookimpl
from earec_core.metrics import DEFAULT_KS, evaluate
from earec_core.recommender import Recommender, SequenceSplits

from .lit import SASRecLit, SequenceDataModule, left_pad
from .model import MeanPoolNet, SASRecNet

__all__ = ["MeanPool", "SASRec", "SASRecNet"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_FORMAT = "earec-sasrec/1"
_NET_OPTIONS = ("hidden_size", "n_layers", "n_heads", "inner_size", "dropout", "max_len", "temperature")
LOSSES = ("full", "sampled")
NEGATIVE_SAMPLERS = ("uniform", "popularity")
_LENGTH_GROUP = 128  # users a forward pass in scoring (grouped by history length, to cut padding)


@hookimpl
def earec_register_recommenders(register):
    register(SASRec)
    register(MeanPool)


@contextlib.contextmanager
def _quiet_lightning(quiet: bool) -> Iterator[None]:
    """Silence Lightning's info lines and its "few dataloader workers" hint while ``quiet``."""
    if not quiet:
        yield
        return
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class SASRec(Recommender):
    """SASRec (EARec eqs. 6-8): causal self-attention over the item sequence, full- or sampled-softmax training.

    With ``item_embeddings`` given to :meth:`fit`, items are represented by a trainable
    ``Linear(d -> hidden_size)`` over the frozen features (EARec's downstream model; the reference
    also sets ``temperature=0.07``); without them, by a learned ID embedding table.

    Options (all keyword-only):
        hidden_size, n_layers, n_heads, inner_size: transformer sizes (64, 2, 2, 256).
        dropout: hidden and attention dropout (0.5, RecBole's default).
        max_len: the most recent items a user vector sees (50).
        lr, weight_decay: Adam (1e-3, 0.0).
        batch_size: training windows per batch (128); see :mod:`.lit` for how windows are cut.
        max_epochs, patience: early stopping on validation NDCG@10 (200, 10).
        temperature: ``None`` for plain inner-product logits, or a float: cosine logits / temperature.
        loss: ``"full"`` (default): softmax cross-entropy over all items; ``"sampled"``: sampled softmax
            over the target and ``n_negatives`` negatives shared by each training batch (the math is in
            :meth:`.model.SASRecNet.sampled_loss`) -- for catalogs too large for a full softmax.
        n_negatives: negatives per batch for ``loss="sampled"`` (100), drawn with replacement.
        negatives: ``"uniform"`` (default) over all items, or ``"popularity"``: proportional to each
            item's count in the training sequences, with the logQ correction.
        eval_batch_size: users scored at once in evaluation (256).
        ks: validation cutoffs (10, 50); the monitored metric is NDCG@10, so 10 must be one of them.
        threads: ``torch.set_num_threads`` value for fit (``None`` leaves torch's setting).
        transductive: on frozen item embeddings, add a learned ID embedding to the adapted features
            (UniSRec's transductive setting; ``False``, the default, is EARec's inductive model, which
            can score items never seen in training).  Ignored in ID mode.
    """

    name = "sasrec"
    description = "SASRec transformer (ID embeddings, or a linear adaptor over frozen item embeddings)"
    net_class = SASRecNet
    monitor = "NDCG@10"

    def __init__(
        self,
        *,
        hidden_size: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        inner_size: int = 256,
        dropout: float = 0.5,
        max_len: int = 50,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 128,
        max_epochs: int = 200,
        patience: int = 10,
        temperature: float | None = None,
        eval_batch_size: int = 256,
        ks: Sequence[int] = DEFAULT_KS,
        threads: int | None = None,
        loss: str = "full",
        n_negatives: int = 100,
        negatives: str = "uniform",
        transductive: bool = False,
    ):
        ks = tuple(int(k) for k in ks)
        super().__init__(
            hidden_size=hidden_size, n_layers=n_layers, n_heads=n_heads, inner_size=inner_size,
            dropout=dropout, max_len=max_len, lr=lr, weight_decay=weight_decay, batch_size=batch_size,
            max_epochs=max_epochs, patience=patience, temperature=temperature,
            eval_batch_size=eval_batch_size, ks=ks, threads=threads,
            loss=loss, n_negatives=n_negatives, negatives=negatives, transductive=transductive,
        )
        if not isinstance(transductive, bool):
            raise EarecError(f"sasrec: transductive must be true or false, got {transductive!r}")
        if hidden_size % n_heads:
            raise EarecError(f"sasrec: hidden_size ({hidden_size}) must be divisible by n_heads ({n_heads})")
        if int(self.monitor.split("@")[1]) not in ks:
            raise EarecError(f"sasrec: ks={list(ks)} must include 10, the K of the monitored {self.monitor}")
        if temperature is not None and not temperature > 0:
            raise EarecError(f"sasrec: temperature must be a positive float or None, got {temperature!r}")
        if loss not in LOSSES:
            raise EarecError(f"sasrec: loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if negatives not in NEGATIVE_SAMPLERS:
            raise EarecError(f"sasrec: negatives must be one of {', '.join(NEGATIVE_SAMPLERS)}, got {negatives!r}")
        if isinstance(n_negatives, bool) or not isinstance(n_negatives, int) or n_negatives < 1:
            raise EarecError(f"sasrec: n_negatives must be a positive integer, got {n_negatives!r}")
        self.net: SASRecNet | None = None
        self.n_items: int | None = None
        self.history: list[dict[str, float]] = []  # per-epoch validation metrics of the last fit

    # ------------------------------------------------------------------ building

    def _build(self, n_items: int, item_embeddings: torch.Tensor | None) -> SASRecNet:
        self.n_items = n_items
        transductive = bool(self.options.get("transductive")) and item_embeddings is not None
        self.net = self.net_class(n_items, item_features=item_embeddings, transductive=transductive,
                                  **{k: self.options[k] for k in _NET_OPTIONS})
        return self.net

    @staticmethod
    def _check_embeddings(item_embeddings, n_items: int) -> torch.Tensor:
        """Validate frozen features ``(n_items + 1, d)``; returns them as float32. Raises DataError."""
        emb = torch.as_tensor(item_embeddings)
        if emb.ndim != 2:
            raise DataError(f"item embeddings must be a 2-D (n_items + 1, d) table, got shape {tuple(emb.shape)}")
        if emb.shape[0] != n_items + 1:
            raise DataError(
                f"item embeddings have {emb.shape[0]} rows but the dataset has {n_items} items: expected "
                f"{n_items + 1} rows (row 0 is padding); were they extracted for another dataset?"
            )
        if not emb.is_floating_point():
            raise DataError(f"item embeddings must be floating point, got {emb.dtype}")
        emb = emb.float()
        bad = (~torch.isfinite(emb)).any(dim=1).nonzero().flatten()
        if len(bad):
            raise DataError(
                f"item embeddings contain NaN or Inf in {len(bad)} row(s), first item indices: {bad[:5].tolist()}"
            )
        return emb

    def _check_ks(self, n_items: int) -> None:
        too_big = [k for k in self.options["ks"] if k > n_items]
        if too_big:
            raise DataError(
                f"cutoff K={too_big} exceeds the number of items ({n_items}); pass smaller ks to sasrec"
            )

    # ------------------------------------------------------------------ training

    def fit(
        self,
        splits: SequenceSplits,
        item_embeddings: torch.Tensor | None = None,
        *,
        seed: int = 0,
        progress: bool = True,
        workdir: Path | None = None,
    ) -> dict[str, float]:
        """Train on ``splits.train`` with early stopping on validation NDCG@10 (``splits.test`` is never read).

        The best epoch's weights are checkpointed (weights only) under ``workdir`` (a temporary
        directory if ``None``), reloaded with ``torch.load(..., weights_only=True)``, and left in the
        model in eval mode.  Returns the best validation metrics (``HR@K``/``NDCG@K`` for each K).
        Raises DataError for bad embeddings, a K above the number of items, or no training targets.
        """
        import lightning as L
        from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

        opts = self.options
        n_items = splits.n_items
        self._check_ks(n_items)
        if item_embeddings is not None:
            item_embeddings = self._check_embeddings(item_embeddings, n_items)
        if not splits.valid:
            raise DataError("sasrec needs validation examples for early stopping, but splits.valid is empty")
        if opts["threads"]:
            torch.set_num_threads(int(opts["threads"]))
        L.seed_everything(seed, verbose=False)

        data = SequenceDataModule(splits.train, splits.valid, opts["max_len"], opts["batch_size"], opts["eval_batch_size"])
        if not data.windows:
            raise DataError("no training targets: every training sequence has fewer than 2 items")
        lit = SASRecLit(self._build(n_items, item_embeddings), opts["lr"], opts["weight_decay"], opts["ks"],
                        loss=opts["loss"], n_negatives=opts["n_negatives"],
                        item_counts=splits.train_item_counts() if opts["negatives"] == "popularity" else None,
                        exclude=splits.new_items)

        with contextlib.ExitStack() as stack:
            if workdir is None:
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="earec-sasrec-")))
            monitor = f"val/{self.monitor}"
            checkpoint = ModelCheckpoint(
                dirpath=workdir, filename="best", monitor=monitor, mode="max", save_top_k=1,
                save_weights_only=True, enable_version_counter=False,
            )
            stack.enter_context(_quiet_lightning(not progress))
            trainer = L.Trainer(
                max_epochs=opts["max_epochs"],
                callbacks=[EarlyStopping(monitor=monitor, mode="max", patience=opts["patience"]), checkpoint],
                logger=False,
                enable_progress_bar=progress,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                accelerator="auto",
                devices=1,
            )
            trainer.fit(lit, datamodule=data)
            if not checkpoint.best_model_path:  # e.g. interrupted before the first validation
                raise EarecError("sasrec: training stopped before the first validation; no weights to keep")
            state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        lit.load_state_dict(state)
        self.net = lit.net.cpu().eval()
        self.history = lit.history
        metrics, _ = evaluate(self.score, splits.valid, n_items, opts["ks"], opts["eval_batch_size"])
        return metrics

    # ------------------------------------------------------------------ inference

    def _require_net(self) -> SASRecNet:
        if self.net is None:
            raise EarecError("sasrec: the model is not trained; call fit() or SASRec.load() first")
        return self.net

    def score(self, histories: list[list[int]]) -> torch.Tensor:
        """Scores ``(len(histories), n_items + 1)`` from the last ``max_len`` items of each history (eval mode).

        Equal to ``user_vectors(histories) @ item_vectors().T``.  Raises DataError for an item index
        outside ``1..n_items``.
        """
        return self.user_vectors(histories) @ self.item_vectors().T

    def has_vectors(self) -> bool:
        """``True``: scores are inner products of :meth:`user_vectors` and :meth:`item_vectors`."""
        return True

    def user_vectors(self, histories: list[list[int]]) -> torch.Tensor:
        """User vectors ``(len(histories), hidden_size)`` (float32, CPU, eval mode) from the last ``max_len``
        items of each history; L2-normalised and divided by ``temperature`` if it is set.

        Histories are run in groups of ``_LENGTH_GROUP`` of similar length, each padded only to its
        longest (left padding does not change a user vector, so this only saves work).
        Raises DataError for an item index outside ``1..n_items``.
        """
        net = self._require_net()
        flat = torch.tensor(list(itertools.chain.from_iterable(histories)), dtype=torch.long)
        bad = flat[(flat < 1) | (flat > net.n_items)]
        if len(bad):
            raise DataError(f"history item index {bad[0].item()} is outside 1..{net.n_items} (the model's items)")
        lengths = [max(1, min(net.max_len, len(h))) for h in histories]
        order = sorted(range(len(histories)), key=lengths.__getitem__)
        out = torch.empty(len(histories), net.pos_emb.embedding_dim)
        device = next(net.parameters()).device
        with self._eval_mode(net), torch.no_grad():
            for start in range(0, len(order), _LENGTH_GROUP):
                rows = order[start : start + _LENGTH_GROUP]
                seq = left_pad([histories[r] for r in rows], lengths[rows[-1]]).to(device)
                out[rows] = net.user_side(net.user_vectors(seq)).float().cpu()
        return out

    def item_vectors(self) -> torch.Tensor:
        """Item vectors ``(n_items + 1, hidden_size)`` (float32, CPU, eval mode; row 0 = padding):
        the ID table or the adapted frozen features, L2-normalised if ``temperature`` is set.
        In ID mode without temperature this shares memory with the model's table: read it, never write."""
        net = self._require_net()
        with self._eval_mode(net), torch.no_grad():
            return net.item_side(net.item_table()).detach().float().cpu()

    @staticmethod
    @contextlib.contextmanager
    def _eval_mode(net: SASRecNet) -> Iterator[None]:
        """Dropout off while scoring; the previous train/eval mode is restored."""
        was_training = net.training
        net.eval()
        try:
            yield
        finally:
            net.train(was_training)

    def item_embedding_table(self) -> torch.Tensor | None:
        """The learned ID table ``(n_items + 1, hidden_size)`` (row 0 zeros); ``None`` on frozen embeddings
        (in the transductive mode too: there the ID table is only a residual over the content)."""
        net = self._require_net()
        if net.item_emb is None or net.adaptor is not None:
            return None
        return net.item_emb.weight.detach().cpu().clone()

    # ------------------------------------------------------------------ persistence

    def save(self, path_dir: str | Path) -> Path:
        """Write ``model.safetensors`` (all weights; frozen features included) and ``config.json``.

        The JSON holds the options, ``n_items`` and ``embedding_dim`` (``null`` in ID mode).
        Returns the directory.  Read it back with :meth:`SASRec.load`.
        """
        from safetensors.torch import save_file

        net = self._require_net()
        path_dir = Path(path_dir)
        path_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        save_file(state, str(path_dir / WEIGHTS_FILE), metadata={"format": _FORMAT})
        config = {
            "format": _FORMAT,
            "recommender": self.name,
            "n_items": self.n_items,
            "embedding_dim": None if net.item_features is None else int(net.item_features.shape[1]),
            "options": {**self.options, "ks": list(self.options["ks"])},
        }
        (path_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return path_dir

    @classmethod
    def load(cls, path_dir: str | Path) -> "SASRec":
        """A new, ready-to-score model (eval mode) from a directory written by :meth:`save`.

        Raises ArtifactError if the files are missing, of another format, or do not match each other.
        """
        from safetensors.torch import load_file

        path_dir = Path(path_dir)
        try:
            config = json.loads((path_dir / CONFIG_FILE).read_text())
            state = load_file(str(path_dir / WEIGHTS_FILE))
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot read a saved sasrec model from {path_dir}: {exc}") from exc
        if config.get("format") != _FORMAT:
            raise ArtifactError(f"{path_dir / CONFIG_FILE} is not a saved sasrec model (format {config.get('format')!r})")
        model = cls(**config["options"])
        n_items, dim = config["n_items"], config["embedding_dim"]
        features = None if dim is None else torch.zeros(n_items + 1, dim)
        net = model._build(n_items, features)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ArtifactError(f"weights in {path_dir / WEIGHTS_FILE} do not match its config: {exc}") from exc
        net.eval()
        return model


class MeanPool(SASRec):
    """A minimal second recommender: the user vector is the mean of the history's item vectors
    (no attention); same options, training, early stopping and evaluation as :class:`SASRec`
    (``n_layers``/``n_heads``/``inner_size`` are accepted and unused)."""

    name = "meanpool"
    description = "mean of the history's item vectors (ID embeddings or adaptor over frozen embeddings)"
    net_class = MeanPoolNet
