"""StyA2K all-to-key attention: optimised == naive twins on any size, == the official formulation
on square multiples of the block."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dynast_cli.attention.all_to_key import (
    aggregate_blocks,
    block_valid,
    distributed_attention,
    from_blocks,
    progressive_attention,
    to_blocks,
)
from dynast_cli.attention.reference import (
    aggregate_blocks_naive,
    distributed_attention_naive,
    progressive_attention_naive,
)

HEADS = 8


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One thread: tiny tensors gain nothing from two, and the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _maps(*shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g) for s in shapes]


# --- the official formulation, written as in LearningHx/StyA2K models/networks.py -----------------


def _official_block(x, patch):
    b, c, h, w = x.shape
    y = F.unfold(x, kernel_size=patch, stride=patch).permute(0, 2, 1)
    return y.view(b, -1, c, patch * patch).permute(0, 2, 1, 3)


def _official_unblock(x, patch, h):
    b, c, l, r = x.shape
    x = x.permute(0, 2, 1, 3).contiguous().view(b, l, -1).permute(0, 2, 1)
    return F.fold(x, h, kernel_size=patch, stride=patch)


def official_attention(q1, k1, v1, q2, k2, v2, region, alpha, beta, head=HEADS):
    """A2K.forward after the 1x1 projections, before fusion: (DA_unblock, PA_unblock)."""
    b, c, h, w = q1.shape
    da_q = _official_block(q1, region)
    b, c, n, r = da_q.shape
    da_q = da_q.view(b, head, c // head, n, r)
    da_k = _official_block(k1, region).view(b, head, c // head, n, r)
    da_v = _official_block(v1, region).view(b, head, c // head, n, r)
    pa_q = _official_block(q2, region).view(b, head, c // head, n, r)
    pa_k = _official_block(k2, region).view(b, head, c // head, n, r)
    pa_v = _official_block(v2, region).view(b, head, c // head, n, r)
    k_centers, v_centers = da_k.mean(-1), da_v.mean(-1)
    dis = torch.einsum("bhcx,bhcxy->bhxy", k_centers, da_k)
    sim = torch.sigmoid(beta + alpha * dis)
    k_agg = (torch.einsum("bhxy,bhcxy->bhcx", sim, da_k) + k_centers) / (r + 1)
    v_agg = (torch.einsum("bhxy,bhcxy->bhcx", sim, da_v) + v_centers) / (r + 1)
    scores = torch.softmax(torch.einsum("bhcxy,bhcz->bhyxz", da_q, k_agg), dim=-1)
    da = torch.einsum("bhyxz,bhcz->bhcxy", scores, v_agg)
    da = _official_unblock(da.contiguous().view(b, c, n, r), region, h)
    logits = torch.einsum("bhcxy,bhczy->bhxz", pa_q, pa_k)
    index = torch.argmax(logits, dim=-1).view(b, head, 1, n, 1).expand_as(pa_k)
    k_re, v_re = torch.gather(pa_k, -2, index), torch.gather(pa_v, -2, index)
    scores2 = torch.softmax(torch.einsum("bhcxy,bhcxz->bhxyz", pa_q, k_re), dim=-1)
    pa = torch.einsum("bhxyz,bhcxz->bhcxy", scores2, v_re)
    return da, _official_unblock(pa.contiguous().view(b, c, n, r), region, h)


# --- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", [4, 8])
def test_blocks_follow_the_official_unfold_order_and_invert(block):
    (x,) = _maps((2, 16, 2 * block, 3 * block))
    ours = to_blocks(x, block, HEADS)  # (B, hd, N, R, Ch)
    official = _official_block(x, block).view(2, HEADS, 2, 6, block * block).permute(0, 1, 3, 4, 2)
    assert torch.equal(ours, official)
    (odd,) = _maps((1, 16, 13, 7))
    assert torch.equal(from_blocks(to_blocks(odd, block, HEADS), block, (13, 7)), odd)


def test_block_valid_marks_padding():
    valid = block_valid((5, 6), 4)  # 2 x 2 blocks
    assert valid.shape == (4, 16)
    assert valid.sum(1).tolist() == [16, 8, 4, 2]


@pytest.mark.parametrize("size,block", [((13, 21), 4), ((16, 16), 8), ((3, 2), 4), ((9, 17), 8)])
def test_aggregate_matches_naive(size, block):
    key, value = _maps((2, 16, *size), (2, 16, *size))
    fast = aggregate_blocks(key, value, block, HEADS, torch.tensor([0.7]), torch.tensor([-0.2]))
    naive = aggregate_blocks_naive(key, value, block, HEADS, 0.7, -0.2)
    for a, b in zip(fast, naive):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_distributed_matches_naive(chunk):
    q, k, v = _maps((2, 16, 31), (2, 16, 12), (2, 16, 12))
    fast = distributed_attention(q, k, v, HEADS, chunk=chunk)
    torch.testing.assert_close(fast, distributed_attention_naive(q, k, v, HEADS), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "content,style,block",
    [((11, 9), (13, 21), 4), ((10, 19), (7, 5), 4), ((17, 9), (9, 16), 8), ((5, 6), (3, 3), 4)],
)
def test_progressive_matches_naive_on_any_sizes(content, style, block):
    q, k, v = _maps((1, 16, *content), (1, 16, *style), (1, 16, *style), seed=sum(content) + sum(style))
    fast = progressive_attention(q, k, v, block, HEADS)
    assert fast.shape == q.shape
    torch.testing.assert_close(fast, progressive_attention_naive(q, k, v, block, HEADS), rtol=1e-5, atol=1e-5)


def test_progressive_never_attends_to_padding():
    # style 5x5 with 4x4 blocks: the padded positions would be zero keys and values; a query that
    # is strongly negative along every real key would put all its weight on a zero (padded) key
    q = -torch.ones(1, 8, 4, 4) * 5
    k = torch.ones(1, 8, 5, 5)
    v = torch.ones(1, 8, 5, 5)
    out = progressive_attention(q, k, v, 4, 8)
    torch.testing.assert_close(out, torch.ones_like(out))  # only real values (all 1) are averaged


@pytest.mark.parametrize("side,block", [(16, 8), (8, 4), (16, 4)])
def test_square_multiples_equal_the_official_formulation(side, block):
    q1, k1, v1, q2, k2, v2 = _maps(*[(2, 32, side, side)] * 6, seed=side + block)
    alpha, beta = torch.tensor([0.9]), torch.tensor([0.3])
    da_ref, pa_ref = official_attention(q1, k1, v1, q2, k2, v2, block, alpha, beta)
    k_agg, v_agg = aggregate_blocks(k1, v1, block, HEADS, alpha, beta)
    da = distributed_attention(q1.flatten(2), k_agg, v_agg, HEADS).view_as(q1)
    pa = progressive_attention(q2, k2, v2, block, HEADS)
    torch.testing.assert_close(da, da_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pa, pa_ref, rtol=1e-5, atol=1e-5)
