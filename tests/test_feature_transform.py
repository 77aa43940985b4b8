"""Frozen item features are whitened (or standardised) before the recommender's adaptor."""

from __future__ import annotations

import pytest
import torch

from earec_core.errors import EarecError
from earec_core.recommend import transform_features


def anisotropic(n=200, d=16, seed=0):
    """LLM-like states: a shared direction and one massive dimension dominate, rank d - 2."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(n, d - 2, generator=g) @ torch.randn(d - 2, d, generator=g)
    x = 5.0 + low
    x[:, 3] += 300.0  # a massive activation
    return x


def test_whitening_gives_identity_covariance_and_drops_null_directions():
    x = anisotropic()
    cos = torch.nn.functional.cosine_similarity(x[:, None], x[None], dim=-1)
    assert cos.mean() > 0.9  # the problem: nearly collinear rows
    w = transform_features(x, "whiten")
    assert w.shape == (200, 14)  # two null directions of the rank-14 input dropped
    torch.testing.assert_close(w.mean(0), torch.zeros(14), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.cov(w.T), torch.eye(14), atol=1e-3, rtol=0)
    # an invertible re-expression of the centred rows: nothing an adaptor could use is lost
    centred = x.double() - x.double().mean(0)
    coef = torch.linalg.lstsq(w.double(), centred).solution
    torch.testing.assert_close(w.double() @ coef, centred, atol=1e-6 * centred.abs().max(), rtol=0)


def test_standardize_and_none():
    x = anisotropic()
    z = transform_features(x, "standardize")
    torch.testing.assert_close(z.std(0), torch.ones(16), atol=1e-4, rtol=0)
    assert torch.equal(transform_features(x, "none"), x)


def test_unknown_transform_is_a_clear_error():
    with pytest.raises(EarecError, match="feature_transform must be one of none, standardize, whiten"):
        transform_features(torch.ones(3, 2), "pca")
