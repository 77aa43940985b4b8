"""The RecBole/UniSRec benchmark layout: import with splits as given, and export of item
embeddings as UniSRec's raw float32 ``NAME.feat1CLS``-style file (rows in item2index order)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from earec_core.data import load_dataset
from earec_core.data.unisrec import export_feat, is_unisrec_dir, load_unisrec, read_item2index
from earec_core.errors import ArtifactError, DataError

HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token\n"


def write_unisrec(root: Path, name: str, sequences: dict[str, list[str]], *, text: bool = True) -> Path:
    """What UniSRec's ``process_amazon.py`` writes: users/items indexed in order of appearance,
    train rows last target first, histories truncated to 50 items."""
    d = root / name
    d.mkdir(parents=True)
    item2index: dict[str, int] = {}
    for seq in sequences.values():
        for it in seq:
            item2index.setdefault(it, len(item2index))
    (d / f"{name}.item2index").write_text("".join(f"{it}\t{i}\n" for it, i in item2index.items()))
    if text:
        (d / f"{name}.text").write_text("item_id:token\ttext:token_seq\n"
                                        + "".join(f"{i}\tProduct {it} title.\n" for it, i in item2index.items()))
    files = {s: [HEADER] for s in ("train", "valid", "test")}
    for u, (user, seq) in enumerate(sequences.items()):
        idx = [str(item2index[it]) for it in seq]
        train, v, t = idx[:-2], idx[-2], idx[-1]
        for k in range(1, len(train)):
            files["train"].append(f"{u}\t{' '.join(train[:-k][-50:])}\t{train[-k]}\n")
        files["valid"].append(f"{u}\t{' '.join(train[-50:])}\t{v}\n")
        files["test"].append(f"{u}\t{' '.join((train + [v])[-50:])}\t{t}\n")
    for s, lines in files.items():
        (d / f"{name}.{s}.inter").write_text("".join(lines))
    return d


@pytest.fixture
def sequences():
    rng = random.Random(0)
    items = [f"B{n:04d}" for n in range(30)]
    seqs = {f"A{u}": [rng.choice(items) for _ in range(rng.randint(4, 9))] for u in range(12)}
    seqs["Along"] = [items[n % 30] for n in range(64)]  # train part of 62 > the 50-item truncation
    seqs["Ashort"] = [items[0], items[1], items[2]]  # one training item: no train.inter row at all
    return seqs


def test_import_takes_the_splits_as_given(tmp_path, sequences):
    d = write_unisrec(tmp_path, "Toy", sequences)
    assert is_unisrec_dir(d) and not is_unisrec_dir(tmp_path)
    ds = load_unisrec(d)
    item2index = read_item2index(d / "Toy.item2index")
    assert ds.catalog.ids == sorted(item2index, key=item2index.get)  # EARec index = UniSRec index + 1
    assert ds.users == [str(u) for u in range(len(sequences))]
    for u, seq in enumerate(sequences.values()):
        ix = [ds.catalog.index(it) for it in seq]
        assert ds.splits.train[u] == ix[:-2]  # rebuilt in full from the train rows (the long user too)
        assert ds.splits.valid[u] == (ix[:-2][-50:], ix[-2])
        assert ds.splits.test[u] == (ix[:-1][-50:], ix[-1])
    assert len(ds.splits.train[-2]) == 62 and len(ds.splits.valid[-2][0]) == 50
    assert ds.catalog["B0003"].anchor == "Product B0003 title."
    assert ds.stats["users"] == len(sequences) and ds.stats["items"] == len(item2index)
    assert ds.stats["users_train_rebuilt_from_train_inter"] == len(sequences) - 1  # Ashort has no train row
    assert all(it.related is not None for it in ds.catalog)


def test_load_dataset_and_workspace_detect_the_layout(tmp_path, sequences):
    from earec_core.workspace import Workspace

    d = write_unisrec(tmp_path, "Toy", sequences, text=False)
    ds = load_dataset(d)
    assert ds.stats["items_without_anchor"] == ds.stats["items"]
    ws = Workspace(tmp_path / "run", progress=False, dataset=str(d))
    assert ws.dataset.splits.test == ds.splits.test
    files = json.loads((tmp_path / "run" / "dataset" / "manifest.json").read_text())["config"]["files"]
    assert {"Toy.train.inter", "Toy.valid.inter", "Toy.test.inter", "Toy.item2index"} <= set(files)


def test_malformed_input_is_a_clear_error(tmp_path, sequences):
    d = write_unisrec(tmp_path, "Toy", sequences)
    with open(d / "Toy.test.inter", "a") as fh:
        fh.write("99\t0 1\t999\n")
    with pytest.raises(DataError, match="'999' is not an index"):
        load_unisrec(d)
    d = write_unisrec(tmp_path / "dup", "Toy", sequences)
    with open(d / "Toy.valid.inter", "a") as fh:
        fh.write("0\t0 1\t2\n")
    with pytest.raises(DataError, match="more than one row"):
        load_unisrec(d)
    (d / "Toy.item2index").write_text("B1\tx\n")
    with pytest.raises(DataError, match="ITEM_ID<TAB>INDEX"):
        load_unisrec(d)
    (d / "Toy.item2index").write_text("B1\t0\nB2\t0\n")
    with pytest.raises(DataError, match="twice"):
        read_item2index(d / "Toy.item2index")
    with pytest.raises(DataError, match="not a UniSRec dataset"):
        load_unisrec(tmp_path)


def test_export_rows_follow_item2index(tmp_path):
    item2index = {"x": 2, "y": 0, "z": 1}
    emb = torch.tensor([[1.0, 1.5], [2.0, 2.5], [3.0, 3.5]])  # rows for ids x, y, z
    out = export_feat(emb, ["x", "y", "z"], item2index, tmp_path / "Toy.feat1CLS")
    raw = out.read_bytes()
    assert len(raw) == 3 * 2 * 4  # headerless float32
    feat = np.fromfile(out, dtype=np.float32).reshape(-1, 2)  # exactly how UniSRec reads it
    assert feat.tolist() == [[2.0, 2.5], [3.0, 3.5], [1.0, 1.5]]
    with pytest.raises(ArtifactError, match="no embedding"):
        export_feat(emb[:2], ["x", "y"], item2index, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    zeros = export_feat(emb[:2], ["x", "y"], item2index, tmp_path / "z.feat", missing="zeros")
    assert np.fromfile(zeros, dtype=np.float32).reshape(-1, 2).tolist() == [[2.0, 2.5], [0, 0], [1.0, 1.5]]
    with pytest.raises(ArtifactError, match="0..n-1"):
        export_feat(emb, ["x", "y", "z"], {"x": 0, "y": 1, "z": 5}, tmp_path / "gap")
    with pytest.raises(ArtifactError, match="NaN"):
        export_feat(emb * float("nan"), ["x", "y", "z"], item2index, tmp_path / "nan")


def test_export_cli_from_a_run(tmp_path, sequences, tiny_llm_dir):
    from earec_core.cli import cli
    from earec_core.embed import load_embeddings
    from earec_core.workspace import Workspace

    d = write_unisrec(tmp_path, "Toy", sequences)
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["export-unisrec", "base:text", "--run-dir", str(run), "--dataset", str(d),
                                 "--llm", str(tiny_llm_dir), "--item2index", str(d / "Toy.item2index"),
                                 "--out", str(tmp_path / "Toy.feat1EARec"), "--quiet"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    ws = Workspace(run, progress=False)
    emb = load_embeddings(run / "embeddings" / "base-text", ws.dataset.catalog.ids)
    feat = np.fromfile(tmp_path / "Toy.feat1EARec", dtype=np.float32).reshape(-1, 64)
    item2index = read_item2index(d / "Toy.item2index")
    for raw, i in item2index.items():
        assert np.allclose(feat[i], emb[ws.dataset.catalog.index(raw) - 1].numpy())
