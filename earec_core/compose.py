"""Stage 2a: composing per-modality LoRA adapters into one (eq. 4 of the paper), with peft.

Modes — exactly what is weighted (λ_i the weights, normalised to Σλ=1 in ``param`` mode, A_i/B_i the LoRA factors of
adapter i in one layer, s_i = alpha_i / r_i its scaling, ΔW_i = s_i B_i A_i):

``param`` (the paper's θ = Σ λ_i θ_i, as the reference code does it)
    A = Σ λ_i √s_i A_i,  B = Σ λ_i √s_i B_i,  scaling 1, so
    ΔW = (Σ_i λ_i √s_i B_i)(Σ_j λ_j √s_j A_j) — includes cross terms B_i A_j.
    With equal scalings s this is s (Σ λ_i B_i)(Σ λ_j A_j), i.e. the A and B tensors summed
    separately with weights λ.  Done by peft's ``add_weighted_adapter(combination_type="linear")``
    with weights λ_i² (peft applies √(w_i s_i) to both factors).  Needs equal ranks and λ_i >= 0.
``delta``
    ΔW = Σ λ_i ΔW_i exactly (peft ``cat``: rank Σ r_i).  Any sign of λ.
``svd``
    ΔW = best rank-``svd_rank`` approximation of Σ λ_i ΔW_i (peft ``svd``).

Every modality's encoder and projector is kept as is; projectors (and each modality's
``modality.json``) are copied into the composition folder so it is self-contained.
"""

from __future__ import annotations

import math
from pathlib import Path

from .aligned import PROJECTOR, check_adapter, check_transfer, read_modality_meta, recorded_adapter_dir, write_composition
from .artifacts import MANIFEST, atomic_dir, file_hash, is_current, manifest_of, read_json
from .errors import ArtifactError, CompositionError

MODES = ("param", "delta", "svd")
COMPOSED = "default"  # peft saves the adapter named "default" at the folder's top level


def parse_weights(text: str) -> dict[str, float]:
    """``"text=0.5,behavior=0.5"`` -> ``{"text": 0.5, "behavior": 0.5}``.

    Raises CompositionError for a part that is not NAME=NUMBER, a name given twice, or no weights.
    """
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            if name.strip() in weights:
                raise CompositionError(f"weight for {name.strip()!r} given twice in {text!r}")
            weights[name.strip()] = float(value)
        except ValueError:
            raise CompositionError(f"bad weight {part!r}: expected NAME=NUMBER, e.g. text=0.5,behavior=0.5") from None
    if not weights:
        raise CompositionError("no weights given: expected e.g. text=0.5,behavior=0.5")
    return weights


def normalise_weights(weights: dict[str, float], mode: str) -> dict[str, float]:
    """The λ a mode uses: in ``param`` mode scaled to sum to 1 (eq. 4 requires Σλ = 1); in
    ``delta``/``svd`` mode used as given (task arithmetic: λ = (1, -1) subtracts an adapter).

    Raises CompositionError: unknown mode, non-finite weights, all-zero weights, or negative
    weights in ``param`` mode (the √ parametrisation cannot express them).
    """
    if mode not in MODES:
        raise CompositionError(f"unknown composition mode {mode!r}; choose one of {', '.join(MODES)}")
    if any(not math.isfinite(w) for w in weights.values()):
        raise CompositionError(f"weights must be finite numbers: {weights}")
    if mode == "param" and any(w < 0 for w in weights.values()):
        raise CompositionError("negative weights are not allowed in 'param' mode; use --mode delta for Σ λ_i ΔW_i")
    if all(w == 0 for w in weights.values()):
        raise CompositionError(f"all weights are zero: {weights}")
    if mode != "param":
        return dict(weights)
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()}


def compose(ws, weights: dict[str, float], *, mode: str = "param", name: str | None = None,
            svd_rank: int | None = None, force: bool = False, provenance: dict | None = None,
            adapters: dict[str, Path] | None = None) -> Path:
    """Compose the aligned adapters of ``weights``' modalities into ``RUN/compositions/NAME``.

    ``adapters`` takes a modality's aligned folder from elsewhere instead of ``RUN/adapters/M``
    (another run, another dataset: transfer); a modality that does not transfer (behaviour) is
    accepted from another folder only if it was aligned on this run's dataset.

    The result is a self-contained aligned-model folder: a peft adapter
    (``PeftModel.from_pretrained`` loads it), ``composition.json`` (raw and normalised λ, mode,
    every modality's ``modality.json`` and sources), ``projectors/`` and a model card ``README.md``.

    Raises:
        CompositionError: bad weights/mode, an adapter missing, adapters trained on different
            backbones (or on another backbone than the run's), an adapter folder without
            ``adapter_model.safetensors`` (pickled weights are never loaded), or ranks that the
            mode cannot combine.
    """
    from peft import PeftModel

    lambdas = normalise_weights(weights, mode)
    name = name or "+".join(weights)  # given order, as `earec run` names it
    out = ws.composition_dir(name)
    adapters = {m: Path(d).expanduser().resolve() for m, d in (adapters or {}).items()}
    unused = sorted(set(adapters) - set(lambdas))
    if unused:
        raise CompositionError(f"--adapter given for {unused}, which have no weight in {weights}")
    dirs = {m: adapters.get(m, ws.adapter_dir(m)) for m in lambdas}
    for m, d in dirs.items():
        if not (d / "adapter_config.json").is_file():
            raise CompositionError(f"modality {m!r} has no aligned adapter in {d}; run `earec align --modality {m} --run-dir {ws.dir}`, "
                                   f"or take one aligned elsewhere with --adapter {m}=PATH")
    metas = {m: read_modality_meta(d) for m, d in dirs.items()}
    for m, meta in metas.items():
        if meta.get("modality", m) != m:
            raise CompositionError(f"{dirs[m]} holds modality {meta['modality']!r}, not {m!r}")
        if m in adapters:
            try:
                check_transfer(dirs[m], meta, ws.registry.modality(m), ws.dataset_identity)
            except ArtifactError as exc:
                raise CompositionError(str(exc)) from None
    configs = {m: read_json(d / "adapter_config.json") for m, d in dirs.items()}
    bases = {meta["hidden_size"] for meta in metas.values()}
    if len(bases) > 1:
        raise CompositionError(f"adapters were aligned on backbones of different widths: { {m: x['hidden_size'] for m, x in metas.items()} }")
    fingerprints = {m: meta.get("base_config") for m, meta in metas.items()}
    known = [f for f in fingerprints.values() if f]
    if any(f != known[0] for f in known):
        raise CompositionError(f"adapters were aligned on different base models: {fingerprints}")
    ranks = {m: c["r"] for m, c in configs.items()}
    if mode == "param" and len(set(ranks.values())) > 1:
        raise CompositionError(f"'param' mode sums LoRA factors and needs equal ranks, got {ranks}; use --mode delta or svd")
    config = {"weights": lambdas, "mode": mode, "svd_rank": svd_rank}
    if provenance:  # e.g. {"parent": NAME, "added": {...}} from extend(); recorded in composition.json
        config["provenance"] = provenance
    manifest = manifest_of(out, "compose", config, {f"adapter:{m}": d for m, d in dirs.items()})
    if not force and is_current(out, manifest):
        return out

    model = ws.base_model()
    for m, d in dirs.items():
        check_adapter(d, model, fingerprint=fingerprints[m], error=CompositionError)
    names = list(lambdas)
    # peft names of the loaded adapters: never COMPOSED, even for a modality called "default"
    loaded = {m: f"modality_{m}" for m in names}
    try:
        peft_model = PeftModel.from_pretrained(model, str(dirs[names[0]]), adapter_name=loaded[names[0]])
        for m in names[1:]:
            peft_model.load_adapter(str(dirs[m]), adapter_name=loaded[m])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CompositionError(f"adapters do not fit the backbone {ws.llm_path}: {exc}") from None
    if mode == "param":
        peft_weights, combination = [lambdas[m] ** 2 for m in names], "linear"
    else:
        peft_weights, combination = [lambdas[m] for m in names], ("cat" if mode == "delta" else "svd")
    try:
        peft_model.add_weighted_adapter([loaded[m] for m in names], peft_weights, COMPOSED, combination_type=combination,
                                        svd_rank=svd_rank)
    except ValueError as exc:
        raise CompositionError(f"peft could not combine the adapters: {exc}") from None
    with atomic_dir(out, manifest) as tmp:
        info = {
            "name": name, "mode": mode, "weights_given": weights, "weights": lambdas,
            "peft_combination": combination, "peft_weights": dict(zip(names, peft_weights)),
            **(provenance or {}),
            "ranks": ranks, "modalities": names, "base_config": known[0] if known else None,
            "base_model": str(ws.llm_path), "adapters": {m: str(Path(d).resolve()) for m, d in dirs.items()},
            # each modality's own record (dimensions, recipe, sources), so the folder is self-contained
            "modality_meta": {m: {k: v for k, v in meta.items() if k != "train_log"} for m, meta in metas.items()},
        }
        projectors = {m: d / PROJECTOR for m, d in dirs.items() if (d / PROJECTOR).is_file()}
        write_composition(tmp, peft_model, COMPOSED, projectors, info)
    return out


def extend(ws, parent: str, added: dict[str, float], *, name: str | None = None, svd_rank: int | None = None,
           force: bool = False, adapters: dict[str, Path] | None = None) -> Path:
    """Add modalities to the existing composition ``parent`` (the paper's expansibility claim):
    with ``a = Σ added``, the new λ are ``λ_parent · (1 - a)`` for the parent's modalities plus
    ``added`` (normalised again in ``param`` mode; the parent's mode is kept).  Nothing of the
    parent or of any aligned modality is modified; the result is a new composition ``name``
    (default ``PARENT+M``) whose ``composition.json`` records ``parent`` and ``added``.

    ``added = {"audio": 0.0}`` reproduces the parent's adapter exactly.  The parent's modalities
    come from the folders the parent was composed from (also when those lie in another run);
    ``adapters`` may give an added modality's folder (an adapter aligned elsewhere).

    Raises:
        CompositionError: no composition ``parent``, an added modality already in it, or added
            weights outside ``[0, 1)`` in total.
    """
    pdir = ws.composition_dir(parent)
    if not (pdir / "composition.json").is_file():
        raise CompositionError(f"no composition named {parent!r} in {ws.compositions_root}; "
                               "compose it first with `earec compose --weights ...`")
    info = read_json(pdir / "composition.json")
    old = dict(info["weights"])
    again = sorted(set(added) & set(old))
    if again:
        raise CompositionError(f"{again} already in composition {parent!r}; use `earec compose --weights` to re-weight")
    parent_dirs = {m: recorded_adapter_dir(pdir, info, m) or ws.adapter_dir(m) for m in old}
    parent_inputs = read_json(pdir / MANIFEST).get("inputs", {}) if (pdir / MANIFEST).is_file() else {}
    for m in old:
        current = parent_dirs[m] / MANIFEST
        if f"adapter:{m}" in parent_inputs and (not current.is_file() or file_hash(current) != parent_inputs[f"adapter:{m}"]):
            raise CompositionError(f"modality {m!r} was re-aligned after composition {parent!r} was made; "
                                   "re-compose the parent first so the extension starts from the same adapters")
    total = sum(added.values())
    if any(not math.isfinite(w) or w < 0 for w in added.values()) or not 0 <= total < 1:
        raise CompositionError(f"added weights must be >= 0 and sum to less than 1, got {added}")
    weights = {m: w * (1 - total) for m, w in old.items()} | dict(added)
    name = name or "+".join([parent, *sorted(added)])
    elsewhere = {m: d for m, d in parent_dirs.items() if d.resolve() != ws.adapter_dir(m).resolve()}
    return compose(ws, weights, mode=info["mode"], name=name, svd_rank=svd_rank, force=force,
                   provenance={"parent": parent, "parent_weights": old, "added": dict(added)},
                   adapters={**elsewhere, **(adapters or {})})
