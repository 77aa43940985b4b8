"""The built-in SASRec recommender plugin (recommenders/earec_sasrec) on tiny synthetic data."""

from __future__ import annotations

import random

import pytest
import torch

from earec_core.errors import DataError, EarecError
from earec_core.metrics import evaluate
from earec_core.recommender import SequenceSplits
from earec_sasrec import SASRec
from earec_sasrec.lit import left_pad, train_windows
from earec_sasrec.model import SASRecNet

N_ITEMS = 40
KS = (5, 10)
FAST = dict(hidden_size=32, n_heads=2, inner_size=64, dropout=0.1, max_len=10, lr=1e-2,
            batch_size=16, max_epochs=20, patience=5, ks=KS)


def cyclic_splits(n_users: int = 30, n_items: int = N_ITEMS, seed: int = 0) -> SequenceSplits:
    """Every user walks the item cycle: the next item is always ``current + 1`` (mod ``n_items``)."""
    rng = random.Random(seed)
    train, valid, test = [], [], []
    for _ in range(n_users):
        start = rng.randrange(n_items)
        seq = [(start + i) % n_items + 1 for i in range(rng.randint(8, 14))]
        train.append(seq[:-2])
        valid.append((seq[:-2], seq[-2]))
        test.append((seq[:-1], seq[-1]))
    return SequenceSplits(n_items, train, valid, test)


def random_features(n_items: int = N_ITEMS, dim: int = 48, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n_items + 1, dim, generator=gen)
    features[0] = 0
    return features


@pytest.fixture(scope="module")
def splits() -> SequenceSplits:
    return cyclic_splits()


@pytest.fixture(scope="module")
def id_model(splits):
    model = SASRec(**FAST)
    model.valid_metrics = model.fit(splits, seed=0, progress=False)
    return model


@pytest.fixture(scope="module")
def features() -> torch.Tensor:
    return random_features()


@pytest.fixture(scope="module")
def frozen_model(splits, features):
    model = SASRec(**FAST)
    model.valid_metrics = model.fit(splits, features.clone(), seed=0, progress=False)
    return model


@pytest.fixture(scope="module")
def transductive_model(splits, features):
    model = SASRec(**{**FAST, "transductive": True})
    model.valid_metrics = model.fit(splits, features.clone(), seed=0, progress=False)
    return model


# ---------------------------------------------------------------- padding invariance


@pytest.mark.parametrize("mode", ["id", "frozen"])
def test_last_position_does_not_depend_on_left_padding(mode):
    torch.manual_seed(0)
    net = SASRecNet(N_ITEMS, hidden_size=32, inner_size=64, max_len=12, dropout=0.5,
                    item_features=random_features() if mode == "frozen" else None).eval()
    history = [3, 4, 5, 6, 7]
    with torch.no_grad():  # the same history left-padded to 5 (no padding), 6, 9 and 12 positions
        users = torch.cat([net.user_vectors(left_pad([history], n)) for n in (5, 6, 9, 12)])
        scores = torch.cat([net.score_all(left_pad([history], n)) for n in (5, 6, 9, 12)])
    assert torch.isfinite(users).all()
    for row in range(1, len(users)):
        torch.testing.assert_close(users[row], users[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(scores[row], scores[0], atol=1e-5, rtol=1e-5)
    # a different history must give a different vector, or the check above proves nothing
    with torch.no_grad():
        other = net.user_vectors(left_pad([[9, 8, 7]], 12))
    assert not torch.allclose(other[0], users[0], atol=1e-3)


@pytest.mark.parametrize("fixture", ["id_model", "frozen_model"])
def test_score_ignores_batch_padding(fixture, request):
    model = request.getfixturevalue(fixture)
    short = [5, 6, 7]
    alone = model.score([short])
    batched = model.score([short, list(range(1, 10)), [2]])
    assert alone.shape == (1, N_ITEMS + 1) and batched.shape == (3, N_ITEMS + 1)
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=1e-5)


def test_histories_longer_than_max_len_use_their_last_items(id_model):
    long = [(i % N_ITEMS) + 1 for i in range(25)]
    torch.testing.assert_close(id_model.score([long]), id_model.score([long[-FAST["max_len"]:]]))


# ---------------------------------------------------------------- training


def test_train_windows_use_every_target_exactly_once():
    seq = list(range(1, 124))
    windows = train_windows([seq, [7], [1, 2]], max_len=50)
    assert all(2 <= len(w) <= 51 for w in windows)
    targets = sorted(t for w in windows for t in w[1:])
    assert targets == sorted(seq[1:] + [2])
    # each window's input/target pairs are consecutive pairs of the original sequence
    pairs = {(a, b) for w in windows for a, b in zip(w, w[1:])}
    assert pairs == set(zip(seq, seq[1:])) | {(1, 2)}


def test_id_padding_row_stays_zero_after_training(id_model):
    table = id_model.item_embedding_table()
    assert table.shape == (N_ITEMS + 1, FAST["hidden_size"])
    assert torch.equal(table[0], torch.zeros(FAST["hidden_size"]))
    assert table[1:].abs().sum() > 0


def test_training_learns_the_cyclic_pattern(id_model, splits):
    metrics, ranks = evaluate(id_model.score, splits.test, N_ITEMS, KS)
    # random ranking of ~30 unmasked candidates gives HR@5 ~ 0.17
    assert metrics["HR@5"] > 0.8, metrics
    assert id_model.valid_metrics["HR@10"] > 0.8


def test_fit_returns_best_validation_metrics_and_leaves_eval_mode(id_model, splits):
    assert set(id_model.valid_metrics) == {"HR@5", "NDCG@5", "HR@10", "NDCG@10"}
    best = max(h["NDCG@10"] for h in id_model.history)
    assert id_model.valid_metrics["NDCG@10"] == pytest.approx(best, abs=1e-6)
    assert len(id_model.history) <= FAST["max_epochs"]
    assert not id_model.net.training


def test_validation_never_reads_the_test_split():
    class Untouchable(list):
        def _boom(self, *args, **kwargs):
            raise AssertionError("fit() read splits.test")

        __iter__ = __len__ = __getitem__ = __bool__ = _boom

    data = cyclic_splits(n_users=10)
    guarded = SequenceSplits(data.n_items, data.train, data.valid, Untouchable())
    SASRec(**{**FAST, "max_epochs": 2}).fit(guarded, progress=False)


def test_evaluation_counts_every_user_and_ranks_all_items(id_model, splits):
    _, ranks = evaluate(id_model.score, splits.test, N_ITEMS, KS, batch_size=7)
    assert ranks.shape == (len(splits.test),)
    assert ranks.min() >= 0 and ranks.max() < N_ITEMS


def test_out_of_range_history_item_is_a_clear_error(id_model):
    with pytest.raises(DataError, match=r"41 is outside 1\.\.40"):
        id_model.score([[1, 2], [41]])


def test_cutoff_above_item_count_is_a_clear_error(splits):
    with pytest.raises(DataError, match=r"K=\[50\] exceeds the number of items \(40\)"):
        SASRec(**{**FAST, "ks": (10, 50)}).fit(splits, progress=False)


def test_bad_options_and_unfitted_model_raise():
    with pytest.raises(EarecError, match="divisible"):
        SASRec(hidden_size=30, n_heads=4)
    with pytest.raises(EarecError, match="include 10"):
        SASRec(ks=(5, 20))
    with pytest.raises(EarecError, match="not trained"):
        SASRec().score([[1, 2]])


# ---------------------------------------------------------------- frozen embeddings


def test_frozen_embeddings_train_evaluate_and_stay_frozen(frozen_model, splits, features):
    assert frozen_model.item_embedding_table() is None
    assert torch.equal(frozen_model.net.item_features, features)
    assert not any(p is frozen_model.net.item_features for p in frozen_model.net.parameters())
    metrics, ranks = evaluate(frozen_model.score, splits.test, N_ITEMS, KS)
    assert ranks.shape == (len(splits.test),)
    assert metrics["HR@5"] > 0.5, metrics  # random: ~0.17


def test_frozen_features_get_no_dropout_of_their_own(features):
    """The reference's downstream model has one input dropout (after LayerNorm(item + position));
    the adapted item vectors -- sequence items and the candidate table alike -- are not dropped."""
    net = SASRecNet(N_ITEMS, hidden_size=32, n_heads=2, inner_size=64, dropout=0.5, max_len=10,
                    item_features=features.clone()).train()
    expected = net.adaptor(net.item_features)
    torch.manual_seed(0)
    assert torch.equal(net.item_table(), expected)  # training mode, 0.5 dropout configured
    items = torch.tensor([1, 5, 5, 17])
    assert torch.equal(net.item_rows(items), expected[items])
    # the transformer input before its one dropout is LayerNorm(adapted item + position), exactly
    net.input_dropout.p = 0.0
    seq = torch.tensor([[0, 0, 3, 9, 4]])
    x, _ = net._embed(seq)
    positions = torch.tensor([[0, 0, 0, 1, 2]])
    manual = net.input_norm(expected[seq] * (seq > 0)[..., None] + net.pos_emb(positions))
    assert torch.allclose(x, manual)


def test_transductive_mode_adds_an_id_embedding_and_trains(transductive_model, splits, features):
    net = transductive_model.net
    assert net.item_emb is not None and net.adaptor is not None
    assert torch.allclose(net.item_table(), net.adaptor(net.item_features) + net.item_emb.weight)
    assert net.item_emb.weight.abs().sum() > 0  # trained, not left at zero
    assert transductive_model.item_embedding_table() is None  # no pure ID table to hand to a behaviour encoder
    metrics, _ = evaluate(transductive_model.score, splits.test, N_ITEMS, KS)
    assert metrics["HR@5"] > 0.5, metrics


def test_transductive_option_is_ignored_in_id_mode(splits):
    model = SASRec(**{**FAST, "max_epochs": 1, "transductive": True})
    model.fit(splits, progress=False)
    assert model.net.adaptor is None and model.item_embedding_table() is not None


def test_temperature_mode_trains(splits, features):
    model = SASRec(**{**FAST, "max_epochs": 8, "temperature": 0.07})
    metrics = model.fit(splits, features, progress=False)
    assert 0.0 <= metrics["NDCG@10"] <= 1.0
    scores = model.score([[1, 2, 3]])
    assert scores[0, 1:].abs().max() <= 1 / 0.07 + 1e-4  # cosine / temperature is bounded


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda f: f[:-1], r"40 rows .* 40 items: expected 41 rows"),
        (lambda f: torch.cat([f, f[:2]]), r"43 rows"),
        (lambda f: f[:, 0], r"2-D"),
        (lambda f: f.index_put((torch.tensor([3]), torch.tensor([1])), torch.tensor(float("nan"))), r"NaN or Inf .* \[3\]"),
        (lambda f: f.index_put((torch.tensor([7]),), torch.tensor(float("inf"))), r"NaN or Inf .* \[7\]"),
        (lambda f: f.long(), r"floating point"),
    ],
    ids=["too-few-rows", "too-many-rows", "1-d", "nan", "inf", "integer"],
)
def test_bad_frozen_embeddings_raise_data_error(splits, features, make, match):
    with pytest.raises(DataError, match=match):
        SASRec(**FAST).fit(splits, make(features.clone()), progress=False)


# ---------------------------------------------------------------- persistence and registration


@pytest.mark.parametrize("fixture", ["id_model", "frozen_model", "transductive_model"])
def test_save_load_round_trip_gives_identical_scores(fixture, request, tmp_path, splits):
    model = request.getfixturevalue(fixture)
    model.save(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"model.safetensors", "config.json"}
    loaded = SASRec.load(tmp_path / "m")
    histories = [h for h, _ in splits.test]
    assert torch.equal(loaded.score(histories), model.score(histories))
    assert loaded.options == model.options
    assert not loaded.net.training


def test_load_rejects_a_foreign_directory(tmp_path):
    from earec_core.errors import ArtifactError

    with pytest.raises(ArtifactError, match="cannot read"):
        SASRec.load(tmp_path)


def test_plugin_registers_through_the_entry_point():
    from earec_core.plugins import broken_plugins, registry

    reg = registry()
    assert "sasrec" not in broken_plugins()
    assert reg.recommenders.get("sasrec") is SASRec, reg.problems
    assert reg.recommender_owner["sasrec"] == "sasrec"


def test_meanpool_recommender_learns_the_cycle_region(splits):
    """The second built-in recommender: registered, trains, and ranks far better than chance."""
    from earec_core.plugins import registry
    from earec_sasrec import MeanPool

    assert registry().recommender("meanpool") is MeanPool
    model = MeanPool(**FAST)
    model.fit(splits, seed=0, progress=False)
    metrics, ranks = evaluate(model.score, splits.test, splits.n_items, KS)
    assert ranks.numel() == len(splits.test)
    assert metrics["HR@10"] > 2 * 10 / N_ITEMS  # random ranking gives ~0.25


# ---------------------------------------------------------------- vectors and chunked evaluation


@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.parametrize("mode", ["id", "frozen"])
def test_user_vector_shortcut_equals_the_full_forward(mode, n_layers):
    """user_vectors runs the last layer for the last query only; it must equal forward(seq)[:, -1]."""
    torch.manual_seed(0)
    net = SASRecNet(N_ITEMS, hidden_size=32, n_layers=n_layers, inner_size=64, max_len=12, dropout=0.5,
                    item_features=random_features() if mode == "frozen" else None).eval()
    seq = left_pad([[3, 4, 5, 6, 7], list(range(1, 15)), [9], [2, 2, 8]], 12)
    with torch.no_grad():
        torch.testing.assert_close(net.user_vectors(seq), net.forward(seq)[:, -1], atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def temperature_model(splits, features):
    model = SASRec(**{**FAST, "max_epochs": 3, "temperature": 0.07})
    model.fit(splits, features, progress=False)
    return model


@pytest.mark.parametrize("fixture", ["id_model", "frozen_model", "temperature_model"])
def test_vectors_reproduce_score_exactly(fixture, request, splits):
    model = request.getfixturevalue(fixture)
    histories = [h for h, _ in splits.test] + [[5], list(range(1, 30))]
    users, items = model.user_vectors(histories), model.item_vectors()
    assert model.has_vectors()
    assert users.shape == (len(histories), FAST["hidden_size"]) and items.shape == (N_ITEMS + 1, FAST["hidden_size"])
    assert torch.equal(model.score(histories), users @ items.T)
    if fixture == "temperature_model":  # cosine / temperature: unit item rows, user rows of norm 1 / 0.07
        torch.testing.assert_close(items[1:].norm(dim=1), torch.ones(N_ITEMS))
        torch.testing.assert_close(users.norm(dim=1), torch.full((len(histories),), 1 / 0.07))


@pytest.mark.parametrize("fixture", ["id_model", "temperature_model"])
def test_chunked_evaluation_gives_the_dense_ranks(fixture, request, splits):
    model = request.getfixturevalue(fixture)
    dense_metrics, dense = evaluate(model.score, splits.test, N_ITEMS, KS, batch_size=7, chunked_min_items=None)
    metrics, ranks = evaluate(model, splits.test, N_ITEMS, KS, batch_size=7, chunk_size=9, chunked_min_items=1)
    assert torch.equal(ranks, dense) and metrics == dense_metrics


# ---------------------------------------------------------------- sampled softmax


def test_sampled_loss_with_every_item_as_negative_is_the_full_softmax():
    """With negatives = all items once, uniform: the sampled softmax *is* the full softmax (accidental
    hits removed); with popularity log q: the full softmax of s_j - log q_j."""
    torch.manual_seed(0)
    net = SASRecNet(N_ITEMS, hidden_size=16, inner_size=32, max_len=6, dropout=0.0).eval()
    inputs = left_pad([[1, 2, 3, 4], [7, 8], [9, 10, 11, 12, 13]], 5)
    targets = left_pad([[2, 3, 4, 5], [8, 9], [10, 11, 12, 13, 14]], 5)
    everything = torch.arange(1, N_ITEMS + 1)
    with torch.no_grad():
        torch.testing.assert_close(net.sampled_loss(inputs, targets, everything), net.loss(inputs, targets))
        counts = torch.randint(1, 20, (N_ITEMS + 1,)).double()
        log_q = (counts / counts[1:].sum()).log().float()
        log_q[0] = -torch.inf
        hidden = net.forward(inputs)[targets > 0]
        corrected = net.logits(hidden, net.item_table()[1:]) - log_q[1:]
        expected = torch.nn.functional.cross_entropy(corrected, targets[targets > 0] - 1)
        torch.testing.assert_close(net.sampled_loss(inputs, targets, everything, log_q), expected)


@pytest.mark.parametrize("negatives", ["uniform", "popularity"])
def test_sampled_softmax_trains(splits, negatives):
    from earec_sasrec.lit import SASRecLit, collate_windows

    torch.manual_seed(0)
    net = SASRecNet(N_ITEMS, hidden_size=32, inner_size=64, max_len=10, dropout=0.1)
    counts = splits.train_item_counts() if negatives == "popularity" else None
    lit = SASRecLit(net, 1e-2, 0.0, KS, loss="sampled", n_negatives=8, item_counts=counts)
    batch = collate_windows(train_windows(splits.train, 10))
    with torch.no_grad():
        before = net.loss(*batch).item()  # measured with the full softmax: the real objective
    optimizer = lit.configure_optimizers()
    for _ in range(30):  # what SASRecLit.training_step does with loss="sampled"
        optimizer.zero_grad()
        net.sampled_loss(*batch, lit.sample_negatives(), lit.log_q).backward()
        optimizer.step()
    with torch.no_grad():
        after = net.loss(*batch).item()
    assert after < 0.7 * before, (before, after)
    if counts is not None:  # popularity sampling only draws items seen in training
        assert all(counts[lit.sample_negatives()] > 0)


def test_sampled_softmax_fit_learns_the_cycle(splits):
    model = SASRec(**{**FAST, "loss": "sampled", "n_negatives": 10, "negatives": "popularity"})
    model.fit(splits, seed=0, progress=False)
    metrics, _ = evaluate(model, splits.test, N_ITEMS, KS)
    assert metrics["HR@5"] > 0.5, metrics  # random: ~0.17


@pytest.mark.parametrize(
    "options, match",
    [({"loss": "bpr"}, "loss must be one of full, sampled"),
     ({"negatives": "hard"}, "negatives must be one of uniform, popularity"),
     ({"n_negatives": 0}, "n_negatives must be a positive integer"),
     ({"n_negatives": 2.5}, "n_negatives must be a positive integer")],
)
def test_sampled_softmax_options_are_validated(options, match):
    with pytest.raises(EarecError, match=match):
        SASRec(**options)
