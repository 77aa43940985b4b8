"""Training a recommender plugin and evaluating it by full ranking, with cached results."""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .artifacts import atomic_dir, is_current, manifest_of, read_json, write_json
from .embstore import load_embeddings
from .errors import DataError, EarecError
from .metrics import DEFAULT_KS, evaluate
from .plugins import Registry, code_fingerprint
from .recommender import SequenceSplits


@dataclass
class RecResult:
    """Validation and test metrics of one trained recommender (plus its ID table, if any)."""

    valid: dict[str, float]
    test: dict[str, float]
    seconds: float
    item_table: torch.Tensor | None = None
    valid_ranks: torch.Tensor | None = None  # 0-based per-user ranks (splits order), for paired tests
    test_ranks: torch.Tensor | None = None
    # per-epoch validation metrics of the fit ({"epoch": e, "NDCG@10": …}), for learning curves; may be empty
    history: list[dict[str, float]] = field(default_factory=list)


def train_and_evaluate(
    registry: Registry,
    name: str,
    splits: SequenceSplits,
    item_embeddings: torch.Tensor | None,
    *,
    options: dict | None = None,
    seed: int = 0,
    progress: bool = True,
    workdir: Path | None = None,
    ks=DEFAULT_KS,
) -> RecResult:
    """Fit recommender ``name`` (early stopping on validation) and evaluate valid and test.

    Args:
        item_embeddings: frozen item features ``(n_items + 1, d)`` (row 0 zeros) or ``None`` for IDs.
    Raises:
        RecommenderNotFound: unknown ``name``.
        EarecError: an option the recommender does not accept (e.g. ``--rec-option notanoption=1``),
            naming the ones it does.
        DataError: the dataset has fewer items than a cutoff K of the evaluation (before training);
            ``options["ks"]`` (e.g. ``--rec-option ks=[5,10]``) sets the cutoffs.
    """
    cls = registry.recommender(name)
    if options and "ks" in options:  # --rec-option ks=[5,10]: the recommender's cutoffs are the evaluation's
        ks = tuple(options["ks"]) if isinstance(options["ks"], (list, tuple)) else (options["ks"],)
    too_big = [k for k in ks if k > splits.n_items]
    if too_big:
        raise DataError(f"the dataset has {splits.n_items} items, fewer than the evaluation cutoff K={too_big}: "
                        "full-ranking HR/NDCG@K needs at least K items; use a larger dataset or lower cutoffs, "
                        "e.g. --rec-option ks=[5,10]")
    rec = _construct(cls, name, options or {})
    start = time.perf_counter()
    rec.fit(splits, item_embeddings, seed=seed, progress=progress, workdir=workdir)
    seconds = time.perf_counter() - start
    valid, valid_ranks = evaluate(rec.score, splits.valid, splits.n_items, ks)
    test, test_ranks = evaluate(rec.score, splits.test, splits.n_items, ks)
    return RecResult(valid=valid, test=test, seconds=seconds, item_table=rec.item_embedding_table(),
                     valid_ranks=valid_ranks, test_ranks=test_ranks, history=list(getattr(rec, "history", None) or []))


def _construct(cls, name: str, options: dict):
    """``cls(**options)``, turning options the constructor's signature rejects into an EarecError."""
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        params = inspect.signature(cls).parameters.values()
        accepted = sorted(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        raise EarecError(f"recommender {name!r}: bad --rec-option ({exc}); "
                         f"its options are: {', '.join(accepted) or 'none'}") from None
    except ValueError:  # no introspectable signature: let the constructor decide
        pass
    try:
        return cls(**options)
    except TypeError as exc:
        raise EarecError(f"recommender {name!r} rejected options {options}: {exc}") from None


RANKS_FILES = {"valid": "valid_ranks.safetensors", "test": "test_ranks.safetensors"}
"""Per-user 0-based ranks (tensor ``ranks``, users in ``splits`` order) saved next to ``metrics.json``."""


def load_ranks(directory: Path, split: str = "test") -> torch.Tensor | None:
    """The per-user ranks a cached recommender result saved for ``split``, or ``None``."""
    path = Path(directory) / RANKS_FILES[split]
    return load_file(str(path))["ranks"] if path.is_file() else None


def _cached(directory: Path, manifest: dict, compute, *, need_ranks: bool = False) -> RecResult:
    """The cached result in ``directory`` if its manifest matches (and, with ``need_ranks``, it
    has per-user ranks: results cached before ranks were saved are recomputed), else ``compute()``."""
    if is_current(directory, manifest) and not (need_ranks and load_ranks(directory, "test") is None):
        m = read_json(directory / "metrics.json")
        table_path = directory / "item_table.safetensors"
        table = load_file(str(table_path))["table"] if table_path.is_file() else None
        return RecResult(valid=m["valid"], test=m["test"], seconds=m["seconds"], item_table=table,
                         valid_ranks=load_ranks(directory, "valid"), test_ranks=load_ranks(directory, "test"),
                         history=m.get("history", []))
    result = compute()
    with atomic_dir(directory, manifest) as tmp:
        write_json(tmp / "metrics.json", {"valid": result.valid, "test": result.test, "seconds": result.seconds,
                                          "epochs": len(result.history), "history": result.history})
        if result.item_table is not None:
            save_file({"table": result.item_table.contiguous()}, str(tmp / "item_table.safetensors"))
        for split, ranks in (("valid", result.valid_ranks), ("test", result.test_ranks)):
            if ranks is not None:
                save_file({"ranks": ranks.detach().cpu().to(torch.int64).contiguous()}, str(tmp / RANKS_FILES[split]))
    return result


def seed_label(label: str, seed: int, run_seed: int) -> str:
    """The result folder name of ``label`` trained with ``seed``: ``label`` itself for the run's
    seed, ``label~seedN`` for another (``earec study`` repeats a row over seeds)."""
    return label if seed == run_seed else f"{label}~seed{seed}"


def option_suffix(options: dict) -> str:
    """``{"lr": 0.003}`` -> ``~lr=0.003``: how a result folder's name says which recommender options
    it was trained with beyond the run's (values as compact JSON, text as is)."""
    return "".join(f"~{k}={v if isinstance(v, str) else json.dumps(v, separators=(',', ':'))}"
                   for k, v in options.items())


def id_folder(name: str, options: dict | None = None) -> str:
    """The result folder of ID recommender ``name`` trained with ``options`` beyond the run's:
    ``id-NAME``, or ``id-NAME~KEY=VALUE…`` (keys sorted) with options."""
    return f"id-{name}" + option_suffix(dict(sorted((options or {}).items())))


def id_baseline(ws, name: str = "sasrec", *, need_ranks: bool = False, seed: int | None = None,
                options: dict | None = None) -> RecResult:
    """The ID-based recommender of the run ``ws`` (a :class:`~earec_core.workspace.Workspace`; the
    "ID SASRec" baseline and the behaviour encoder), trained once and cached under ``RUN/recommend/id-NAME``; with another ``seed`` than the
    run's, under ``id-NAME~seedN`` (the behaviour encoder always uses the run's seed).

    ``options`` override the run's recommender options (``earec study --grid lr=…``); such a
    variant is cached under :func:`id_folder`'s ``id-NAME~KEY=VALUE…``.
    """
    splits = ws.dataset.splits  # loads the dataset first: its manifest is an input of this stage
    seed = ws["seed"] if seed is None else seed
    options = options or {}
    opts = {**ws["recommender_options"], **options}
    directory = ws.recommend_dir(seed_label(id_folder(name, options), seed, ws["seed"]))
    manifest = manifest_of(
        directory, "recommend", {"recommender": name, "options": opts, "seed": seed,
                                 "plugin": code_fingerprint(ws.registry.recommender(name))},
        {"dataset": ws.dataset_dir},
    )
    return _cached(
        directory,
        manifest,
        lambda: train_and_evaluate(ws.registry, name, splits, None, options=opts, seed=seed, progress=ws.progress),
        need_ranks=need_ranks,
    )


FEATURE_TRANSFORMS = ("none", "standardize", "whiten")


def check_feature_transform(how: str) -> str:
    """``how`` if it names a feature transform; raises EarecError naming the valid ones."""
    if how not in FEATURE_TRANSFORMS:
        raise EarecError(f"feature_transform must be one of {', '.join(FEATURE_TRANSFORMS)}, got {how!r}")
    return how


def transform_features(table: torch.Tensor, how: str = "whiten", eps: float = 1e-5) -> torch.Tensor:
    """Re-express frozen item features ``(n_items, d)`` before a recommender's adaptor sees them.

    * ``none``: as they are.
    * ``standardize``: per dimension, zero mean and unit variance.
    * ``whiten``: PCA whitening, ``(x - mean) V / (s / sqrt(n - 1))`` over the principal directions
      whose singular value ``s`` exceeds ``eps * s_max`` (null directions dropped, so the width may
      shrink).  LLM last-token states are highly anisotropic (a few massive dimensions, pairwise
      cosine near 1); whitening gives the linear adaptor a well-conditioned input.  It uses item
      features only, never interactions.

    Raises EarecError for an unknown ``how``.
    """
    check_feature_transform(how)
    x = table.double()
    if how == "none":
        return table.float()
    centred = x - x.mean(dim=0, keepdim=True)
    if how == "standardize":
        return (centred / centred.std(dim=0, keepdim=True).clamp_min(eps)).float()
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    keep = s > eps * s.max().clamp_min(torch.finfo(torch.float64).tiny)
    scale = s[keep] / max(x.shape[0] - 1, 1) ** 0.5
    return (centred @ vh[keep].T / scale).float()


def on_embeddings(ws, embeddings_dir: Path, name: str = "sasrec", label: str | None = None, options: dict | None = None,
                  *, need_ranks: bool = False, seed: int | None = None) -> RecResult:
    """Train recommender ``name`` on frozen item embeddings from ``embeddings_dir`` (see
    :mod:`earec_core.embed`) for the run ``ws``, cached under ``RUN/recommend/LABEL`` (``LABEL~seedN`` for a
    ``seed`` other than the run's).

    ``options`` may hold ``feature_transform`` (see :func:`transform_features`; taken out before
    the rest reach the recommender).
    """

    ws.dataset  # loads the dataset first: its manifest is an input of this stage
    seed = ws["seed"] if seed is None else seed
    label = label or embeddings_dir.name
    directory = ws.recommend_dir(seed_label(label, seed, ws["seed"]))
    opts = {**ws["recommender_options"], **(options or {})}
    manifest = manifest_of(
        directory, "recommend", {"recommender": name, "options": opts, "seed": seed,
                                 "plugin": code_fingerprint(ws.registry.recommender(name))},
        {"dataset": ws.dataset_dir, "embeddings": embeddings_dir},
    )
    rec_opts = dict(opts)
    how = check_feature_transform(rec_opts.pop("feature_transform", "none"))  # before any work

    def compute():
        table = transform_features(load_embeddings(embeddings_dir, ws.dataset.catalog.ids), how)
        padded = torch.cat([torch.zeros(1, table.shape[1]), table])
        return train_and_evaluate(
            ws.registry, name, ws.dataset.splits, padded, options=rec_opts, seed=seed, progress=ws.progress,
        )

    return _cached(directory, manifest, compute, need_ranks=need_ranks)
