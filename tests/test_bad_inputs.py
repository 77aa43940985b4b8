"""Bad inputs, as ONE table: each row is an input a user can give EARec and what must happen.

Three kinds of expectation:

* ``cli_error(regex)``: through the real CLI (click's CliRunner on ``earec_core.cli.cli``) the
  command exits non-zero with exactly one ``Error: ...`` line matching ``regex`` and no traceback
  (an ``EarecError`` converted by ``EarecGroup``, never an unhandled exception);
* ``raises(Exc, regex)``: the public API raises that error;
* ``handled(what)``: documented handling (kept, skipped with a count, normalised); the row
  checks it itself and must not raise.

Everything runs on the tiny in-process Llama and small datasets written to ``tmp_path``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from earec_core import hookimpl, plugins
from earec_core.cli import cli
from earec_core.errors import DataError, EarecError
from earec_core.modality import Fragment, Modality

# --------------------------------------------------------------------------------- expectations


@dataclass
class cli_error:  # noqa: N801 - reads as a table column
    pattern: str


@dataclass
class raises:  # noqa: N801
    exc: type
    pattern: str


@dataclass
class handled:  # noqa: N801
    what: str


def assert_one_line_cli_error(result, pattern: str) -> None:
    out = result.output
    assert result.exit_code != 0, f"expected a failure, got exit 0:\n{out}"
    assert isinstance(result.exception, SystemExit), f"crashed with {result.exception!r} instead of an Error line:\n{out}"
    assert "Traceback" not in out, out
    lines = [line for line in out.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], f"expected one final 'Error:' line:\n{out}"
    assert re.search(pattern, errors[0]), f"{pattern!r} not in {errors[0]!r}"


# --------------------------------------------------------------------------------- environment

INTER_HEADER = "user_id:token\titem_id:token\ttimestamp:float"
ITEM_HEADER = "item_id:token\ttitle:token_seq\tyear:token\tgenre:token_seq"


class Env:
    """What a row may use: a temp folder, the tiny LLM, dataset writers, a prepared run."""

    def __init__(self, tmp_path: Path, tiny_llm_dir: Path, make_dataset, prepared_run: Path, tiny_model):
        self.tmp, self.llm, self._make, self._prepared, self._model = tmp_path, tiny_llm_dir, make_dataset, prepared_run, tiny_model
        self.run_dir = tmp_path / "run"

    # datasets
    def dataset(self, **kw) -> Path:
        return self._make(self.tmp, **kw)

    def write_dataset(self, inter: list[str], items: list[str], name: str = "d", *, inter_header=INTER_HEADER,
                      item_header=ITEM_HEADER) -> Path:
        d = self.tmp / name
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.inter").write_text("\n".join([inter_header, *inter]) + "\n", encoding="utf-8")
        (d / f"{name}.item").write_text("\n".join([item_header, *items]) + "\n", encoding="utf-8")
        return d

    # CLI
    def cli(self, *args, dataset: Path | None = None, k_core: int = 3):
        base = ["--run-dir", self.run_dir, "--llm", self.llm, "--quiet", "--k-core", k_core]
        if dataset is not None:
            base += ["--dataset", dataset]
        return CliRunner().invoke(cli, [str(a) for a in (*args, *base)])

    def cli_raw(self, *args):
        return CliRunner().invoke(cli, [str(a) for a in args])

    # a run whose dataset, ID SASRec and behaviour encoder are prepared (a private copy)
    def prepared(self) -> Path:
        shutil.copytree(self._prepared, self.run_dir)
        return self.run_dir

    def workspace(self, dataset: Path | None = None):
        from earec_core.workspace import Workspace

        return Workspace(self.run_dir, progress=False, llm=str(self.llm), dataset=str(dataset or self.dataset()),
                         k_core=3)

    # alignment samples of the text modality, run through the tiny LLM's loss
    def align_samples(self, ds, item_ids):
        from earec_core.align import anchor_loss
        from earec_core.prompt import build_samples
        from earec_core.backbone import load_tokenizer
        from earec_core.prompt import PromptBuilder, collate
        from earec_text import TextModality

        tok = load_tokenizer(self.llm)
        mods = {"text": TextModality()}
        samples, skipped = build_samples(PromptBuilder(tok, mods), ds.catalog, item_ids, with_answer=True,
                                         with_related=True)
        if samples:
            loss = anchor_loss(self._model, collate(samples, tok.pad_token_id), mods, {})
            assert torch.isfinite(loss), loss
        return samples, skipped


@pytest.fixture(scope="module")
def tiny_model(tiny_llm_dir):
    from earec_core.backbone import load_llm

    return load_llm(tiny_llm_dir)


@pytest.fixture(scope="module")
def prepared_run(tmp_path_factory, tiny_llm_dir, make_dataset):
    """dataset + ID SASRec (1 epoch) + behaviour encoder table, prepared once for the module."""
    from earec_core.workspace import Workspace

    root = tmp_path_factory.mktemp("prepared")
    data = make_dataset(root)
    ws = Workspace(root / "run", progress=False, llm=str(tiny_llm_dir), dataset=str(data), k_core=3,
                   recommender_options={"max_epochs": 1, "hidden_size": 16, "inner_size": 32})
    ws.modality("behavior")
    assert (root / "run" / "encoders" / "behavior" / "manifest.json").is_file()
    return root / "run"


@pytest.fixture
def env(tmp_path, tiny_llm_dir, make_dataset, prepared_run, tiny_model):
    plugins.reload_plugins()
    yield Env(tmp_path, tiny_llm_dir, make_dataset, prepared_run, tiny_model)
    plugins.reload_plugins()


# --------------------------------------------------------------------------------- row helpers

WEIRD_TITLES = {
    "empty": "",
    "whitespace": "   \u3000  ",
    "emoji": "🎬 Amélie 👩‍❤️‍👨 ✨",
    "rtl": "فيلم \u202eעברית\u202c سينما",
    "placeholder": "The <behavior> of <text> <image>",
    "10k": "Lorem ipsum dolor sit amet " * 371,  # ~10k characters
}


def titles_row(kind: str):
    def row(env):
        from earec_core.data import load_dataset

        title = WEIRD_TITLES[kind]
        ds = load_dataset(env.dataset(titles={"i0": title, "i1": title}), k=3)
        item = ds.catalog["i0"]
        assert item.anchor == " ".join(title.split())  # whitespace-normalised, otherwise verbatim
        samples, skipped = env.align_samples(ds, ["i0", "i1", "i2"])
        if kind in ("empty", "whitespace"):
            assert ds.stats["items_without_anchor"] == 2
            assert len(samples) == 1 and sum(skipped.values()) == 2 and any("empty anchor" in r for r in skipped)
        elif kind == "10k":
            assert len(samples) == 1 and sum(skipped.values()) == 2, skipped  # over the token budget: counted
        else:
            assert len(samples) == 3 and not skipped
            assert all(s.slots == [] for s in samples)  # a placeholder in a title never becomes a slot
    return row


def titles_through_align(env):
    kinds = list(WEIRD_TITLES)
    data = env.dataset(titles={f"i{i}": WEIRD_TITLES[kinds[i % len(kinds)]] for i in range(60)})
    r = env.cli("align", "--modality", "text", "--align-items", "all", "--batch-size", "8", "--epochs", "1",
                dataset=data)
    assert r.exit_code == 0, r.output
    log = json.loads((env.run_dir / "adapters" / "text" / "modality.json").read_text())["train_log"]
    assert log["samples"] > 0 and sum(log["skipped"].values()) > 0
    assert all(math.isfinite(x) for x in log["loss"])


def unknown_items_counted(env):
    from earec_core.data import load_dataset

    data = env.dataset()
    inter = data / f"{data.name}.inter"
    inter.write_text(inter.read_text() + "u1\tghost\t4\t5000\nu2\tghost2\t4\t5001\n")
    ds = load_dataset(data, k=3)
    assert ds.stats["interactions_unknown_item"] == 2 and "ghost" not in ds.catalog


def catalog_item_without_interactions(env):
    from earec_core.data import load_dataset

    data = env.dataset()
    item = data / f"{data.name}.item"
    item.write_text(item.read_text() + "lonely\tNobody watched this\t1999\tDrama\n")
    ds = load_dataset(data, k=3)
    assert "lonely" not in ds.catalog and len(ds.catalog) == ds.stats["items"]


def duplicates_and_ties(env):
    from earec_core.data import load_dataset

    items = [f"i{i}\tMovie {i}\t2000\tDrama" for i in range(6)]
    # u0: every interaction at the same timestamp, file order i3 i1 i4 i0 i2, with i1 duplicated
    inter = [f"u0\ti{i}\t7" for i in (3, 1, 1, 4, 0, 2)]
    inter += [f"u{u}\ti{i}\t{10 * i}" for u in (1, 2, 3) for i in range(6)]
    ds = load_dataset(env.write_dataset(inter, items), k=3)
    u0 = ds.users.index("u0")
    seq = [*ds.splits.test[u0][0], ds.splits.test[u0][1]]
    assert [ds.catalog.items[i - 1].id for i in seq] == ["i3", "i1", "i1", "i4", "i0", "i2"]
    assert ds.stats["interactions"] == 6 + 18  # the duplicate is kept as a repeat consumption


def k_core_cascade(env):
    # items a, b have 3 users each; x1..x3 one each. Pass 1 drops x*, pass 2 every user (2 left).
    items = [f"{i}\tMovie {i}\t2000\tDrama" for i in ("a", "b", "x1", "x2", "x3")]
    inter = [f"u{u}\t{i}\t{t}" for u in (1, 2, 3) for t, i in enumerate(("a", "b", f"x{u}"))]
    return env.cli("prepare", dataset=env.write_dataset(inter, items), k_core=3)


def too_short_for_leave_one_out(env):
    items = [f"i{i}\tMovie {i}\t2000\tDrama" for i in range(4)]
    inter = [f"u{u}\ti{(u + t) % 4}\t{t}" for u in range(5) for t in range(2)]
    return env.cli("prepare", dataset=env.write_dataset(inter, items), k_core=0)


def non_utf8(env):
    data = env.dataset()
    item = data / f"{data.name}.item"
    item.write_bytes(item.read_bytes() + "i999\tCaf\xe9 latin-1\t2000\tDrama\n".encode("latin-1"))
    return env.cli("prepare", dataset=data)


def all_items_unknown(env):
    items = ["x\tSomething\t2000\tDrama"]
    inter = [f"u{u}\ti{t}\t{t}" for u in range(3) for t in range(5)]
    return env.cli("prepare", dataset=env.write_dataset(inter, items))


def ragged_row(env):
    data = env.dataset()
    inter = data / f"{data.name}.inter"
    inter.write_text(inter.read_text() + "u1\ti1\t4\t5000\textra\n")
    return env.cli("prepare", dataset=data)


def bad_timestamp(env):
    items = [f"i{i}\tMovie {i}\t2000\tDrama" for i in range(3)]
    return env.cli("prepare", dataset=env.write_dataset(["u1\ti1\tyesterday"], items))


def non_finite_timestamp(value: str):
    def row(env):
        items = [f"i{i}\tMovie {i}\t2000\tDrama" for i in range(3)]
        return env.cli("prepare", dataset=env.write_dataset(["u1\ti0\t1", "", "u1\ti1\t" + value], items))
    return row


def header_only_interactions(env):
    items = [f"i{i}\tMovie {i}\t2000\tDrama" for i in range(3)]
    return env.cli("prepare", dataset=env.write_dataset([], items))


def duplicate_item_definition(env):
    data = env.dataset()
    item = data / f"{data.name}.item"
    item.write_text(item.read_text() + "i1\tA second title for i1\t1999\tDrama\n")
    result = env.cli("prepare", "--rec-option", "max_epochs=1", dataset=data)
    assert result.exit_code == 0, result.output
    stats = json.loads((env.run_dir / "dataset" / "stats.json").read_text())
    assert stats["item_ids_duplicated"] == 1
    checks = json.loads((env.run_dir / "dataset" / "checks.json").read_text())
    assert [f["count"] for f in checks["warnings"] if f["kind"] == "duplicate_item_id"] == [1]
    return result


def check_data_on_a_broken_copy(env):
    items = [f"i{i}\tMovie {i}\t2000\tDrama" for i in range(3)]
    return env.cli_raw("check-data", "--dataset", env.write_dataset(["u1\ti0\tnan", "u1\ti1\tsoon"], items))


def undeclared_modality_option(env):
    return env.cli("prepare", "--modality-option", "behavior.n_relatd=2", dataset=env.dataset())


def modality_called_default(env):
    env.workspace()
    make_adapter(env, "default", seed=1)
    make_adapter(env, "text", seed=2)
    result = env.cli("compose", "--weights", "default=0.5,text=0.5", "--mode", "delta")
    assert (env.run_dir / "compositions" / "default+text" / "composition.json").is_file(), result.output
    return result


def backbone_switched_under_adapters(env):
    env.workspace()
    make_adapter(env, "text")
    other = env.tmp / "same-llm-elsewhere"
    shutil.copytree(env.llm, other)
    return env.cli_raw("embed", "base:text", "--run-dir", env.run_dir, "--llm", other, "--quiet")


def missing_item_file(env):
    data = env.dataset()
    (data / f"{data.name}.item").unlink()
    return env.cli("prepare", dataset=data)


def item_without_any_modality(env):
    data = env.dataset()
    item = data / f"{data.name}.item"
    lines = item.read_text().splitlines()
    lines[1] = "i0\tMovie number 0\t\t"  # no year, no genre: nothing for the text modality
    item.write_text("\n".join(lines) + "\n")
    r = env.cli("embed", "base:text", "--precision", "fp32", dataset=data)
    assert r.exit_code == 0, r.output
    from earec_core.embed import load_embeddings

    emb = load_embeddings(env.run_dir / "embeddings" / "base-text")
    assert torch.isfinite(emb).all()  # the bare prompt's embedding, like every other row finite


# behaviour encoder table ------------------------------------------------------------------------


def behaviour_table(kind: str):
    def row(env):
        run = env.prepared()
        path = run / "encoders" / "behavior" / "item_embeddings.safetensors"
        table = load_file(str(path))["table"]
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata()
        if kind == "nan":
            table[3, 0] = float("nan")
        elif kind == "inf":
            table[0, 1] = float("inf")
        elif kind == "1d":
            table = table.flatten()
        elif kind == "rows":
            table = table[:-2]
        if kind == "no-ids":
            save_file({"table": table}, str(path))
        elif kind == "garbage":
            path.write_bytes(b"\x80\x04not a safetensors file")
        else:
            save_file({"table": table.contiguous()}, str(path), metadata=meta)
        return env.cli_raw("align", "--run-dir", run, "--modality", "behavior", "--quiet")
    return row


# adapters and compositions ----------------------------------------------------------------------


def llama(hidden=64, layers=2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=hidden, intermediate_size=2 * hidden,
                                        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2))


def make_adapter(env, name, *, model=None, base=None, r=4, fingerprint=True, seed=1):
    """A peft adapter for ``model`` (default: the run's tiny LLM) under RUN/adapters/NAME."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from earec_core.aligned import base_fingerprint
    from earec_core.artifacts import write_json

    model = model if model is not None else AutoModelForCausalLM.from_pretrained(env.llm)
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    out = env.run_dir / "adapters" / name
    peft_model.save_pretrained(str(out))
    meta = {"modality": name, "hidden_size": model.config.hidden_size, "feature_dim": None, "placeholder": None}
    if fingerprint:
        meta["base_config"] = base_fingerprint(model.config)
    write_json(out / "modality.json", meta)
    write_json(out / "manifest.json", {"stage": "align", "seed": seed})
    return out


def foreign_adapter(command: str, *, hidden=64, layers=2, fingerprint=True):
    def row(env):
        env.workspace()  # run.json: tiny LLM + toy dataset
        make_adapter(env, "text", model=llama(hidden, layers), fingerprint=fingerprint)
        if command == "compose":
            return env.cli_raw("compose", "--run-dir", env.run_dir, "--weights", "text=1", "--quiet")
        return env.cli_raw("embed", "--run-dir", env.run_dir, "text", "--quiet")
    return row


def two_adapters(weights: str, *, r2=4, mode="param"):
    def row(env):
        env.workspace()
        make_adapter(env, "a", seed=1)
        make_adapter(env, "b", seed=2, r=r2)
        return env.cli_raw("compose", "--run-dir", env.run_dir, "--weights", weights, "--mode", mode, "--quiet")
    return row


def lambdas_normalised(env):
    r = two_adapters("a=2,b=6")(env)
    assert r.exit_code == 0, r.output
    comp = json.loads((env.run_dir / "compositions" / "a+b" / "composition.json").read_text())
    assert comp["weights"] == {"a": 0.25, "b": 0.75} and comp["weights_given"] == {"a": 2.0, "b": 6.0}


def small_catalog_with_lower_ks(env):
    r = env.cli("prepare", "--rec-option", "ks=[5,10]", "--rec-option", "max_epochs=1", dataset=env.dataset(n_items=40))
    assert r.exit_code == 0, r.output
    metrics = json.loads((env.run_dir / "recommend" / "id-sasrec" / "metrics.json").read_text())
    assert set(metrics["test"]) == {"HR@5", "NDCG@5", "HR@10", "NDCG@10"}
    assert "HR@5" in r.output and "HR@50" not in r.output


def failed_first_command_leaves_no_folder(env):
    r = env.cli("prepare", dataset=env.dataset(), k_core=40)
    assert not env.run_dir.exists(), sorted(env.run_dir.rglob("*"))  # no half-made run to trip the next try
    return r


def bad_option_not_saved(env):
    data = env.dataset()
    ok = env.cli("prepare", "--rec-option", "max_epochs=1", dataset=data)
    assert ok.exit_code == 0, ok.output
    before = (env.run_dir / "run.json").read_bytes()
    bad = env.cli("recommend", "--rec-option", "notanoption=1", dataset=data)
    assert bad.exit_code != 0 and "notanoption" in bad.output
    assert (env.run_dir / "run.json").read_bytes() == before  # the next command is not poisoned
    again = env.cli("recommend", dataset=data)
    assert again.exit_code == 0, again.output


def dataset_switched_under_artifacts(env):
    from earec_core.embed import embed

    embed(env.workspace(env.dataset()), "base:text", precision="fp32")
    other = env.dataset(n_items=70)  # same folder name, other items: the files' hashes differ
    return env.cli("embed", "base:text", dataset=other)


def pickled_adapter(command: str):
    def row(env):
        env.workspace()
        out = make_adapter(env, "text")
        marker = env.tmp / "PWNED"
        write_malicious_pickle(out, marker)
        args = (["compose", "--weights", "text=1"] if command == "compose" else ["embed", "text"])
        r = env.cli_raw(*args, "--run-dir", env.run_dir, "--quiet")
        assert not marker.exists(), "the pickle was executed"
        return r
    return row


def corrupt_embeddings(env):
    """Item embeddings whose file was damaged after `earec embed` wrote it (manifest still current)."""
    from earec_core.embed import embed

    out = embed(env.workspace(), "base:text")  # the CLI's defaults, so `recommend` finds it current
    (out / "item_embeddings.safetensors").write_bytes(b"\x00not safetensors")
    return env.cli_raw("recommend", "base:text", "--run-dir", env.run_dir, "--quiet", "--rec-option", "max_epochs=1")


class _Exploit:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_malicious_pickle(adapter_dir: Path, marker: Path) -> None:
    """Replace the adapter's safetensors by a pickle whose loading would create ``marker``."""
    import pickle

    (adapter_dir / "adapter_model.safetensors").unlink()
    with open(adapter_dir / "adapter_model.bin", "wb") as fh:
        pickle.dump({"base_model.model.x.lora_A.weight": _Exploit(marker)}, fh)


# plugins ----------------------------------------------------------------------------------------


class EchoModality(Modality):
    name = "echo"

    def fragment(self, item, *, with_related=True):
        return Fragment(item.anchor)


def plugin_import_raises(env, monkeypatch=None):
    import importlib.metadata

    mod = env.tmp / "earec_exploding_plugin.py"
    mod.write_text("raise RuntimeError('exploding plugin on import')\n")
    sys.path.insert(0, str(env.tmp))
    real = importlib.metadata.entry_points

    def with_broken(**kw):
        eps = list(real(**kw))
        if kw.get("group") == "earec":
            eps.append(importlib.metadata.EntryPoint("exploding", "earec_exploding_plugin", "earec"))
        return eps

    importlib.metadata.entry_points = with_broken
    try:
        plugins.reload_plugins()
        r = env.cli_raw("plugins", "--json")
        assert r.exit_code == 0, r.output
        out = json.loads(r.output)
        assert "exploding plugin on import" in out["broken"]["exploding"]
        assert {"text", "behavior", "sasrec"} <= {p["name"] for p in out["plugins"]}
    finally:
        importlib.metadata.entry_points = real
        sys.path.remove(str(env.tmp))
        sys.modules.pop("earec_exploding_plugin", None)


def plugin_duplicate_name(env):
    class Dup:
        @hookimpl
        def earec_register_modalities(self, register):
            class Text2(EchoModality):
                name = "text"

            register(Text2)

    assert plugins.register_plugin(Dup(), "dup")
    r = env.cli_raw("plugins", "--json")
    out = json.loads(r.output)
    assert any("'text'" in p and "dup" in p and "already registered" in p for p in out["problems"])
    assert plugins.registry().modality("text").__module__ == "earec_text"


def plugin_wrong_hook_argument(env):
    class Wrong:
        @hookimpl
        def earec_register_modalities(self, registr):
            registr(EchoModality)

    assert not plugins.register_plugin(Wrong(), "wrongarg")
    r = env.cli_raw("plugins", "--json")
    out = json.loads(r.output)
    assert "registr" in out["broken"]["wrongarg"] and "text" in plugins.registry().modalities


# recommender ------------------------------------------------------------------------------------


def empty_validation_split(env):
    from earec_core.recommender import SequenceSplits

    sasrec = plugins.registry().recommender("sasrec")(max_epochs=1)
    sasrec.fit(SequenceSplits(n_items=60, train=[[1, 2, 3]], valid=[], test=[]), progress=False)


def empty_evaluation(env):
    from earec_core.metrics import evaluate

    evaluate(lambda h: torch.zeros(len(h), 61), [], n_items=60)


def media_escape(relative):
    def row(env):
        from earec_core.data import resolve_media_path

        resolve_media_path(env.dataset(), relative)
    return row


# --------------------------------------------------------------------------------- the table

ROWS = [
    # titles: never crash; aligned, or skipped with a count
    pytest.param(titles_row("empty"), handled("kept, embedded; skipped in alignment with a count"), id="title-empty"),
    pytest.param(titles_row("whitespace"), handled("normalised to empty, counted"), id="title-whitespace"),
    pytest.param(titles_row("emoji"), handled("aligned (finite loss)"), id="title-emoji"),
    pytest.param(titles_row("rtl"), handled("aligned (finite loss)"), id="title-rtl"),
    pytest.param(titles_row("placeholder"), handled("placeholder neutralised, no slot"), id="title-placeholder"),
    pytest.param(titles_row("10k"), handled("over the token budget: skipped with a count"), id="title-10k-chars"),
    pytest.param(titles_through_align, handled("`earec align` trains, skips counted"), id="titles-cli-align"),
    # interactions vs catalog
    pytest.param(unknown_items_counted, handled("dropped, counted in stats"), id="interaction-item-not-in-catalog"),
    pytest.param(catalog_item_without_interactions, handled("left out of the catalog"), id="catalog-item-no-interactions"),
    pytest.param(all_items_unknown, cli_error(r"no interaction refers to an item"), id="no-interaction-matches-catalog"),
    pytest.param(duplicates_and_ties, handled("duplicates kept, ties in file order"), id="duplicates-and-ties"),
    pytest.param(k_core_cascade, cli_error(r"3-core filtering left no interactions .*lower --k-core"), id="k-core-cascade-to-nothing"),
    pytest.param(lambda env: env.cli("prepare", dataset=env.dataset(), k_core=40),
                 cli_error(r"40-core filtering left no interactions"), id="k-core-filters-everything"),
    pytest.param(too_short_for_leave_one_out, cli_error(r"no user has 3 or more interactions"), id="users-too-short-for-split"),
    # files
    pytest.param(non_utf8, cli_error(r"not valid UTF-8"), id="non-utf8-file"),
    pytest.param(ragged_row, cli_error(r"d?\.inter:\d+: 5 columns, header has 4"), id="ragged-row"),
    pytest.param(bad_timestamp, cli_error(r"timestamp 'yesterday' is not a number"), id="bad-timestamp"),
    pytest.param(non_finite_timestamp("nan"), cli_error(r"d\.inter:4: timestamp 'nan' is not a finite number"),
                 id="timestamp-nan-after-a-blank-line"),
    pytest.param(non_finite_timestamp("-inf"), cli_error(r"d\.inter:4: timestamp '-inf' is not a finite number"),
                 id="timestamp-minus-inf"),
    pytest.param(header_only_interactions, cli_error(r"no interactions \(the file has only its header\)"),
                 id="inter-header-only"),
    pytest.param(duplicate_item_definition, handled("first definition kept, counted in stats and checks.json"),
                 id="item-id-defined-twice"),
    pytest.param(check_data_on_a_broken_copy, cli_error(r"check-data found errors .*not numbers \(1\).*NaN or infinite \(1\)"),
                 id="check-data-broken-copy"),
    pytest.param(modality_called_default, handled("composes like any other name (peft's own 'default' is not hit)"),
                 id="modality-named-default"),
    pytest.param(backbone_switched_under_adapters, cli_error(r"was built with the backbone .* needs a new --run-dir"),
                 id="llm-switched-under-adapters"),
    pytest.param(undeclared_modality_option, cli_error(r"modality 'behavior' has no option 'n_relatd'.*n_related"),
                 id="modality-option-undeclared"),
    pytest.param(missing_item_file, cli_error(r"atomic file not found"), id="missing-item-file"),
    pytest.param(lambda env: env.cli("prepare", dataset=env.tmp / "nope"), cli_error(r"dataset folder not found"),
                 id="dataset-folder-missing"),
    pytest.param(item_without_any_modality, handled("bare-prompt embedding, finite"), id="item-without-any-modality"),
    # behaviour encoder table
    pytest.param(behaviour_table("nan"), cli_error(r"NaN/Inf"), id="behavior-table-nan"),
    pytest.param(behaviour_table("inf"), cli_error(r"NaN/Inf"), id="behavior-table-inf"),
    pytest.param(behaviour_table("1d"), cli_error(r"table shape \(\d+,\) does not match"), id="behavior-table-1d"),
    pytest.param(behaviour_table("rows"), cli_error(r"does not match \d+ item ids"), id="behavior-table-wrong-rows"),
    pytest.param(behaviour_table("no-ids"), cli_error(r"not a behaviour item table.*item_ids"), id="behavior-table-no-ids"),
    pytest.param(behaviour_table("garbage"), cli_error(r"not a behaviour item table"), id="behavior-table-garbage"),
    # adapters
    pytest.param(foreign_adapter("compose", hidden=32), cli_error(r"aligned on another base model .*hidden_size 32 vs 64"),
                 id="adapter-other-hidden-size-compose"),
    pytest.param(foreign_adapter("embed", hidden=32), cli_error(r"aligned on another base model .*hidden_size"),
                 id="adapter-other-hidden-size-embed"),
    pytest.param(foreign_adapter("embed", hidden=32, fingerprint=False), cli_error(r"input width 64 .* but 32 in the adapter"),
                 id="adapter-other-hidden-size-no-fingerprint"),
    pytest.param(foreign_adapter("compose", layers=1), cli_error(r"another base model .*num_hidden_layers 1 vs 2"),
                 id="adapter-other-base-same-width-compose"),
    pytest.param(foreign_adapter("embed", layers=1), cli_error(r"another base model .*num_hidden_layers"),
                 id="adapter-other-base-same-width-embed"),
    pytest.param(foreign_adapter("compose", layers=3, fingerprint=False), cli_error(r"layers\.2\..* does not have"),
                 id="adapter-extra-layers-no-fingerprint"),
    pytest.param(two_adapters("a=0.5,b=0.5", r2=8), cli_error(r"needs equal ranks, got \{'a': 4, 'b': 8\}"),
                 id="adapters-mismatched-ranks"),
    pytest.param(lambdas_normalised, handled("param mode: λ scaled to sum 1"), id="lambda-not-summing-to-1"),
    pytest.param(two_adapters("a=-1,b=2"), cli_error(r"negative weights are not allowed in 'param' mode"), id="lambda-negative"),
    pytest.param(two_adapters("a=nan,b=1"), cli_error(r"weights must be finite"), id="lambda-nan"),
    pytest.param(two_adapters("a=0,b=0", mode="delta"), cli_error(r"all weights are zero"), id="lambda-all-zero"),
    pytest.param(two_adapters("a=0.5,a=0.5"), cli_error(r"weight for 'a' given twice"), id="lambda-duplicate-name"),
    pytest.param(two_adapters("a:0.5"), cli_error(r"expected NAME=NUMBER"), id="lambda-malformed"),
    pytest.param(pickled_adapter("compose"), cli_error(r"no adapter_model\.safetensors \(found adapter_model\.bin"),
                 id="pickled-adapter-compose"),
    pytest.param(pickled_adapter("embed"), cli_error(r"no adapter_model\.safetensors .*never loaded"),
                 id="pickled-adapter-embed"),
    # plugins
    pytest.param(plugin_import_raises, handled("reported by name, others load"), id="plugin-import-raises"),
    pytest.param(plugin_duplicate_name, handled("first kept, second reported"), id="plugin-duplicate-name"),
    pytest.param(plugin_wrong_hook_argument, handled("plugin skipped and reported"), id="plugin-wrong-hook-argument"),
    pytest.param(lambda env: env.cli("align", "--modality", "smell", dataset=env.dataset()),
                 cli_error(r"no modality named 'smell' \(registered: .*\btext\b"), id="unknown-modality"),
    # recommender
    pytest.param(lambda env: env.cli("prepare", "--rec-option", "notanoption=1", dataset=env.dataset()),
                 cli_error(r"recommender 'sasrec': bad --rec-option .*notanoption.*its options are: .*hidden_size"),
                 id="rec-option-unknown"),
    pytest.param(lambda env: env.cli("prepare", "--rec-option", "hidden_size=abc", dataset=env.dataset()),
                 cli_error(r"recommender 'sasrec' rejected options"), id="rec-option-wrong-type"),
    pytest.param(lambda env: env.cli("prepare", "--rec-option", "ks=[10,100]", dataset=env.dataset()),
                 cli_error(r"has 60 items, fewer than the evaluation cutoff K=\[100\]"), id="rec-k-above-items"),
    pytest.param(lambda env: env.cli("prepare", dataset=env.dataset(n_items=40)),
                 cli_error(r"has 40 items, fewer than the evaluation cutoff K=\[50\].*--rec-option ks=\[5,10\]"),
                 id="dataset-smaller-than-eval-k"),
    pytest.param(small_catalog_with_lower_ks, handled("evaluated at the given cutoffs"), id="small-catalog-lower-ks"),
    pytest.param(failed_first_command_leaves_no_folder, cli_error(r"40-core filtering left no interactions"),
                 id="failed-first-command-leaves-no-run-folder"),
    pytest.param(bad_option_not_saved, handled("run.json left as it was"), id="failed-command-keeps-run-json"),
    pytest.param(dataset_switched_under_artifacts, cli_error(r"was built on another dataset setup \(files differ .*Use a new --run-dir"),
                 id="dataset-switched-on-existing-run"),
    pytest.param(empty_validation_split, raises(DataError, r"splits\.valid is empty"), id="empty-validation-split"),
    pytest.param(empty_evaluation, raises(ValueError, r"the split is empty"), id="empty-evaluation-split"),
    pytest.param(lambda env: env.cli("recommend", "base:text", "--emb-rec-option", "feature_transform=pca",
                                     dataset=env.dataset()),
                 cli_error(r"feature_transform must be one of none, standardize, whiten, got 'pca'"),
                 id="feature-transform-unknown"),
    pytest.param(corrupt_embeddings, cli_error(r"not a readable item-embedding file .*re-run `earec embed`"),
                 id="embeddings-file-corrupt"),
    # embedding extraction
    pytest.param(lambda env: env.cli("embed", "base:text", "--devices", "0", dataset=env.dataset()),
                 cli_error(r"Invalid value for '--devices'"), id="embed-zero-devices"),
    pytest.param(lambda env: env.cli("embed", "base:text", "--shard-size", "0", dataset=env.dataset()),
                 cli_error(r"Invalid value for '--shard-size'"), id="embed-zero-shard-size"),
    # backbone
    pytest.param(lambda env: env.cli_raw("align", "--run-dir", env.run_dir, "--llm", env.tmp / "missing",
                                         "--dataset", env.dataset(), "--modality", "text", "--quiet"),
                 cli_error(r"not a local HF model folder \(no config\.json\)"), id="llm-folder-missing"),
    pytest.param(lambda env: (env.tmp / "empty-llm").mkdir() or env.cli_raw(
                     "align", "--run-dir", env.run_dir, "--llm", env.tmp / "empty-llm", "--dataset", env.dataset(),
                     "--modality", "text", "--quiet"),
                 cli_error(r"no config\.json"), id="llm-folder-without-config"),
    pytest.param(lambda env: ((env.tmp / "cfg-llm").mkdir(), (env.tmp / "cfg-llm" / "config.json").write_text(
                     '{"model_type": "llama"}'))[0] or env.cli_raw(
                     "align", "--run-dir", env.run_dir, "--llm", env.tmp / "cfg-llm", "--dataset", env.dataset(),
                     "--modality", "text", "--quiet"),
                 cli_error(r"cannot load a tokenizer from"), id="llm-folder-config-only"),
    # media paths from datasets
    pytest.param(media_escape("../../etc/passwd"), raises(DataError, r"escapes the dataset folder"), id="media-dotdot-escape"),
    pytest.param(media_escape("/etc/passwd"), raises(DataError, r"is absolute"), id="media-absolute"),
    pytest.param(media_escape(""), raises(DataError, r"empty media path"), id="media-empty"),
]


@pytest.mark.parametrize("action, expect", ROWS)
def test_bad_input(env, action, expect):
    if isinstance(expect, cli_error):
        assert_one_line_cli_error(action(env), expect.pattern)
    elif isinstance(expect, raises):
        with pytest.raises(expect.exc, match=expect.pattern):
            action(env)
    else:
        result = action(env)
        if result is not None and hasattr(result, "exit_code"):
            assert result.exit_code == 0, result.output


def test_table_has_enough_rows():
    assert len(ROWS) >= 25


# --------------------------------------------------------------------------------- safe loading


def test_malicious_adapter_pickle_is_never_unpickled(tmp_path, tiny_llm_dir, make_dataset, monkeypatch):
    """Even the lower-level loaders refuse a pickle-only adapter, and the pickle never runs."""
    from earec_core.aligned import check_adapter
    from earec_core.errors import ArtifactError
    from earec_core.model import load_aligned
    from earec_core.workspace import Workspace

    ws = Workspace(tmp_path / "run", progress=False, llm=str(tiny_llm_dir), dataset=str(make_dataset(tmp_path)), k_core=3)
    env = Env(tmp_path, tiny_llm_dir, make_dataset, tmp_path, None)
    out = make_adapter(env, "text")
    marker = tmp_path / "PWNED"
    write_malicious_pickle(out, marker)
    import pickle

    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: loads.append(a) or pytest.fail("pickle.load called"))
    with pytest.raises(ArtifactError, match="pickled weights are never loaded"):
        check_adapter(out, ws.base_model())
    with pytest.raises(ArtifactError, match="no adapter_model.safetensors"):
        load_aligned(ws, "text")
    assert loads == [] and not marker.exists()


def test_weights_are_read_only_safely():
    """No pickle-capable loader in the project's own code: torch.load only with weights_only=True,
    no pickle import, and remote code stays opt-in (off by default)."""
    root = Path(__file__).resolve().parents[1]
    sources = [p for d in ("earec_core", "plugins/earec_text", "plugins/earec_behavior", "recommenders")
               for p in (root / d).rglob("*.py")]
    assert sources
    for path in sources:
        text = path.read_text()
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
        assert not re.search(r"^\s*(import pickle|from pickle|import dill|import cloudpickle)", text, re.M), path
    from earec_core.workspace import DEFAULTS

    assert DEFAULTS["trust_remote_code"] is False


# --------------------------------------------------------------------------------- media paths


def test_media_path_inside_root_and_symlink_escape(tmp_path):
    from earec_core.data import resolve_media_path

    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    (root / "img" / "1.jpg").write_bytes(b"x")
    assert resolve_media_path(root, "img/1.jpg") == (root / "img" / "1.jpg").resolve()
    assert resolve_media_path(root, "img/../img/1.jpg") == (root / "img" / "1.jpg").resolve()
    assert resolve_media_path(str(root), Path("img/missing.png")).name == "missing.png"  # existence is the plugin's call
    outside = tmp_path / "secret.txt"
    outside.write_text("s")
    (root / "img" / "link.jpg").symlink_to(outside)
    (root / "escape").symlink_to(tmp_path)
    for bad in ("img/link.jpg", "escape/secret.txt", "img/../../secret.txt", "..", "a\0b"):
        with pytest.raises(DataError):
            resolve_media_path(root, bad)
