"""λ search (the paper's Table 4): a grid on the simplex over the aligned modalities.

Every candidate λ is composed (:func:`earec_core.compose.compose`, named ``grid-t0.75-b0.25``)
and scored on *validation* data only:

``rouge``
    mean ROUGE-L F1 of the composed model's generations against the anchors of the held-out items
    (never trained on; the prompts hold every modality of the composition), as in
    :mod:`earec_core.explain`.
``ndcg``
    NDCG@10 on the *validation* split of the recommender trained on the candidate's item
    embeddings (:func:`earec_core.embed.embed` + :func:`earec_core.recommend.on_embeddings`).

The λ with the best score of the ``select`` criterion is chosen (ties: the earlier candidate of
the sweep).  Test metrics are recorded for the table but never used to choose.  The whole sweep
and the choice go to ``RUN/search/sweep.{json,md}``, written atomically with a manifest; every
candidate's composition, embeddings and recommender result are cached artifacts of their own,
so a repeated or extended search only computes what is new.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from .artifacts import atomic_dir, is_current, manifest_of, read_json, write_json, write_text
from .compose import compose, normalise_weights
from .data import alignment_items
from .embed import embed
from .errors import CompositionError, EarecError
from .explain import generate, rouge_l
from .model import load_aligned
from .recommend import on_embeddings
from .tables import sweep_markdown

CRITERIA = ("rouge", "ndcg")


def simplex_grid(modalities: Sequence[str], step: float) -> list[dict[str, float]]:
    """Every λ on the simplex whose entries are multiples of ``step``, first modality descending:
    ``(["text", "behavior"], 0.25)`` -> (1, 0), (0.75, 0.25), (0.5, 0.5), (0.25, 0.75), (0, 1).

    Raises CompositionError: fewer than two modalities, a modality twice, or ``step`` not of the
    form 1/n (0 < step <= 1).
    """
    modalities = list(modalities)
    if len(modalities) < 2:
        raise CompositionError(f"a λ search needs at least two aligned modalities, got {modalities}")
    if len(set(modalities)) != len(modalities):
        raise CompositionError(f"modality given twice: {modalities}")
    if not (isinstance(step, (int, float)) and math.isfinite(step) and 0 < step <= 1):
        raise CompositionError(f"step must be in (0, 1], got {step}")
    n = round(1 / step)
    if abs(n * step - 1) > 1e-6:
        raise CompositionError(f"step {step} does not divide 1 (use 1/n: 0.5, 0.25, 0.2, 0.1 …)")

    def parts(total: int, k: int):
        if k == 1:
            yield (total,)
            return
        for first in range(total, -1, -1):
            for rest in parts(total - first, k - 1):
                yield (first, *rest)

    return [{m: round(c / n, 10) for m, c in zip(modalities, combo)} for combo in parts(n, len(modalities))]


def default_candidates(modalities: Sequence[str]) -> list[dict[str, float]]:
    """The small λ set ``earec run`` chooses from on validation: uniform, then each modality
    dominant at 0.9 with the rest sharing 0.1 (the reference composes with text 0.05 /
    behaviour 0.9).  ``["text", "behavior"]`` -> (0.5, 0.5), (0.9, 0.1), (0.1, 0.9).

    Raises CompositionError for fewer than two modalities or a repeated one.
    """
    modalities = list(modalities)
    if len(modalities) < 2 or len(set(modalities)) != len(modalities):
        raise CompositionError(f"a λ choice needs at least two distinct modalities, got {modalities}")
    n = len(modalities)
    out = [{m: round(1 / n, 10) for m in modalities}]
    for top in modalities:
        out.append({m: 0.9 if m == top else round(0.1 / (n - 1), 10) for m in modalities})
    return out


def candidate_name(weights: dict[str, float]) -> str:
    """``{"text": 0.75, "behavior": 0.25}`` -> ``grid-t0.75-b0.25`` (full names if initials clash)."""
    initials = [m[0].lower() for m in weights]
    short = len(set(initials)) == len(initials)
    return "grid-" + "-".join(f"{m[0].lower() if short else m}{w:g}" for m, w in weights.items())


def aligned_modalities(ws) -> list[str]:
    """Modalities with an aligned adapter in the run, in the paper's order (T, V, B, A, then others)."""
    root = ws.adapters_root
    names = [d.name for d in root.glob("[!.]*") if (d / "modality.json").is_file()] if root.is_dir() else []
    order = {"text": 0, "vision": 1, "behavior": 2, "audio": 3}
    return sorted(names, key=lambda m: (order.get(m, 99), m))


def _rel(ws, path: Path) -> str:
    try:
        return str(Path(path).relative_to(ws.dir))
    except ValueError:
        return str(path)


def search_weights(ws, modalities: Sequence[str] | None = None, *, step: float = 0.25,
                   criteria: Sequence[str] = CRITERIA, select: str | None = None, mode: str = "param",
                   items: int = 32, holdout: int = 32, max_new_tokens: int = 24,
                   rec_options: dict | None = None, embed_batch_size: int = 16, precision: str = "auto",
                   force: bool = False, log: Callable[[str], None] | None = None,
                   candidates: Sequence[dict[str, float]] | None = None) -> dict:
    """Run (or reuse) the λ sweep and return the sweep dict also saved to ``RUN/search/sweep.json``.

    Args:
        modalities: which aligned modalities span the simplex (default: every aligned one).
        step: grid step (1/n).
        criteria: scores to compute per candidate (``rouge`` and/or ``ndcg``).
        select: the criterion to maximise (default ``ndcg`` if computed, else ``rouge``).
        items: held-out items scored by ROUGE-L (the first ``items`` of the ``holdout`` set).
        rec_options: recommender options for the sweep only, over the run's embedding options.
        candidates: an explicit list of λ (each over ``modalities``) instead of the grid of ``step``.
    Raises:
        CompositionError / EarecError: bad grid, unknown criterion, a modality not aligned.
    """
    log = log or (lambda _msg: None)
    modalities = list(modalities) if modalities else aligned_modalities(ws)
    criteria = tuple(dict.fromkeys(criteria))
    bad = [c for c in criteria if c not in CRITERIA]
    if bad or not criteria:
        raise EarecError(f"unknown search criterion {bad or criteria}; choose from {', '.join(CRITERIA)}")
    select = select or ("ndcg" if "ndcg" in criteria else "rouge")
    if select not in criteria:
        raise EarecError(f"cannot select on {select!r}: it is not among the computed criteria {list(criteria)}")
    missing = [m for m in modalities if not (ws.adapter_dir(m) / "modality.json").is_file()]
    if missing:
        raise CompositionError(f"modalities {missing} are not aligned in {ws.dir}; run `earec align --modality M` first")
    if candidates is not None:
        grid = [{m: float(w.get(m, 0.0)) for m in modalities} for w in candidates]
        if not grid:
            raise CompositionError("no λ candidates given")
    else:
        grid = simplex_grid(modalities, step)
    for w in grid:
        normalise_weights(w, mode)  # validates mode (and sums to 1 already)

    rec_opts = {**ws["embedding_recommender_options"], **(rec_options or {})}
    config = {"modalities": modalities, "step": None if candidates is not None else step,
              "candidates": grid if candidates is not None else None, "embed_anchor": bool(ws["embed_anchor"]),
              "criteria": list(criteria), "select": select, "mode": mode,
              "items": items, "holdout": holdout, "max_new_tokens": max_new_tokens, "recommender": ws["recommender"],
              "recommender_options": {**ws["recommender_options"], **rec_opts}, "seed": ws["seed"],
              "precision": precision, "llm": str(ws.llm_path), "max_length": ws["max_length"]}
    catalog = ws.dataset.catalog  # writes the dataset manifest first
    inputs = {"dataset": ws.dataset_dir, **{f"adapter:{m}": ws.adapter_dir(m) for m in modalities}}
    out = ws.search_dir
    manifest = manifest_of(out, "search", config, inputs)
    if not force and is_current(out, manifest) and (out / "sweep.json").is_file():
        return read_json(out / "sweep.json")

    _, held = alignment_items(catalog, ws["seed"], holdout, None)
    held = held[:items]
    anchors = {iid: catalog[iid].anchor for iid in held}
    rows = []
    for i, weights in enumerate(grid, 1):
        name = candidate_name(weights)
        log(f"[{i}/{len(grid)}] {name}")
        comp = compose(ws, weights, mode=mode, name=name)
        row: dict = {"name": name, "weights": weights, "composition": _rel(ws, comp / "composition.json"),
                     "sources": {}}
        if "rouge" in criteria:
            aligned = load_aligned(ws, name, seed=ws["seed"])
            gens = generate(aligned, ws.builder(aligned.modalities), catalog, held, max_new_tokens=max_new_tokens)
            del aligned
            scores = rouge_l(gens, anchors)
            row["valid_rougeL"] = sum(scores.values()) / max(1, len(scores))
            row["generations"] = gens
            row["sources"]["valid_rougeL"] = _rel(ws, out / "sweep.json")
        if "ndcg" in criteria:
            emb = embed(ws, name, batch_size=embed_batch_size, precision=precision)
            res = on_embeddings(ws, emb, ws["recommender"], label=emb.name, options=rec_opts)
            row["valid"], row["test"] = res.valid, res.test
            row["sources"]["valid"] = row["sources"]["test"] = f"recommend/{emb.name}/metrics.json"
            row["embeddings"] = _rel(ws, emb)
        rows.append(row)

    def score(r):
        return r["valid"]["NDCG@10"] if select == "ndcg" else r["valid_rougeL"]

    best = max(range(len(rows)), key=lambda j: (score(rows[j]), -j))
    chosen = {"name": rows[best]["name"], "weights": rows[best]["weights"],
              "criterion": "valid NDCG@10" if select == "ndcg" else "valid ROUGE-L", "value": score(rows[best])}
    sweep = {"config": config, "held_out_items": held, "candidates": rows, "chosen": chosen,
             "note": "selection uses validation data only; test metrics are reported, never used to choose"}
    with atomic_dir(out, manifest) as tmp:
        write_json(tmp / "sweep.json", sweep)
        write_text(tmp / "sweep.md", sweep_markdown(sweep))
    return sweep
