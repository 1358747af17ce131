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
    mean = torch.zeros(b, value.shape[1], nq, dtype=value.dtype)
    std = torch.zeros_like(mean)
    for i in range(b):
        for j in range(nq):
            q = query[i, :, j]  # (Ck,)
            scores = q @ key[i]  # (Nk,)
            if kind == "softmax":
                weights = torch.softmax(scores, dim=0)
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
        k_agg, v_agg = torch.zeros(b, c), torch.zeros(b, c)
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
