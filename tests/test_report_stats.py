"""The statistics behind `earec report` (fast; the end-to-end report is in test_report.py)."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("scipy")

from earec_core.metrics import metrics_from_ranks, ndcg_at  # noqa: E402
from earec_core.report import item_text, paired_ttest  # noqa: E402


def test_ndcg_at_matches_the_metric_definition():
    ranks = torch.tensor([0, 1, 9, 10, 40])
    per_user = ndcg_at(ranks)
    assert per_user.tolist() == pytest.approx([1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0, 0.0])
    assert per_user.mean().item() == pytest.approx(metrics_from_ranks(ranks)["NDCG@10"], abs=1e-6)


def test_paired_ttest_is_scipy_ttest_rel_and_handles_constant_differences():
    from scipy import stats

    a, b = torch.tensor([0, 3, 1, 20, 2, 0]), torch.tensor([5, 3, 12, 20, 0, 9])
    res = paired_ttest(a, b)
    ref = stats.ttest_rel(ndcg_at(a).numpy(), ndcg_at(b).numpy())
    assert res["t"] == pytest.approx(ref.statistic) and res["p"] == pytest.approx(ref.pvalue) and res["n_users"] == 6
    same = paired_ttest(a, a)
    assert same["t"] is None and same["p"] is None and "undefined" in same["note"]
    with pytest.raises(Exception, match="different user sets"):
        paired_ttest(a, b[:3])


def test_item_text_is_title_then_attributes():
    from earec_core.data import Item

    item = Item(id="i1", anchor="Toy Story", attributes={"release_year": "1995", "genre": "Animation  Comedy"})
    assert item_text(item) == "Toy Story. release year: 1995; genre: Animation Comedy"
