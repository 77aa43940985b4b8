"""``earec study``: the result tables a quality claim needs, over several seeds.

Each *row* is a recommender input: item IDs (the ID SASRec baseline), an embedding source of
the run (``text``, ``text+behavior``, ``base:text``, a λ-grid composition …), optionally with the
anchor in the stage-2 prompt (``@anchor``) and extra recommender options (``transductive=true``),
or ``minilm`` (SASRec_T on frozen all-MiniLM-L6-v2 sentence embeddings).  Every row is trained
once per seed (the seed drives the recommender's initialisation and batch order; the aligned
model and its embeddings are the run's), each result a cached artifact under
``RUN/recommend/LABEL~seedN``.  Reported, per row:

* test (and validation) HR/NDCG@10/50 as mean ± sd over the seeds;
* a paired t-test over users against the baseline row: per-user test NDCG@10, averaged over the
  seeds, ``scipy.stats.ttest_rel``;
* the same on *slices* of test users by the popularity of their target item (its number of
  occurrences in the training sequences, ≤ 5 and ≤ 20: the long tail where IDs are weak), and,
  on an inductive split (``--new-items``), by whether the target is a new item.

With ``grid`` (``earec study --grid lr=1e-3,3e-3``) every row is trained with every setting of
the grid and keeps, in the tables, the setting with the best mean validation NDCG@10 over the seeds
(the paper's protocol: the downstream learning rate and width searched on validation, per model);
every variant is listed in study.json's ``grid`` and the Markdown's grid table.

Nothing is chosen on test: the best EARec row is picked on mean validation NDCG@10.
Outputs: ``RUN/study/study.{json,md}`` and ``fig_slices.png``.
"""

from __future__ import annotations

import inspect
import itertools
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .artifacts import write_bytes, write_json, write_text
from .embed import embed
from .errors import EarecError
from .metrics import ndcg_at
from .recommend import id_baseline, id_folder, on_embeddings, option_suffix, seed_label
from .report import sentence_embeddings, ttest_rel
from .tables import METRIC_COLUMNS, study_markdown

DEFAULT_SLICES = (5, 20)
"""Long-tail slices: test users whose target occurs at most this often in the training sequences."""
COLUMNS = METRIC_COLUMNS


@dataclass
class Row:
    """One line of a study table.

    Attributes:
        label: the row's name in the table (and its result folders ``recommend/LABEL~seedN``).
        source: ``None`` for item IDs, ``"minilm"`` for SASRec_T, else an embedding source of the run.
        anchor: embed with the anchor in the stage-2 prompt.
        options: recommender options on top of the run's (e.g. ``{"transductive": True}``).
        layers: hidden-state indices concatenated into the item embedding (``None``: the run's).
    """

    label: str
    source: str | None = None
    anchor: bool = False
    options: dict = field(default_factory=dict)
    layers: tuple[int, ...] | None = None


def parse_row(spec: str) -> Row:
    """``"LABEL=SOURCE[@anchor][;KEY=VALUE…]"`` -> :class:`Row`; ``SOURCE`` ``ids`` means item IDs,
    ``minilm`` SASRec_T.  Values are read as JSON when they parse (``true``, ``0.07``), else as text.
    The key ``layers`` (``layers=[-1,-8]``) sets the embedding's hidden states; every other key is
    a recommender option.

    Raises EarecError for a spec without ``=`` or an option without ``=``.
    """
    label, sep, rest = spec.partition("=")
    if not sep or not label.strip() or not rest.strip():
        raise EarecError(f"bad --row {spec!r}: expected LABEL=SOURCE[@anchor][;KEY=VALUE...], "
                         "e.g. 'EARec_TB=text+behavior@anchor;transductive=true'")
    source, *opts = rest.split(";")
    source = source.strip()
    anchor = source.endswith("@anchor")
    source = source.removesuffix("@anchor")
    options = {}
    for opt in filter(None, (o.strip() for o in opts)):
        key, sep, value = opt.partition("=")
        if not sep:
            raise EarecError(f"bad option {opt!r} in --row {spec!r}: expected KEY=VALUE")
        options[key.strip()] = _value(value)
    layers = options.pop("layers", None)
    if layers is not None:
        layers = tuple(layers) if isinstance(layers, list) else (layers,)
        if not layers or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
            raise EarecError(f"bad layers in --row {spec!r}: expected integers, e.g. layers=[-1,-8]")
    return Row(label.strip(), None if source == "ids" else source, anchor, options, layers)


def _value(text: str):
    """An option value: JSON when it parses (``true``, ``0.07``, ``[-1,-8]``), else the stripped text."""
    try:
        return json.loads(text)
    except ValueError:
        return text.strip()


def default_rows(ws) -> list[Row]:
    """ID SASRec, SASRec_T (if MiniLM is installed), and the EARec rows of the run's results."""
    rows = [Row("ID SASRec"), Row("SASRec_T", "minilm")]
    mods = [m for m in ("text", "vision", "behavior", "audio") if (ws.adapter_dir(m) / "modality.json").is_file()]
    if "text" in mods:
        rows.append(Row("EARec_T", "text"))
    comp = "+".join(mods)
    if len(mods) > 1 and (ws.composition_dir(comp) / "composition.json").is_file():
        rows.append(Row("EARec_" + "".join(m[0].upper() for m in mods), comp))
    return rows


def target_popularity(splits) -> torch.Tensor:
    """``(n_users,)`` occurrences of each test user's target item in the training sequences."""
    return splits.train_item_counts()[torch.tensor([t for _, t in splits.test], dtype=torch.long)]


def _train(ws, row: Row, seed: int, embeddings: dict) -> tuple[dict, torch.Tensor]:
    """Fit (or reuse) ``row`` with ``seed``; returns its result dict and per-user test ranks."""
    rec = ws["recommender"]
    if row.source is None:
        res = id_baseline(ws, rec, need_ranks=True, seed=seed, options=row.options)
    else:
        key = (row.source, row.anchor, row.layers)
        if key not in embeddings:
            embeddings[key] = (sentence_embeddings(ws) if row.source == "minilm"
                               else embed(ws, row.source, anchor=row.anchor, layers=row.layers))
        opts = {**ws["embedding_recommender_options"], **row.options}
        res = on_embeddings(ws, embeddings[key], rec, label=row.label, options=opts, need_ranks=True, seed=seed)
    return {"valid": res.valid, "test": res.test, "seconds": res.seconds}, res.test_ranks


def _mean_sd(values: Sequence[float]) -> dict:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": list(values)}


def run_study(ws, rows: Sequence[Row] | None = None, seeds: Sequence[int] = (0, 1, 2), *,
              baseline: str | None = None, slices: Sequence[int] = DEFAULT_SLICES,
              log: Callable[[str], None] | None = None, name: str | None = None,
              grid: dict[str, list] | None = None) -> dict:
    """Train every row with every seed and write ``RUN/study`` (``RUN/study-NAME`` with ``name``,
    so several studies of one run sit side by side); returns study.json's dict.

    Args:
        rows: the rows (default :func:`default_rows`); labels must be unique.
        seeds: recommender seeds (at least one).
        baseline: the label every row is tested against (default: the first row).
        slices: popularity cut-offs of the long-tail slices.
        grid: recommender options to search per row (:func:`parse_grid`); each row keeps the setting
            with the best mean validation NDCG@10.
    Raises:
        EarecError: no seeds, duplicate labels, an unknown baseline, a bad ``name``.
    """
    log = log or (lambda _msg: None)
    if name is not None and (not name or not all(c.isalnum() or c in "-_." for c in name)):
        raise EarecError(f"study name {name!r}: use letters, digits, '-', '_' or '.'")
    rows = list(rows) if rows else default_rows(ws)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise EarecError("a study needs at least one seed")
    labels = [r.label for r in rows]
    if len(set(labels)) != len(labels):
        raise EarecError(f"row labels must be unique, got {labels}")
    baseline = baseline or labels[0]
    if baseline not in labels:
        raise EarecError(f"baseline {baseline!r} is not a row label ({', '.join(labels)})")
    splits = ws.dataset.splits
    popularity = target_popularity(splits)
    masks = {"all": torch.ones_like(popularity, dtype=torch.bool),
             **{f"target ≤ {k} train interactions": popularity <= k for k in slices}}
    if splits.new_items:  # inductive split: users whose test target is a new item (no ID model saw it)
        new = torch.tensor([t in splits.new_items for _, t in splits.test])
        masks["new-item targets"] = new
        masks["seen-item targets"] = ~new

    notes: list[str] = []
    embeddings: dict = {}
    table: dict[str, dict] = {}
    per_user: dict[str, torch.Tensor] = {}  # label -> (n_seeds, n_users) test NDCG@10
    grid_table: dict[str, dict] = {}  # row label -> {variant label: {setting, valid, test, chosen}}
    for row in rows:
        trained: dict[str, tuple[dict, dict, torch.Tensor]] = {}  # variant label -> (setting, entry, ndcgs)
        for setting, variant in grid_variants(row, grid or {}):
            runs, ndcgs = [], []
            # a setting that only restates the recommender's default trains (or reuses) the plain row
            fit = row if setting and _is_default(ws, row, setting) else variant
            for seed in seeds:
                log(f"study: {variant.label}, seed {seed}")
                try:
                    result, ranks = _train(ws, fit, seed, embeddings)
                except (EarecError, OSError, ImportError) as exc:
                    if row.source != "minilm":
                        raise
                    notes.append(f"{row.label} skipped: the sentence encoder could not be loaded offline ({exc})")
                    break
                runs.append(result)
                ndcgs.append(ndcg_at(ranks))
            if not runs:
                break
            entry = {
                "source": row.source, "anchor": row.anchor, "options": variant.options,
                "layers": list(row.layers) if row.layers else None,
                "folders": [f"recommend/{seed_label(_folder(ws, fit), s, ws['seed'])}" for s in seeds],
                "valid": {c: _mean_sd([r["valid"][c] for r in runs]) for c in COLUMNS},
                "test": {c: _mean_sd([r["test"][c] for r in runs]) for c in COLUMNS},
                "slices": {name: _mean_sd([n[mask].mean().item() for n in ndcgs]) for name, mask in masks.items()},
                "seconds": _mean_sd([r["seconds"] for r in runs]),
            }
            trained[variant.label] = (setting, entry, torch.stack(ndcgs))
        if not trained:
            continue
        chosen = max(trained, key=lambda lab: trained[lab][1]["valid"]["NDCG@10"]["mean"])
        setting, entry, ndcgs = trained[chosen]
        table[row.label] = {**entry, "setting": setting} if grid else entry
        per_user[row.label] = ndcgs
        if grid:
            grid_table[row.label] = {
                lab: {"setting": st, "valid NDCG@10": e["valid"]["NDCG@10"], "test NDCG@10": e["test"]["NDCG@10"],
                      "seconds": e["seconds"], "chosen": lab == chosen}
                for lab, (st, e, _) in trained.items()}
    if baseline not in table:
        raise EarecError(f"the baseline row {baseline!r} produced no result")
    for label, row in table.items():
        if label == baseline:
            continue
        a, b = per_user[label].double().mean(0), per_user[baseline].double().mean(0)
        row["vs_baseline"] = {name: {**_ttest(a[mask], b[mask]), "n_users": int(mask.sum())}
                              for name, mask in masks.items()}
    earec = [lab for lab in table if lab.startswith("EARec")]
    best = max(earec, key=lambda lab: table[lab]["valid"]["NDCG@10"]["mean"]) if earec else None
    study = {"dataset": ws.dataset.stats, "seeds": seeds, "baseline": baseline, "rows": table,
             "slice_sizes": {name: int(mask.sum()) for name, mask in masks.items()},
             "best_earec_by_valid": best, "notes": notes, "grid": grid_table or None,
             "method": "per-row mean ± sd over seeds; paired t-test (scipy.stats.ttest_rel) over test users of "
                       "per-user NDCG@10 averaged over seeds; rows chosen on validation only"
                       + ("; each row's grid setting chosen on mean validation NDCG@10" if grid else "")}
    out = ws.study_dir(name)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "study.json", study)
    md = study_markdown(study)
    figure = _figure(study, out / "fig_slices.png")
    if figure:
        md += f"\n![NDCG@10 per slice]({figure.name})\n"
    write_text(out / "study.md", md)
    study["markdown"] = md
    return study


def _is_default(ws, row: Row, setting: dict) -> bool:
    """True if every option of ``setting`` is one the row and the run leave at the recommender's
    constructor default, with that default's value: the variant *is* the plain row."""
    base = {**ws["recommender_options"], **(ws["embedding_recommender_options"] if row.source is not None else {}),
            **row.options}
    params = inspect.signature(ws.registry.recommender(ws["recommender"])).parameters
    return all(k not in base and k in params and params[k].default == v for k, v in setting.items())


def _folder(ws, row: Row) -> str:
    return row.label if row.source is not None else id_folder(ws["recommender"], row.options)


def parse_grid(specs: Sequence[str]) -> dict[str, list]:
    """``["lr=1e-3,3e-3", "hidden=64,128"]`` -> ``{"lr": [0.001, 0.003], "hidden": [64, 128]}``
    (values read as JSON when they parse, else as text).

    Raises EarecError for a spec without ``=``, an empty value list or a key given twice.
    """
    grid: dict[str, list] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not items:
            raise EarecError(f"bad --grid {spec!r}: expected KEY=V1,V2,..., e.g. lr=1e-3,3e-3")
        if key in grid:
            raise EarecError(f"--grid {key} is given twice")
        if key == "layers":
            raise EarecError("--grid layers is not supported: give each layer set its own --row")
        grid[key] = [_value(v) for v in items]
    return grid


def grid_variants(row: Row, grid: dict[str, list]) -> list[tuple[dict, Row]]:
    """Every setting of ``grid`` (the cartesian product) applied on top of ``row``'s options, as
    ``(setting, Row)`` pairs; the variant's label is ``LABEL~k=v~…`` (also its result folder).
    Without a grid, ``[({}, row)]``."""
    if not grid:
        return [({}, row)]
    out = []
    for values in itertools.product(*grid.values()):
        setting = dict(zip(grid, values))
        label = row.label + option_suffix(setting)
        out.append((setting, Row(label, row.source, row.anchor, {**row.options, **setting}, row.layers)))
    return out


def _ttest(a: torch.Tensor, b: torch.Tensor) -> dict:
    """:func:`earec_core.report.ttest_rel` on per-user NDCG values of a row (``a``) and the baseline (``b``)."""
    x, y = a.numpy(), b.numpy()
    tp = ttest_rel(x, y) if len(x) > 1 else None
    return {"mean_row": float(x.mean()), "mean_baseline": float(y.mean()), "diff": float(x.mean() - y.mean()),
            "t": tp and tp[0], "p": tp and tp[1]}


def _figure(study: dict, path: Path) -> Path | None:
    """Grouped bars: NDCG@10 per slice and row, error bars = sd over seeds."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import io

        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = study["rows"]
    names = list(study["slice_sizes"])
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(1.8 + 2.2 * len(names), 3.6))
    for i, (label, r) in enumerate(rows.items()):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [r["slices"][n]["mean"] for n in names], width, yerr=[r["slices"][n]["sd"] for n in names],
               label=label, capsize=2)
    ax.set_xticks(range(len(names)), [f"{n}\n({study['slice_sizes'][n]} users)" for n in names], fontsize=8)
    ax.set_ylabel("test NDCG@10")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"mean ± sd over seeds {', '.join(map(str, study['seeds']))}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    write_bytes(path, buf.getvalue())
    return path
