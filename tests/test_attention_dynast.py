"""DynaST attention: the fast functions against their naive twins (written after the official code)."""

from __future__ import annotations

import pytest
import torch

from dynast_cli.attention import reference as ref
from dynast_cli.attention.dense import dense_attention, sign_with_sigmoid_grad
from dynast_cli.attention.sparse import (
    inner_scale_candidates,
    inner_scale_sparse_attention,
    inter_scale_candidates,
    inter_scale_sparse_attention,
    propagate_top_k,
)

# Every comparison runs in float64: top-k choices and the 0/1 prune gate are discrete, and in float32 a
# near-tie (or a gate score within rounding of 0) could resolve differently on another CPU's kernels.
TOL = {"atol": 1e-9, "rtol": 1e-9}


def _inputs(hq, wq, hk, wk, c=6, p=4, cv=5, c2=3, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    f64 = {"generator": g, "dtype": torch.float64}
    q = torch.randn(b, c, hq, wq, **f64)
    k = torch.randn(b, c, hk, wk, **f64)
    qp = torch.randn(b, p, hq, wq, **f64)
    kp = torch.randn(b, p, hk, wk, **f64)
    v = torch.randn(b, cv, hk, wk, **f64)
    v2 = torch.randn(b, c2, hk, wk, **f64)
    return q, k, qp, kp, v, v2


def _assert_same(a, b_):
    for x, y in zip(a, b_):
        if x is None or y is None:
            assert x is None and y is None
        elif x.dtype == torch.int64:
            assert torch.equal(x, y)
        else:
            torch.testing.assert_close(x, y, **TOL)


@pytest.mark.parametrize("smooth", [None, 0.5])
def test_dense_matches_naive_odd_sizes_and_chunks(smooth):
    q, k, qp, kp, v, v2 = _inputs(5, 7, 6, 3)
    naive = ref.dense_attention_naive(q, k, qp, kp, v, smooth, top_k=4, v2=v2)
    assert naive.output.shape == (2, 5, 5, 7) and naive.conf.shape == (2, 1, 5, 7)
    assert naive.top_k.shape == (2, 35, 4) and naive.warped.shape == (2, 3, 5, 7)
    for chunk in (None, 1, 8, 1000):
        _assert_same(dense_attention(q, k, qp, kp, v, smooth, top_k=4, v2=v2, chunk=chunk), naive)
    # the mask really prunes: some matches kept, some not, so conf lies strictly inside (0, 1) somewhere
    assert 0 < naive.conf.min() < naive.conf.max() <= 1 + 1e-6


def test_dense_without_optional_outputs():
    q, k, qp, kp, v, _ = _inputs(4, 4, 4, 4)
    res = dense_attention(q, k, qp, kp, v)
    assert res.top_k is None and res.warped is None


def test_inter_scale_matches_naive_odd_window_counts():
    # 3 x 5 query windows, a 4 x 3 coarse key grid; K = 3
    q, k, qp, kp, v, v2 = _inputs(6, 10, 8, 6, seed=1)
    prev = torch.randint(0, 12, (2, 15, 3), generator=torch.Generator().manual_seed(2))
    naive = ref.inter_scale_sparse_attention_naive(q, k, qp, kp, v, prev, 0.3, True, v2)
    assert naive.output.shape == (2, 5, 6, 10) and naive.top_k.shape == (2, 60, 3)
    for chunk in (1, 4, 7, 10_000):
        _assert_same(inter_scale_sparse_attention(q, k, qp, kp, v, prev, 0.3, True, v2, chunk=chunk), naive)
    no_idx = inter_scale_sparse_attention(q, k, qp, kp, v, prev, 0.3, need_idx=False)
    assert no_idx.top_k is None and no_idx.warped is None
    torch.testing.assert_close(no_idx.output, naive.output, **TOL)


def test_inner_scale_matches_naive_odd_sizes():
    q, k, qp, kp, v, v2 = _inputs(5, 7, 6, 9, seed=3)
    q, k = 0.3 * q, 0.3 * k  # scores of the size the model produces, sharpened by smooth=0.01
    prev = torch.randint(0, 54, (2, 35, 4), generator=torch.Generator().manual_seed(4))
    naive = ref.inner_scale_sparse_attention_naive(q, k, qp, kp, v, prev, 0.01, True, v2)
    assert naive.output.shape == (2, 5, 5, 7) and naive.top_k.shape == (2, 35, 4)
    for chunk in (1, 6, 35, 4096):
        _assert_same(inner_scale_sparse_attention(q, k, qp, kp, v, prev, 0.01, True, v2, chunk=chunk), naive)


CL = torch.channels_last


@pytest.mark.parametrize("variant", ["inter", "inner"])
@pytest.mark.parametrize("layouts", [(CL, CL, CL), (None, CL, CL), (CL, None, None), (None, CL, None), (None, None, CL)])
@pytest.mark.parametrize("shared", [False, True])
def test_sparse_channels_last_inputs_match_naive(variant, layouts, shared):
    """The inference encoder gives channels-last features (the style default's matching); each input is read
    in the layout it comes in, mixed ones too, with the naive twin's results. A position-major value table
    gives a position-major output (no transposed copy of it was made). ``shared``: one style's keys and values
    expanded over a batch of contents (batch stride 0), as the model and ``dynast video`` call them."""
    q, k, qp, kp, v, v2 = _inputs(6, 10, 8, 6, c=7, p=3, cv=9, c2=4, seed=10)
    q, k = 0.3 * q, 0.3 * k
    if shared:
        k, kp, v, v2 = (x[:1].expand_as(x) for x in (k, kp, v, v2))
    if variant == "inter":
        prev = torch.randint(0, 12, (2, 15, 3), generator=torch.Generator().manual_seed(11))
    else:
        prev = torch.randint(0, 48, (2, 60, 3), generator=torch.Generator().manual_seed(11))
    fast_fn = inter_scale_sparse_attention if variant == "inter" else inner_scale_sparse_attention
    naive = getattr(ref, f"{variant}_scale_sparse_attention_naive")(q, k, qp, kp, v, prev, 0.05, True, v2)
    fmt_q, fmt_k, fmt_v = layouts

    def as_(x, fmt):
        if shared and x.stride(0) == 0:  # keep the expansion: lay out the one item, expand it again
            return (x[:1] if fmt is None else x[:1].contiguous(memory_format=fmt)).expand_as(x)
        return x if fmt is None else x.contiguous(memory_format=fmt)

    args = (as_(q, fmt_q), as_(k, fmt_k), as_(qp, fmt_q), as_(kp, fmt_k), as_(v, fmt_v))
    for chunk in (1, 7, 4096):
        res = fast_fn(*args, prev, 0.05, True, as_(v2, fmt_v), chunk=chunk)
        _assert_same(res, naive)
        assert res.output.is_contiguous(memory_format=CL) == (fmt_v is CL)


def test_inner_scale_candidates_brute_force():
    """Own matches, then each 4-neighbour's matches moved back one step (replicate border, clipped)."""
    hq, wq, hk, wk, kk = 3, 4, 5, 3, 2
    prev = torch.randint(0, hk * wk, (1, hq * wq, kk), generator=torch.Generator().manual_seed(5))
    cand = inner_scale_candidates(prev, (hq, wq), (hk, wk))
    assert cand.shape == (1, hq * wq, 5 * kk)
    for i in range(hq):
        for j in range(wq):
            expected = [int(t) for t in prev[0, i * wq + j]]
            for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):  # up, down, left, right neighbour
                ni, nj = min(max(i + di, 0), hq - 1), min(max(j + dj, 0), wq - 1)
                for t in prev[0, ni * wq + nj].tolist():
                    y, x = divmod(t, wk)
                    y, x = min(max(y - di, 0), hk - 1), min(max(x - dj, 0), wk - 1)
                    expected.append(y * wk + x)
            assert cand[0, i * wq + j].tolist() == expected


def test_inter_scale_candidates_are_children():
    prev = torch.tensor([[[0, 5]]])  # coarse grid 2 x 3 (fine 4 x 6)
    cand = inter_scale_candidates(prev, (4, 6))
    # coarse 0 = (0,0) -> fine (0,0),(0,1),(1,0),(1,1); coarse 5 = (1,2) -> fine (2,4),(2,5),(3,4),(3,5)
    assert cand.tolist() == [[[0, 1, 6, 7, 16, 17, 22, 23]]]


def test_top_k_propagation_matches_brute_force_when_k_covers_everything():
    """With every coarse position as a match, inter-scale attention sees every key: its output equals
    dense attention and its propagated top-k equals a brute-force top-k over all keys."""
    hq = wq = hk = wk = 6
    q, k, qp, kp, v, _ = _inputs(hq, wq, hk, wk, seed=6)
    n_coarse = (hk // 2) * (wk // 2)
    g = torch.Generator().manual_seed(7)
    prev = torch.stack([torch.stack([torch.randperm(n_coarse, generator=g) for _ in range(9)]) for _ in range(2)])
    res = inter_scale_sparse_attention(q, k, qp, kp, v, prev, smooth=0.7, chunk=8)
    dense = dense_attention(q, k, qp, kp, v, smooth=0.7)
    torch.testing.assert_close(res.output, dense.output, **TOL)
    torch.testing.assert_close(res.conf, dense.conf, **TOL)
    scores = torch.einsum("bcn,bcm->bnm", q.flatten(2), k.flatten(2))  # (B, Nq, Nk)
    brute = torch.topk(scores, n_coarse, dim=-1).indices
    assert torch.equal(res.top_k.sort(-1).values, brute.sort(-1).values)


def test_propagate_top_k_shared_and_per_query_candidates():
    attn = torch.tensor([[[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]])  # (1, G=2, M=3)
    shared = torch.tensor([[10, 20, 30]])  # (1, 3)
    assert propagate_top_k(attn, shared, 2).tolist() == [[[20, 30], [10, 30]]]
    per_query = torch.tensor([[[1, 2, 3], [4, 5, 6]]])
    assert propagate_top_k(attn, per_query, 1).tolist() == [[[2], [4]]]


def test_sign_gate_forward_and_sigmoid_gradient():
    x = torch.tensor([-2.0, 0.0, 0.5, 3.0], requires_grad=True)
    y = sign_with_sigmoid_grad(x)
    assert y.tolist() == [0.0, 0.0, 1.0, 1.0]
    y.sum().backward()
    s = torch.sigmoid(x.detach())
    torch.testing.assert_close(x.grad, s * (1 - s))


@pytest.mark.parametrize("variant", ["inter", "inner"])
def test_sparse_gradients_match_naive(variant):
    """Training goes through the fast functions: their gradients equal the naive ones."""
    q, k, qp, kp, v, _ = _inputs(4, 6, 4, 6, seed=8)
    n_prev = 6 if variant == "inter" else 24
    prev = torch.randint(0, n_prev, (2, n_prev, 2), generator=torch.Generator().manual_seed(9))
    fast_fn = inter_scale_sparse_attention if variant == "inter" else inner_scale_sparse_attention
    naive_fn = getattr(ref, f"{variant}_scale_sparse_attention_naive")
    grads = []
    for fn, kwargs in ((fast_fn, {"chunk": 5}), (naive_fn, {})):
        leaves = [t.clone().requires_grad_() for t in (q, k, qp, kp, v)]
        res = fn(*leaves, prev, 0.5, False, **kwargs)
        (res.output.square().sum() + res.conf.sum()).backward()
        grads.append([t.grad for t in leaves])
    for a, b_ in zip(*grads):
        torch.testing.assert_close(a, b_, **TOL)
