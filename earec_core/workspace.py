"""A *workspace* is one run directory: its settings (``run.json``), the dataset it was built
from, and every artifact the stages write::

    RUN/run.json                      settings shared by every command on this run
    RUN/dataset/                      stats.json, checks.json (earec check-data's findings) + manifest
    RUN/encoders/MODALITY/            fitted encoder state (e.g. the behaviour item table)
    RUN/recommend/id-sasrec/          ID baseline metrics + item table
    RUN/adapters/MODALITY/            stage 1: peft adapter + projector.safetensors + modality.json
    RUN/compositions/NAME/            stage 2: composed peft adapter + composition.json
    RUN/embeddings/NAME/              item_embeddings.safetensors (n_items, hidden), or shards + index
    RUN/recommend/NAME/               metrics of the recommender on those embeddings
    RUN/explain/                      ROUGE-L report and example generations
    RUN/search/                       λ sweep (sweep.{json,md}) of ``earec search-weights``
    RUN/report/                       ``earec report``: report.{md,json} + figures
    RUN/results.{json,md}             the final table
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path
from typing import Any

from .artifacts import atomic_dir, file_hash, is_current, manifest_of, read_json, write_bytes, write_json
from .backbone import DEFAULT_LLM, load_llm, load_tokenizer, resolve_llm
from .data import SHIPPED_DATASETS, Dataset, default_dataset_dir, load_dataset
from .data.atomic import read_dataset_files
from .data.check import check_dataset
from .errors import EarecError
from .modality import Modality, ModalityContext
from .plugins import Registry, code_fingerprint, registry
from .prompt import PromptBuilder
from .recommend import id_baseline

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "dataset": "ml-100k",
    "llm": DEFAULT_LLM,
    "seed": 0,
    "k_core": 5,
    "n_related": 3,
    "anchor_field": None,
    "modality_options": {},
    "recommender": "sasrec",
    "recommender_options": {},
    # the reference's cosine/temperature logits, on PCA-whitened LLM states (see recommend.transform_features)
    "embedding_recommender_options": {"temperature": 0.07, "feature_transform": "whiten"},
    "max_length": 256,
    "trust_remote_code": False,
    # stage 2 only: put each item's anchor ("Title: …") into its embedding prompt (never into stage 1)
    "embed_anchor": False,
    # stage 2: hidden-state indices whose last-position states are concatenated into the item embedding
    "embed_layers": [-1],
    # inductive split: this fraction of the items is held out of every training input (0: off)
    "new_items": 0.0,
    # sparse-data setting: only this fraction of the users keeps a training sequence (1: off)
    "train_users": 1.0,
}


class Workspace:
    """Settings and artifacts of one run directory.

    Settings given to the constructor override ``run.json`` and are saved back; anything not
    given comes from ``run.json`` or :data:`DEFAULTS`, so ``earec align`` after ``earec run``
    uses the run's own dataset, backbone and seed.
    """

    def __init__(self, run_dir: str | Path, *, progress: bool = True, **settings):
        self.dir = Path(run_dir)
        self.progress = progress
        self._created = not self.dir.exists()  # a failed first command removes the folder it made
        if self.dir.exists() and not self.dir.is_dir():
            raise EarecError(f"--run-dir {self.dir} is a file, not a folder")
        stored = self._read_stored()
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise EarecError(f"unknown workspace settings: {sorted(unknown)}")
        given = {k: v for k, v in settings.items() if v is not None}
        for key in ("dataset", "llm"):  # stored absolute, so the run works from any folder
            if key in given and given[key] not in (*SHIPPED_DATASETS, DEFAULT_LLM):
                given[key] = str(Path(given[key]).expanduser().resolve())
        if given.get("dataset") not in (None, *SHIPPED_DATASETS) and not Path(given["dataset"]).is_dir():
            raise EarecError(f"--dataset: dataset folder not found: {given['dataset']}")
        if given.get("llm") not in (None, DEFAULT_LLM):
            resolve_llm(given["llm"])  # refuse a bad --llm before it is saved into run.json
        for key in ("recommender_options", "embedding_recommender_options"):  # merged, not replaced
            if key in given:
                given[key] = {**stored.get(key, DEFAULTS[key]), **given[key]}
        if "modality_options" in given:  # checked against each modality's declaration, then merged
            for m, opts in given["modality_options"].items():
                registry().modality(m).check_options(opts)
            merged = {m: dict(o) for m, o in stored.get("modality_options", {}).items()}
            for m, opts in given["modality_options"].items():
                merged.setdefault(m, {}).update(opts)
            given["modality_options"] = merged
        self._refuse_backbone_change(stored, given)
        self.settings = {**DEFAULTS, **stored, **given}
        path = self.dir / "run.json"
        self._previous_settings = path.read_bytes() if path.is_file() else None
        write_json(path, self.settings)

    def _refuse_backbone_change(self, stored: dict, given: dict) -> None:
        """Adapters, compositions and embeddings are tied to the backbone they were made with: a
        run that has them must not silently switch ``--llm`` (every stage would re-run, or an
        adapter would meet another base model).  Raises EarecError naming both backbones."""
        old, new = stored.get("llm", DEFAULTS["llm"]), given.get("llm")
        if new is None or new == old:
            return
        built = self._built("adapters", "compositions", "embeddings")
        if built:
            raise EarecError(f"{self.dir} was built with the backbone {old} (its {', '.join(built)} belong to it); "
                             f"--llm {new} needs a new --run-dir (aligned folders from this run can be reused "
                             "only on the same backbone)")

    def _built(self, *kinds: str, pattern: str = "[!.]*") -> list[str]:
        """Those of the run's artifact folders ``kinds`` holding an entry that matches ``pattern``
        (by default unfinished ``.NAME-tmp`` writes do not count)."""
        return [d for d in kinds if any((self.dir / d).glob(pattern))]

    def rollback_settings(self) -> None:
        """Put ``run.json`` back as it was before this workspace was opened (a command that failed,
        e.g. on a bad ``--rec-option``, must not leave its settings behind for the next one)."""
        path = self.dir / "run.json"
        if self._previous_settings is None:
            path.unlink(missing_ok=True)
        else:
            write_bytes(path, self._previous_settings)
        if self._created:  # the run folder this workspace made, if nothing but empty folders is left in it
            for sub in sorted((p for p in self.dir.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                self.dir.rmdir()

    def _read_stored(self) -> dict:
        path = self.dir / "run.json"
        if not path.is_file():
            return {}
        try:
            stored = read_json(path)
        except (OSError, ValueError) as exc:
            raise EarecError(f"{path} is not valid JSON ({exc}); fix or delete it") from None
        if not isinstance(stored, dict):
            raise EarecError(f"{path} is not a JSON object; fix or delete it")
        return stored

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    # -- data -------------------------------------------------------------------------------------
    def _dataset_source(self) -> Path:
        src = self.settings["dataset"]
        return default_dataset_dir(src) if src in SHIPPED_DATASETS else Path(src)

    @functools.cached_property
    def dataset(self) -> Dataset:
        """The dataset, loaded and split; records stats and a manifest under ``RUN/dataset``."""
        inductive = {k: self[k] for k in ("new_items", "train_users") if self[k] != DEFAULTS[k]}
        if inductive:
            inductive["split_seed"] = self["seed"]
        source = self._dataset_source()
        # an atomic-file folder is read once: for the importer and, on first use, for the data check
        tables = read_dataset_files(source) if (source / f"{source.name}.inter").is_file() else None
        ds = load_dataset(
            self.settings["dataset"],
            anchor_field=self.settings["anchor_field"],
            k=self.settings["k_core"],
            n_related=self.settings["n_related"],
            tables=tables,
            **inductive,
        )
        files = {p.name: file_hash(p) for p in sorted(source.iterdir()) if p.suffix in (".inter", ".item", ".item2index", ".text")}
        cfg = {"source": str(source), "files": files, "k_core": self["k_core"], "n_related": self["n_related"],
               "anchor_field": self["anchor_field"], **inductive}
        manifest = {"stage": "dataset", "config": cfg, "inputs": {}}
        directory = self.dataset_dir
        if not is_current(directory, manifest) and not self._dataset_moved(directory, cfg):
            checks = check_dataset(source, anchor_field=self["anchor_field"], k=self["k_core"], tables=tables, loaded=ds)
            for finding in checks.warnings:  # said once, when the run first reads this dataset
                if finding.count:
                    log.warning("data check: %s: %d (e.g. %s)", finding.message, finding.count, "; ".join(finding.examples))
            with atomic_dir(directory, manifest) as tmp:
                write_json(tmp / "stats.json", ds.stats)
                write_json(tmp / "checks.json", checks.as_dict())
        return ds

    def _dataset_moved(self, directory: Path, cfg: dict) -> bool:
        """Compare ``cfg`` with the dataset setup the run recorded in ``directory``.

        Returns True if only the folder path differs: the same files (by hash) and settings read
        from elsewhere (a new virtual environment, a moved or copied run); the recorded manifest is
        kept, so every artifact built on it stays valid.  Returns False if nothing is recorded yet,
        or nothing is built on the recorded setup (the caller records ``cfg``).

        Raises EarecError naming what changed when adapters, compositions, embeddings or encoders
        were built on another setup (other items, other k-core, edited files): those artifacts
        would be mixed with the new catalog.
        """
        old_path = directory / "manifest.json"
        try:
            old = read_json(old_path)["config"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if not isinstance(old, dict):
            return False
        changed = sorted(k for k in set(old) | set(cfg) if old.get(k) != cfg.get(k))
        if changed == ["source"]:
            log.info("dataset %s: the same files as %s, which this run was built on; its artifacts stay valid",
                     cfg["source"], old["source"])
            return True
        built = self._built("adapters", "compositions", "embeddings", "encoders", pattern="*")
        if not built:
            return False
        raise EarecError(
            f"{self.dir} was built on another dataset setup ({', '.join(changed)} differ from "
            f"{old_path}; its {', '.join(built)} belong to that one). Use a new --run-dir for this dataset, "
            f"or pass the run's own settings (dataset {old.get('source')}, k-core {old.get('k_core')})")

    @functools.cached_property
    def dataset_identity(self) -> dict:
        """What an aligned model records about the dataset it was aligned on: name, source folder,
        sizes, and ``fingerprint`` (sha256 of ``RUN/dataset/manifest.json``: the files' hashes and
        the filtering settings), which tells a non-transferable modality whether it fits a run."""
        ds = self.dataset  # writes RUN/dataset/manifest.json when it is new
        return {"name": ds.name, "source": str(self._dataset_source()), "items": ds.stats.get("items"),
                "users": ds.stats.get("users"), "interactions": ds.stats.get("interactions"),
                "fingerprint": file_hash(self.dataset_dir / "manifest.json")}

    @functools.cached_property
    def registry(self) -> Registry:
        return registry()

    @functools.cached_property
    def context(self) -> ModalityContext:
        return ModalityContext(dataset=self.dataset, encoders_dir=self.encoders_root, seed=self["seed"],
                               progress=self.progress,
                               item_tables=lambda name: id_baseline(self, name).item_table)

    # -- modalities ------------------------------------------------------------------------------
    def modality(self, name: str) -> Modality:
        """Modality ``name`` with its encoder state fitted (``prepare``, once per run) and loaded.

        Raises ModalityNotFound for an unregistered name.
        """
        cls = self.registry.modality(name)
        self.dataset  # loads the dataset and writes RUN/dataset/manifest.json, an input of the encoder
        options = self["modality_options"].get(name, {})
        modality = cls(**options)
        directory = self.encoder_dir(name)
        # the plugin's code is part of the config: an edited encoder makes everything built on it stale
        manifest = manifest_of(directory, "encoder", {"modality": name, "options": options, "seed": self["seed"],
                                                      "plugin": code_fingerprint(cls)},
                               {"dataset": self.dataset_dir})
        if is_current(directory, manifest):
            modality.load(directory)
            return modality
        # A stale manifest must not outlive a prepare() killed half-way (it could then vouch for
        # half-written encoder files): drop it first, write the new one last.
        (directory / "manifest.json").unlink(missing_ok=True)
        facts = modality.prepare(self.context)
        write_json(directory / "facts.json", facts)
        write_json(directory / "manifest.json", manifest)
        return modality

    # -- backbone ----------------------------------------------------------------------------------
    @functools.cached_property
    def llm_path(self) -> Path:
        return resolve_llm(self["llm"])

    @functools.cached_property
    def tokenizer(self):
        return load_tokenizer(self.llm_path, trust_remote_code=self["trust_remote_code"])

    def base_model(self):
        """A fresh copy of the frozen backbone (each stage wraps its own with peft)."""

        return load_llm(self.llm_path, trust_remote_code=self["trust_remote_code"])

    def builder(self, modalities: dict[str, Modality], *, anchor_in_prompt: bool = False):
        """The prompt builder for ``modalities``; ``anchor_in_prompt`` only for stage-2 embeddings
        (see :class:`~earec_core.prompt.PromptBuilder`)."""

        return PromptBuilder(self.tokenizer, modalities, max_length=self["max_length"],
                             anchor_in_prompt=anchor_in_prompt)

    # -- paths: every folder and file of the run is named here ---------------------------------------
    @property
    def dataset_dir(self) -> Path:
        return self.dir / "dataset"

    @property
    def encoders_root(self) -> Path:
        return self.dir / "encoders"

    def encoder_dir(self, modality: str) -> Path:
        return self.encoders_root / modality  # = the modality context's artifact_dir(modality)

    def recommend_dir(self, label: str) -> Path:
        return self.dir / "recommend" / label

    def owns(self, path: Path) -> bool:
        """True if ``path`` lies inside this run's folder (an artifact of this run, not one from elsewhere)."""
        return self.dir.resolve() in Path(path).resolve().parents

    def study_dir(self, name: str | None = None) -> Path:
        return self.dir / ("study" if not name else f"study-{name}")

    @property
    def adapters_root(self) -> Path:
        """The folder of every aligned modality (``adapter_dir``); may not exist yet."""
        return self.dir / "adapters"

    def adapter_dir(self, modality: str) -> Path:
        return self.adapters_root / modality

    @property
    def compositions_root(self) -> Path:
        """The folder of every composition (``composition_dir``); may not exist yet."""
        return self.dir / "compositions"

    def composition_dir(self, name: str) -> Path:
        return self.compositions_root / name

    def embeddings_dir(self, name: str) -> Path:
        return self.dir / "embeddings" / name

    @property
    def explain_dir(self) -> Path:
        """``earec explain``'s report.{json,md}."""
        return self.dir / "explain"

    @property
    def generations_dir(self) -> Path:
        """The cached generations ``earec report`` scores ROUGE-L on."""
        return self.explain_dir / "generations"

    @property
    def search_dir(self) -> Path:
        """The λ sweep: sweep.{json,md}."""
        return self.dir / "search"

    @property
    def report_dir(self) -> Path:
        return self.dir / "report"

    def results_path(self, suffix: str) -> Path:
        """``RUN/results.json`` (``suffix="json"``) or ``RUN/results.md`` (``"md"``): ``earec run``'s table."""
        return self.dir / f"results.{suffix}"
