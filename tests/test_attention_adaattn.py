"""AdaAttN attention: optimised == naive twin, chunking, official seeded subsampling."""

from __future__ import annotations

import pytest
import torch

from dynast_cli.attention.adaattn import adaattn_stats, style_sample_index
from dynast_cli.attention.reference import adaattn_stats_naive, style_sample_index_naive


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One thread: tiny tensors gain nothing from two, and the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(b: int = 2, ck: int = 13, c: int = 7, nq: int = 37, nk: int = 29):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, ck, nq, generator=g), torch.randn(b, ck, nk, generator=g), torch.randn(b, c, nk, generator=g)


@pytest.mark.parametrize("kind", ["softmax", "cosine"])
def test_fast_matches_naive_on_odd_sizes(kind):
    q, k, v = _inputs()
    mean, std = adaattn_stats(q, k, v, kind)
    mean_ref, std_ref = adaattn_stats_naive(q, k, v, kind)
    assert mean.shape == std.shape == (2, 7, 37)
    torch.testing.assert_close(mean, mean_ref, rtol=1e-5, atol=1e-5)
    # std = sqrt(E[v^2] - mean^2): compare the variance; the sqrt magnifies float noise near 0
    torch.testing.assert_close(std**2, std_ref**2, rtol=1e-5, atol=1e-5)
    assert (std >= 0).all()


@pytest.mark.parametrize("kind", ["softmax", "cosine"])
@pytest.mark.parametrize("chunk", [1, 5, 36, 1000])
def test_chunked_equals_unchunked(kind, chunk):
    q, k, v = _inputs()
    (mean, std), (mean_c, std_c) = adaattn_stats(q, k, v, kind), adaattn_stats(q, k, v, kind, chunk=chunk)
    torch.testing.assert_close(mean, mean_c, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(std**2, std_c**2, rtol=1e-5, atol=1e-5)


def test_subnormal_softmax_weights_are_flushed_without_moving_the_statistics():
    """Scores spread over hundreds (as VGG features give) leave many softmax weights subnormal, which made
    the bmm crawl (-m adaattn: 14.3 s -> 2.7 s flushed). The flushed statistics equal the unflushed ones
    within n_keys * finfo.tiny * max|v| (here far below 1e-30)."""
    g = torch.Generator().manual_seed(3)
    q, k = 30 * torch.randn(1, 8, 64, generator=g), torch.randn(1, 8, 256, generator=g)
    v = torch.rand(1, 5, 256, generator=g)
    scores = torch.bmm(q.transpose(1, 2), k)
    plain = torch.softmax(scores, dim=-1)
    tiny = torch.finfo(plain.dtype).tiny
    assert ((plain > 0) & (plain < tiny)).sum() > 100  # the case this is about
    moments = torch.cat([v, v * v], dim=1)
    reference = torch.bmm(moments, plain.transpose(1, 2))  # the unflushed statistics, straightforwardly
    mean, std = adaattn_stats(q, k, v, "softmax")
    torch.testing.assert_close(mean, reference[:, :5], rtol=0, atol=256 * tiny)
    torch.testing.assert_close(std**2, torch.relu(reference[:, 5:] - reference[:, :5] ** 2), rtol=0, atol=1e-6)


def test_softmax_is_unscaled_and_cosine_is_bounded():
    # one key far more similar than the other: unscaled softmax follows it almost exactly,
    # the bounded cosine weights (in [0, 2] before normalisation) keep both
    q = torch.tensor([[[10.0], [0.0]]])  # (1, 2, 1)
    k = torch.tensor([[[1.0, -1.0], [0.0, 0.0]]])  # (1, 2, 2)
    v = torch.tensor([[[1.0, 0.0]]])  # (1, 1, 2)
    mean, std = adaattn_stats(q, k, v, "softmax")
    assert mean.item() == pytest.approx(torch.sigmoid(torch.tensor(20.0)).item(), abs=1e-6)
    mean_cos, _ = adaattn_stats(q, k, v, "cosine")
    assert mean_cos.item() == pytest.approx(2.0 / (2.0 + 0.0 + 1e-5), abs=1e-5)  # relu(cos+1) = 2 and 0


def test_constant_value_has_zero_std():
    q, k, _ = _inputs()
    v = torch.full((2, 3, 29), 4.0)
    mean, std = adaattn_stats(q, k, v)
    torch.testing.assert_close(mean, torch.full_like(mean, 4.0))
    assert std.abs().max() < 1e-2  # sqrt of float noise around 0, never NaN
    assert not torch.isnan(std).any()


def test_unknown_kind_is_rejected():
    q, k, v = _inputs()
    with pytest.raises(ValueError, match="kind"):
        adaattn_stats(q, k, v, "dot")


@pytest.mark.parametrize("n,max_sample", [(5000, 4096), (300, 7)])
def test_subsampling_reproduces_the_official_seeded_randperm(n, max_sample):
    index = style_sample_index(n, max_sample, seed=6666)
    official = style_sample_index_naive(n, max_sample, seed=6666)
    assert index is not None and torch.equal(index, official)
    assert len(index) == max_sample and len(set(index.tolist())) == max_sample


def test_subsampling_leaves_the_global_rng_alone_and_skips_small_maps():
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    style_sample_index(100, 10, seed=6666)
    assert torch.equal(torch.rand(3), expected)
    assert style_sample_index(4096, 4096, seed=6666) is None
