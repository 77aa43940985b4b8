"""The inductive (new-item) split: new items stay out of every training input -- training
sequences, related items, the ID table, the behaviour encoder and the alignment samples -- and
remain validation/test targets that a content-based recommender can score."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from earec_core.data import alignment_items
from earec_core.data import load_dataset
from earec_core.data.catalog import Item
from earec_core.data.sequences import hold_out_new_items, leave_one_out
from earec_core.errors import ArtifactError, DataError, EarecError
from earec_core.workspace import Workspace
from earec_sasrec import SASRec
from earec_sasrec.model import SASRecNet
from earec_behavior import neighbour_rows

REC = {"max_epochs": 2, "hidden_size": 16, "inner_size": 32, "n_heads": 2, "dropout": 0.1, "max_len": 10,
       "ks": (5, 10), "batch_size": 16}


def test_hold_out_new_items_filters_training_only():
    base = leave_one_out([[1, 2, 3, 4, 5], [2, 3, 6, 1, 4], [5, 6, 1, 2, 3]], n_items=6)
    split = hold_out_new_items(base, 0.34, seed=0)
    new = split.new_items
    assert len(new) == 2
    for seq in split.train:
        assert not set(seq) & new
    for (v_hist, v_t), (t_hist, t_t), (_, old_v), (_, old_t), train in zip(
            split.valid, split.test, base.valid, base.test, split.train):
        assert (v_t, t_t) == (old_v, old_t)  # every target kept, new or not
        assert v_hist == train and t_hist == train + [v_t]
    assert hold_out_new_items(base, 0.0, seed=0) is base
    for bad in (-0.1, 1.0):
        with pytest.raises(DataError, match=r"\[0, 1\)"):
            hold_out_new_items(base, bad, seed=0)


@pytest.fixture(scope="module")
def inductive(tmp_path_factory, make_dataset):
    root = tmp_path_factory.mktemp("inductive")
    return load_dataset(make_dataset(root), k=3, new_items=0.2, split_seed=0)


def test_dataset_records_new_items_and_keeps_them_out_of_related_and_alignment(inductive):
    ds = inductive
    new_ids = ds.catalog.unseen
    assert len(new_ids) == ds.stats["new_items"] == len(ds.splits.new_items) > 0
    assert new_ids == {ds.catalog.items[i - 1].id for i in ds.splits.new_items}
    assert ds.stats["test_users_with_new_target"] == sum(1 for _, t in ds.splits.test if t in ds.splits.new_items)
    assert ds.stats["test_users_with_new_target"] > 0
    for item in ds.catalog:
        assert not set(item.related) & new_ids, item.id
    train_ids, held = alignment_items(ds.catalog, 0, 8, None)
    assert not set(train_ids) & new_ids
    assert set(train_ids) | set(held) >= {it.id for it in ds.catalog if it.anchor.strip()} - new_ids


def test_recommender_never_trains_on_new_items(inductive):
    """ID rows of new items end training exactly at their initial values: no softmax column, no
    sequence position, no negative sample ever gives them a gradient."""
    splits = inductive.splits
    new = torch.tensor(sorted(splits.new_items))
    for options in ({}, {"loss": "sampled", "n_negatives": 20}):
        model = SASRec(**REC, **options)
        model.fit(splits, seed=3, progress=False)
        L.seed_everything(3, verbose=False)
        init = SASRecNet(splits.n_items, **{k: REC[k] for k in ("hidden_size", "n_heads", "dropout", "max_len")},
                         inner_size=REC["inner_size"])
        table = model.item_embedding_table()
        assert torch.equal(table[new], init.item_emb.weight.detach()[new]), options
        seen = torch.tensor([i for i in range(1, splits.n_items + 1) if i not in splits.new_items])
        assert not torch.equal(table[seen], init.item_emb.weight.detach()[seen])  # the others did train


def test_workspace_new_items_flows_into_dataset_manifest_and_behaviour_encoder(tmp_path, make_dataset):
    import json

    ws = Workspace(tmp_path / "run", progress=False, dataset=str(make_dataset(tmp_path)), k_core=3, new_items=0.2,
                   recommender_options={k: v for k, v in REC.items() if k != "ks"} | {"ks": [5, 10]})
    ds = ws.dataset
    assert ds.splits.new_items
    manifest = json.loads((ws.dir / "dataset" / "manifest.json").read_text())
    assert manifest["config"]["new_items"] == 0.2 and manifest["config"]["split_seed"] == 0
    behaviour = ws.modality("behavior")  # prepare(): the ID table of an ID SASRec trained without new items
    table = ws.context.id_item_table()
    assert table.shape[0] == len(ds.catalog) + 1
    # new items kept their random initial ID rows (see the test above): they get no behaviour slot,
    # so their prompts speak through text alone; every trained item keeps its ID-table row
    new_items = [ds.catalog.items[i - 1] for i in sorted(ds.splits.new_items)]
    assert all(behaviour.fragment(item) is None for item in new_items)
    with pytest.raises(ArtifactError, match="not in this feature table"):
        behaviour.encode([new_items[0].id])
    seen = [i for i in range(1, len(ds.catalog) + 1) if i not in ds.splits.new_items]
    encoded = behaviour.encode([ds.catalog.items[i - 1].id for i in seen])
    assert torch.allclose(encoded.reshape(len(seen), -1), table[torch.tensor(seen)])
    assert all(behaviour.fragment(ds.catalog.items[i - 1]) is not None for i in seen)
    facts = json.loads((ws.encoder_dir("behavior") / "facts.json").read_text())
    assert facts["untrained_items"] == len(new_items) and facts["items"] == len(seen)


def test_sparse_training_keeps_every_user_evaluated():
    from earec_core.data.sequences import sparse_training

    base = leave_one_out([[1, 2, 3, 4, 5], [2, 3, 6, 1, 4], [5, 6, 1, 2, 3], [1, 3, 5, 2, 4]], n_items=6)
    sparse = sparse_training(base, 0.5, seed=1)
    kept = [u for u, seq in enumerate(sparse.train) if seq]
    assert len(kept) == 2
    assert all(sparse.train[u] == base.train[u] for u in kept)
    assert sparse.valid == base.valid and sparse.test == base.test  # histories and targets untouched
    assert sparse_training(base, 1.0, seed=0) is base
    for bad in (0.0, 1.5):
        with pytest.raises(DataError, match=r"\(0, 1\]"):
            sparse_training(base, bad, seed=0)


def test_sparse_dataset_through_the_workspace(tmp_path, make_dataset):
    ws = Workspace(tmp_path / "run", progress=False, dataset=str(make_dataset(tmp_path)), k_core=3, train_users=0.25)
    ds = ws.dataset
    n = len(ds.splits.test)
    assert ds.stats["training_users"] == sum(1 for s in ds.splits.train if s) == round(0.25 * n)
    full = load_dataset(make_dataset(tmp_path / "again"), k=3)
    assert ds.splits.test == full.splits.test  # every user still evaluated on the same examples


def test_neighbour_rows_average_the_most_similar_trained_items():
    """The estimate of an untrained item is the mean ID row of its metadata neighbours; an item
    sharing no word with any trained item gets the mean of every trained row."""
    items = [Item("1", "Toy Story", {"year": "1995", "genre": "Animation Children's Comedy"}),
             Item("2", "Toy Story 2", {"year": "1999", "genre": "Animation Children's Comedy"}),
             Item("3", "Heat", {"year": "1995", "genre": "Crime Thriller"}),
             Item("4", "Ronin", {"year": "1998", "genre": "Crime Thriller"}),
             Item("5", "Qwerty", {})]
    table = torch.randn(5, 4)
    trained = torch.tensor([True, False, True, False, False])
    est = neighbour_rows(items, table, trained, k=1)
    assert torch.equal(est[0], table[0])   # the sequel takes Toy Story's row
    assert torch.equal(est[1], table[2])   # the crime thriller takes Heat's
    assert torch.allclose(est[2], table[trained].mean(dim=0))
    both = neighbour_rows(items, table, trained, k=2)
    assert torch.allclose(both[0], table[trained].mean(dim=0))  # k = every trained item


def test_behaviour_missing_neighbours_gives_new_items_an_estimated_slot(tmp_path, make_dataset):
    ws = Workspace(tmp_path / "run", progress=False, dataset=str(make_dataset(tmp_path)), k_core=3, new_items=0.2,
                   recommender_options={k: v for k, v in REC.items() if k != "ks"} | {"ks": [5, 10]},
                   modality_options={"behavior": {"missing": "neighbours", "neighbours": "3"}})
    ds = ws.dataset
    behaviour = ws.modality("behavior")
    table = ws.context.id_item_table()
    new = sorted(ds.splits.new_items)
    seen = [i for i in range(1, len(ds.catalog) + 1) if i not in ds.splits.new_items]
    assert all(behaviour.fragment(ds.catalog.items[i - 1]) is not None for i in new)
    encoded = behaviour.encode([ds.catalog.items[i - 1].id for i in range(1, len(ds.catalog) + 1)])[:, 0]
    assert torch.allclose(encoded[torch.tensor(seen) - 1], table[torch.tensor(seen)])  # learnt rows untouched
    trained = torch.zeros(len(ds.catalog), dtype=torch.bool)
    trained[torch.tensor(seen) - 1] = True
    expected = neighbour_rows(ds.catalog.items, table[1:], trained, 3)
    assert torch.allclose(encoded[torch.tensor(new) - 1], expected)
    assert not torch.allclose(encoded[torch.tensor(new) - 1], table[torch.tensor(new)])  # not the random init rows
    facts = json.loads((ws.encoder_dir("behavior") / "facts.json").read_text())
    assert facts["estimated_items"] == facts["untrained_items"] == len(new) and facts["items"] == len(ds.catalog)
    # new items still never become alignment samples, whatever the behaviour slot holds
    train_ids, _ = alignment_items(ds.catalog, seed=0, holdout=2, max_items=None)
    assert not {ds.catalog.items[i - 1].id for i in new} & set(train_ids)


@pytest.mark.parametrize("options, message", [({"missing": "mean"}, "'drop' or 'neighbours'"),
                                              ({"missing": "neighbours", "neighbours": "0"}, ">= 1")])
def test_behaviour_missing_policy_bad_options(tmp_path, make_dataset, options, message):
    ws = Workspace(tmp_path / "run", progress=False, dataset=str(make_dataset(tmp_path)), k_core=3, new_items=0.2,
                   recommender_options={k: v for k, v in REC.items() if k != "ks"} | {"ks": [5, 10]},
                   modality_options={"behavior": options})
    with pytest.raises(EarecError, match=message):
        ws.modality("behavior")
