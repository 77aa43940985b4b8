"""The synthetic data of bench/scale.py: generator, training windows, test examples (tiny sizes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from earec_sasrec.lit import collate_windows, train_windows


@pytest.fixture(scope="module")
def scale():
    path = Path(__file__).resolve().parents[1] / "bench" / "scale.py"
    spec = importlib.util.spec_from_file_location("bench_scale", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_is_seeded_and_follows_its_specification(scale):
    items, offsets = scale.generate(3000, 500, min_len=5, max_len=20, zipf_a=1.0, p_follow=0.3, seed=1)
    again, _ = scale.generate(3000, 500, min_len=5, max_len=20, zipf_a=1.0, p_follow=0.3, seed=1)
    other, _ = scale.generate(3000, 500, min_len=5, max_len=20, zipf_a=1.0, p_follow=0.3, seed=2)
    assert np.array_equal(items, again) and not np.array_equal(items[:100], other[:100])
    lengths = np.diff(offsets)
    assert offsets[0] == 0 and offsets[-1] == len(items) and len(offsets) == 3001
    assert lengths.min() == 5 and lengths.max() == 20
    assert items.dtype == np.int32 and items.min() >= 1 and items.max() <= 500
    # successor pattern: ~p_follow of within-sequence pairs (plus chance successors of fresh draws)
    pairs = np.ones(len(items) - 1, dtype=bool)
    pairs[offsets[1:-1] - 1] = False  # pairs that straddle two users
    successor = (items[:-1].astype(np.int64) % 500 + 1) == items[1:]
    assert 0.28 < successor[pairs].mean() < 0.36
    # Zipf popularity: the most frequent item is ~1/H(500) ~ 15% of fresh draws, far above uniform (0.2%)
    counts = np.bincount(items, minlength=501)
    assert counts.max() / counts.sum() > 0.05


def test_generator_rejects_bad_sizes(scale):
    with pytest.raises(ValueError, match="min_len"):
        scale.generate(10, 10, min_len=3)
    with pytest.raises(ValueError, match="min_len"):
        scale.generate(10, 10, min_len=8, max_len=6)


def test_window_batch_equals_the_plugins_windows(scale):
    items, offsets = scale.generate(50, 40, min_len=5, max_len=30, seed=0)
    users = np.array([3, 0, 17, 49])
    inputs, targets = scale.window_batch(items, offsets, users, max_len=10)
    train = [items[offsets[u] : offsets[u + 1] - 2].tolist() for u in users]
    # the most recent window of each user, as earec_sasrec.lit.train_windows cuts it (its first window)
    expected = collate_windows([train_windows([seq], 10)[0] for seq in train])
    assert torch.equal(inputs, expected[0]) and torch.equal(targets, expected[1])
    examples = scale.test_examples(items, offsets, users)
    assert [t for _, t in examples] == [int(items[offsets[u + 1] - 1]) for u in users]
    assert all(len(h) == offsets[u + 1] - offsets[u] - 1 for (h, _), u in zip(examples, users))
    mask = scale.training_mask(offsets, len(items))
    assert mask.sum() == len(items) - 2 * 50
