"""Naive twins of the optimised attention functions, for tests and ``dynast bench`` only.

Each function here is written for clarity (plain loops, the papers' formulas, no chunking or
batching tricks) and has the same signature as its optimised counterpart elsewhere in
:mod:`dynast_cli.attention`. Tests assert the two agree.
"""

from __future__ import annotations

import torch


# --- AdaAttN (dynast_cli.attention.adaattn) ---------------------------------------------------


def adaattn_stats_naive(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, kind: str = "softmax"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Twin of :func:`~dynast_cli.attention.adaattn.adaattn_stats`, one query position at a time.

    query (B, Ck, Nq), key (B, Ck, Nk), value (B, C, Nk) -> mean, std (B, C, Nq).
    """
    b, _, nq = query.shape
    mean = torch.zeros(b, value.shape[1], nq, dtype=value.dtype, device=value.device)
    std = torch.zeros_like(mean)
    for i in range(b):
        for j in range(nq):
            q = query[i, :, j]  # (Ck,)
            scores = q @ key[i]  # (Nk,)
            if kind == "softmax":  # subnormal weights flushed to 0, as the fast twin does (see there)
                weights = torch.softmax(scores, dim=0)
                weights = weights.masked_fill(weights < torch.finfo(weights.dtype).tiny, 0.0)
            else:  # the video model's cosine scores
                cos = scores / (q.norm() + 1e-5) / (key[i].norm(dim=0) + 1e-5)
                weights = torch.relu(cos + 1)
                weights = weights / (weights.sum() + 1e-5)
            m = (value[i] * weights).sum(1)  # (C,)
            mean[i, :, j] = m
            std[i, :, j] = torch.sqrt(torch.relu((value[i] ** 2 * weights).sum(1) - m**2))
    return mean, std


def style_sample_index_naive(n: int, max_sample: int, seed: int) -> torch.Tensor | None:
    """Twin of :func:`~dynast_cli.attention.adaattn.style_sample_index`: the official global-RNG draw.

    Note: reseeds the global RNG, exactly as the official code does.
    """
    if n <= max_sample:
        return None
    torch.manual_seed(seed)
    return torch.randperm(n)[:max_sample]


# --- StyA2K all-to-key attention (dynast_cli.attention.all_to_key) ----------------------------
# Blocks are taken as slices of the maps (a partial block at the bottom/right edge is simply
# smaller), with no padding, so these also check the padding scheme of the optimised versions.


def _block_slices(h: int, w: int, block: int) -> list[tuple[slice, slice]]:
    """Row-major block grid of an (h, w) map: (row slice, column slice) per block."""
    return [(slice(y, y + block), slice(x, x + block)) for y in range(0, h, block) for x in range(0, w, block)]


def aggregate_blocks_naive(
    key: torch.Tensor, value: torch.Tensor, block: int, heads: int, alpha: float, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Twin of :func:`~dynast_cli.attention.all_to_key.aggregate_blocks`: key, value (B, C, h, w)
    -> k_agg, v_agg (B, C, M), one block and one head at a time."""
    b, c, h, w = key.shape
    ch = c // heads
    k_cols, v_cols = [], []
    for rows, cols in _block_slices(h, w, block):
        kb, vb = key[:, :, rows, cols].flatten(2), value[:, :, rows, cols].flatten(2)  # (B, C, n)
        n = kb.shape[2]
        k_agg = torch.zeros(b, c, dtype=key.dtype, device=key.device)
        v_agg = torch.zeros(b, c, dtype=value.dtype, device=value.device)
        for head in range(heads):
            part = slice(head * ch, (head + 1) * ch)
            k_center, v_center = kb[:, part].mean(2), vb[:, part].mean(2)  # (B, ch)
            sim = torch.sigmoid(beta + alpha * (k_center[:, :, None] * kb[:, part]).sum(1))  # (B, n)
            k_agg[:, part] = ((sim[:, None] * kb[:, part]).sum(2) + k_center) / (n + 1)
            v_agg[:, part] = ((sim[:, None] * vb[:, part]).sum(2) + v_center) / (n + 1)
        k_cols.append(k_agg)
        v_cols.append(v_agg)
    return torch.stack(k_cols, dim=2), torch.stack(v_cols, dim=2)


def distributed_attention_naive(
    query: torch.Tensor, k_agg: torch.Tensor, v_agg: torch.Tensor, heads: int
) -> torch.Tensor:
    """Twin of :func:`~dynast_cli.attention.all_to_key.distributed_attention`:
    query (B, C, Nq), k_agg / v_agg (B, C, M) -> (B, C, Nq), one head at a time."""
    ch = query.shape[1] // heads
    out = torch.zeros_like(query)
    for head in range(heads):
        part = slice(head * ch, (head + 1) * ch)
        attn = torch.softmax(query[:, part].transpose(1, 2) @ k_agg[:, part], dim=-1)  # (B, Nq, M)
        out[:, part] = (attn @ v_agg[:, part].transpose(1, 2)).transpose(1, 2)
    return out


def progressive_attention_naive(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, block: int, heads: int
) -> torch.Tensor:
    """Twin of :func:`~dynast_cli.attention.all_to_key.progressive_attention`: query (B, C, H, W),
    key / value (B, C, h, w) -> (B, C, H, W). Each content block picks the style block with the
    largest dot product over the positions both have, then attends to that block's points."""
    b, c, hq, wq = query.shape
    ch = c // heads
    style_blocks = _block_slices(key.shape[2], key.shape[3], block)
    out = torch.zeros_like(query)
    for i in range(b):
        for head in range(heads):
            part = slice(head * ch, (head + 1) * ch)
            for rows, cols in _block_slices(hq, wq, block):
                qb = query[i, part, rows, cols]  # (ch, bh, bw)
                scores = []
                for s_rows, s_cols in style_blocks:
                    kb = key[i, part, s_rows, s_cols]
                    bh, bw = min(qb.shape[1], kb.shape[1]), min(qb.shape[2], kb.shape[2])
                    scores.append((qb[:, :bh, :bw] * kb[:, :bh, :bw]).sum())
                s_rows, s_cols = style_blocks[int(torch.stack(scores).argmax())]
                kb = key[i, part, s_rows, s_cols].flatten(1)  # (ch, n)
                vb = value[i, part, s_rows, s_cols].flatten(1)
                attn = torch.softmax(qb.flatten(1).T @ kb, dim=-1)  # (bh*bw, n)
                out[i, part, rows, cols] = (vb @ attn.T).view(qb.shape)
    return out


# --- DynaST (dynast_cli.attention.dense, dynast_cli.attention.sparse) -------------------------
# Written after the official code: every query materialises copies of all its candidate keys and
# values, no chunking. Same signatures as the optimised functions minus ``chunk``. As the optimised
# functions, the next top-k rank candidates by raw score (the official code ranks by the softmax,
# whose underflowed zeros leave ties to torch.topk; see dynast_cli.attention.sparse).

import torch.nn.functional as F

from dynast_cli.attention.dense import AttentionResult, sign_with_sigmoid_grad


def dense_attention_naive(
    q: torch.Tensor,
    k: torch.Tensor,
    q_prune: torch.Tensor,
    k_prune: torch.Tensor,
    v: torch.Tensor,
    smooth: float | None = None,
    top_k: int | None = None,
    v2: torch.Tensor | None = None,
) -> AttentionResult:
    """Twin of :func:`~dynast_cli.attention.dense.dense_attention`: the full (Nq, Nk) matrix at once."""
    b, c, hq, wq = q.shape
    qf = q.view(b, c, -1).transpose(1, 2)  # (B, Nq, C)
    kf = k.view(b, c, -1)  # (B, C, Nk)
    vf = v.view(b, v.shape[1], -1).transpose(1, 2)  # (B, Nk, Cv)
    qpf = q_prune.view(b, q_prune.shape[1], -1).transpose(1, 2)  # (B, Nq, P)
    kpf = k_prune.view(b, k_prune.shape[1], -1)  # (B, P, Nk)
    mask = sign_with_sigmoid_grad(torch.bmm(qpf, kpf) / kpf.shape[1])  # (B, Nq, Nk)
    cor = torch.bmm(qf, kf) / (c**0.5 if smooth is None else smooth)  # (B, Nq, Nk)
    kept = torch.softmax(cor, dim=-1) * mask
    output = torch.bmm(kept, vf).transpose(1, 2).reshape(b, -1, hq, wq)
    conf = kept.sum(-1).view(b, 1, hq, wq)
    idx = None if top_k is None else torch.topk(cor, top_k, dim=-1).indices
    warped = None
    if v2 is not None:
        v2f = v2.view(b, v2.shape[1], -1).transpose(1, 2)
        weights = torch.softmax(torch.masked_fill(cor, mask.bool(), -1e4), dim=-1)
        warped = torch.bmm(weights, v2f).transpose(1, 2).reshape(b, -1, hq, wq)
    return AttentionResult(output, conf, idx, warped)


def _unfold_windows(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, (H/2)*(W/2), 4, C) with F.unfold, as the official code."""
    b, c = x.shape[:2]
    return F.unfold(x, kernel_size=2, stride=2).view(b, c, 4, -1).permute(0, 3, 2, 1)


def _fold_windows(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(B, L, 4, C) -> (B, C, H, W) with F.fold, as the official code."""
    b, n, _, c = x.shape
    return F.fold(x.permute(0, 3, 2, 1).reshape(b, c * 4, n), output_size=hw, kernel_size=2, stride=2)


def inter_scale_sparse_attention_naive(
    q: torch.Tensor,
    k: torch.Tensor,
    q_prune: torch.Tensor,
    k_prune: torch.Tensor,
    v: torch.Tensor,
    prev_top_k: torch.Tensor,
    smooth: float,
    need_idx: bool = True,
    v2: torch.Tensor | None = None,
) -> AttentionResult:
    """Twin of :func:`~dynast_cli.attention.sparse.inter_scale_sparse_attention`: gathers the
    candidate windows of keys, prune keys and values for every query window."""
    b, _, hq, wq = q.shape
    hk, wk = k.shape[-2:]
    top_k = prev_top_k.shape[-1]
    n_win = (hq // 2) * (wq // 2)
    rows = (prev_top_k + torch.arange(b, device=prev_top_k.device).view(b, 1, 1) * (hk // 2) * (wk // 2)).reshape(-1)

    def select(x: torch.Tensor) -> torch.Tensor:  # (B, C, Hk, Wk) -> (B, L, 4K, C)
        win = _unfold_windows(x).reshape(-1, 4, x.shape[1])
        return win[rows].reshape(b, n_win, top_k * 4, x.shape[1])

    q_win = _unfold_windows(q)  # (B, L, 4, C)
    qp_win = _unfold_windows(q_prune)
    cor = torch.matmul(q_win, select(k).transpose(-1, -2)) / smooth  # (B, L, 4, 4K)
    attn = torch.softmax(cor, dim=-1)
    mask = sign_with_sigmoid_grad(torch.matmul(qp_win, select(k_prune).transpose(-1, -2)))
    kept = mask * attn
    output = _fold_windows(torch.matmul(kept, select(v)), (hq, wq))
    conf = _fold_windows(kept.sum(-1, keepdim=True), (hq, wq))
    warped = None
    if v2 is not None:
        weights = torch.softmax(torch.masked_fill(cor, mask.bool(), -1e4), dim=-1)
        warped = _fold_windows(torch.matmul(weights, select(v2)), (hq, wq))
    idx = None
    if need_idx:
        y, x = prev_top_k // (wk // 2), prev_top_k % (wk // 2)
        fine = torch.stack(
            [2 * y * wk + 2 * x, 2 * y * wk + 2 * x + 1, (2 * y + 1) * wk + 2 * x, (2 * y + 1) * wk + 2 * x + 1], -1
        )  # (B, L, K, 4)
        fine = fine.flatten(-2).unsqueeze(2).repeat(1, 1, 4, 1)  # (B, L, 4, 4K)
        best = fine.gather(-1, torch.topk(cor, top_k, -1).indices)  # (B, L, 4, K)
        idx = best.view(b, hq // 2, wq // 2, 2, 2, top_k).permute(0, 1, 3, 2, 4, 5).reshape(b, hq * wq, top_k)
    return AttentionResult(output, conf, idx, warped)


def inner_scale_sparse_attention_naive(
    q: torch.Tensor,
    k: torch.Tensor,
    q_prune: torch.Tensor,
    k_prune: torch.Tensor,
    v: torch.Tensor,
    prev_top_k: torch.Tensor,
    smooth: float,
    need_idx: bool = True,
    v2: torch.Tensor | None = None,
) -> AttentionResult:
    """Twin of :func:`~dynast_cli.attention.sparse.inner_scale_sparse_attention`: neighbour indices
    by replicate-padding the (float) index map, then a copy of 5K candidates per query."""
    b, c, hq, wq = q.shape
    hk, wk = k.shape[-2:]
    top_k = prev_top_k.shape[-1]
    own = prev_top_k.view(b, hq, wq, top_k)
    pad = F.pad(own.permute(0, 3, 1, 2).float(), [1, 1, 1, 1], mode="replicate").permute(0, 2, 3, 1).long()
    y, x = pad // wk, pad % wk
    up_down = (y[:, :-2, 1:-1] + 1).clip(max=hk - 1) * wk + x[:, :-2, 1:-1]
    down_up = (y[:, 2:, 1:-1] - 1).clip(min=0) * wk + x[:, 2:, 1:-1]
    left_right = y[:, 1:-1, :-2] * wk + (x[:, 1:-1, :-2] + 1).clip(max=wk - 1)
    right_left = y[:, 1:-1, 2:] * wk + (x[:, 1:-1, 2:] - 1).clip(min=0)
    cand = torch.cat([own, up_down, down_up, left_right, right_left], -1).flatten(1, 2)  # (B, Nq, 5K)
    rows = (cand + torch.arange(b, device=cand.device).view(b, 1, 1) * hk * wk).reshape(-1)

    def select(x: torch.Tensor) -> torch.Tensor:  # (B, C, Hk, Wk) -> (B, Nq, 5K, C)
        flat = x.view(b, x.shape[1], -1).transpose(1, 2).reshape(b * hk * wk, -1)
        return flat[rows].view(b, hq * wq, top_k * 5, x.shape[1])

    q_rows = q.view(b, c, -1).transpose(1, 2)  # (B, Nq, C)
    qp_rows = q_prune.view(b, q_prune.shape[1], -1).transpose(1, 2)
    cor = torch.sum(q_rows.unsqueeze(2) * select(k), -1) / smooth  # (B, Nq, 5K)
    attn = torch.softmax(cor, dim=-1)
    mask = sign_with_sigmoid_grad(torch.sum(qp_rows.unsqueeze(2) * select(k_prune), -1))
    kept = mask * attn
    output = torch.sum(kept.unsqueeze(-1) * select(v), 2).transpose(1, 2).reshape(b, -1, hq, wq)
    conf = kept.sum(-1).view(b, 1, hq, wq)
    warped = None
    if v2 is not None:
        weights = torch.softmax(torch.masked_fill(cor, mask.bool(), -1e4), dim=-1)
        warped = torch.sum(weights.unsqueeze(-1) * select(v2), 2).transpose(1, 2).reshape(b, -1, hq, wq)
    idx = cand.gather(-1, torch.topk(cor, top_k, -1).indices) if need_idx else None
    return AttentionResult(output, conf, idx, warped)
