"""DynaST dense attention with a learned prune mask (the coarsest, 1/8 scale).

Public API (pure functions on tensors; the bench times them against the naive twin
``dynast_cli.attention.reference.dense_attention_naive``, which has the same signature minus ``chunk``)::

    dense_attention(q, k, q_prune, k_prune, v, smooth=None, top_k=None, v2=None, chunk=None)
        q (B, C, Hq, Wq), k (B, C, Hk, Wk), q_prune (B, P, Hq, Wq), k_prune (B, P, Hk, Wk),
        v (B, Cv, Hk, Wk), v2 (B, C2, Hk, Wk) or None
        -> AttentionResult(output (B, Cv, Hq, Wq), conf (B, 1, Hq, Wq),
                           top_k (B, Hq*Wq, top_k) int64 or None, warped (B, C2, Hq, Wq) or None)

    sign_with_sigmoid_grad(x) -> (x > 0) as float, with the gradient of sigmoid(x) (straight-through)

How the prune mask works (as the official code): every query i and key j get a learned prune
embedding; match (i, j) is kept iff <q_prune_i, k_prune_j> > 0. The softmax is taken over ALL keys
and then multiplied by the 0/1 mask, so each query keeps a variable number of matches and its
attention mass ``conf`` (sum of the kept weights, in [0, 1]) says how much it found in the reference;
the generator fills the rest (1 - conf) from the query's own SPADE branch. Scores are divided by
``smooth`` (a temperature; None means sqrt(C), which is what the official model uses at 1/8).
``top_k`` returns, per query, the indices of its top-k keys by raw score: they seed the sparse
attention at the next scale (``dynast_cli.attention.sparse``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class AttentionResult(NamedTuple):
    """What every DynaST attention function returns (see the module docstrings for shapes)."""

    output: torch.Tensor
    conf: torch.Tensor
    top_k: torch.Tensor | None
    warped: torch.Tensor | None


class _SignWithSigmoidGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        sig = torch.sigmoid(x)
        ctx.save_for_backward(sig)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (sig,) = ctx.saved_tensors
        return grad * sig * (1 - sig)


def sign_with_sigmoid_grad(x: torch.Tensor) -> torch.Tensor:
    """Forward: 1 where x > 0 else 0. Backward: the derivative of sigmoid(x) (the official prune gate)."""
    if not torch.is_grad_enabled() or not x.requires_grad:
        return (x > 0).to(x.dtype)
    return _SignWithSigmoidGrad.apply(x)


def warp_weights(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax used for the training-time warped reference: scores with the KEPT matches set to -1e4.

    This reproduces the official code (``masked_fill(cor, mask.bool(), -1e4)``), which fills the
    positions the prune mask keeps; the warping loss was trained that way.
    """
    return torch.softmax(scores.masked_fill(mask.bool(), -1e4), dim=-1)


def dense_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    q_prune: torch.Tensor,
    k_prune: torch.Tensor,
    v: torch.Tensor,
    smooth: float | None = None,
    top_k: int | None = None,
    v2: torch.Tensor | None = None,
    chunk: int | None = None,
) -> AttentionResult:
    """Masked dense attention of every query position over every key position.

    ``chunk`` bounds memory: queries are processed ``chunk`` positions at a time, so the score
    matrix held at once is (B, chunk, Hk*Wk) instead of (B, Hq*Wq, Hk*Wk). Results do not depend on it.
    """
    b, c, hq, wq = q.shape
    p = q_prune.shape[1]
    n_q = hq * wq
    temperature = c**0.5 if smooth is None else smooth
    qf = q.flatten(2).transpose(1, 2)  # (B, Nq, C)
    kf = k.flatten(2)  # (B, C, Nk)
    qpf = q_prune.flatten(2).transpose(1, 2)  # (B, Nq, P)
    kpf = k_prune.flatten(2)  # (B, P, Nk)
    vf = v.flatten(2).transpose(1, 2)  # (B, Nk, Cv)
    v2f = None if v2 is None else v2.flatten(2).transpose(1, 2)  # (B, Nk, C2)

    outs, confs, tops, warps = [], [], [], []
    step = n_q if not chunk else chunk
    for s in range(0, n_q, step):
        scores = torch.bmm(qf[:, s : s + step], kf) / temperature  # (B, n, Nk)
        mask = sign_with_sigmoid_grad(torch.bmm(qpf[:, s : s + step], kpf) / p)  # (B, n, Nk)
        kept = torch.softmax(scores, dim=-1) * mask  # (B, n, Nk)
        outs.append(torch.bmm(kept, vf))  # (B, n, Cv)
        confs.append(kept.sum(-1))  # (B, n)
        if top_k is not None:
            tops.append(torch.topk(scores, top_k, dim=-1).indices)  # (B, n, K)
        if v2f is not None:
            warps.append(torch.bmm(warp_weights(scores, mask), v2f))  # (B, n, C2)

    output = torch.cat(outs, 1).transpose(1, 2).reshape(b, -1, hq, wq)
    conf = torch.cat(confs, 1).view(b, 1, hq, wq)
    idx = torch.cat(tops, 1) if top_k is not None else None
    warped = torch.cat(warps, 1).transpose(1, 2).reshape(b, -1, hq, wq) if v2f is not None else None
    return AttentionResult(output, conf, idx, warped)
