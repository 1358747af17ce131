"""All-to-key attention (StyA2K, Zhu et al., ICCV 2023), as in the official ``networks.A2K``.

Feature maps are cut into ``block x block`` tiles (8x8 at relu3_1/relu4_1, 4x4 at relu5_1) and the
channels into ``heads`` groups (8 in the official model). Two attentions:

* **Distributed** (:func:`aggregate_blocks` + :func:`distributed_attention`): every style block is
  summarised by one key and one value: ``center = mean of the block``, each position weighted by
  ``sim = sigmoid(sim_beta + sim_alpha * <center, k_pos>)``, ``agg = (sum_pos sim * x_pos + center)
  / (positions + 1)``. Every content *point* then attends (unscaled softmax) over all style blocks.
* **Progressive** (:func:`progressive_attention`): every content block is matched to the style block
  with the highest position-aligned dot product (the two blocks flattened, ``argmax``), then every
  content point attends (softmax) to the points of its matched style block only.

The official code needs square content and style maps of the same size, whole multiples of the
block. Here content and style may have any size and aspect ratio. Maps are zero-padded at the
bottom/right to whole blocks *after* the 1x1 projections, and padding is made inert:

* aggregation: a partial block's center is the mean over its real positions, padded positions get
  zero weight, and the divisor is ``real positions + 1`` (a full block gives the official ``r + 1``);
* block matching: padded query/key entries are zero, so they add nothing to the block score;
* point attention: padded positions of the matched style block get ``-inf`` logits (never chosen);
* outputs at padded content positions are cropped away.

For square maps that are whole multiples of the block all of this is exactly the official result.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def to_blocks(x: torch.Tensor, block: int, heads: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, heads, N, R, C/heads), zero-padded to whole blocks.

    Blocks are numbered row-major over the block grid (N = ceil(H/b) * ceil(W/b)) and positions
    row-major inside a block (R = b*b), the order of the official ``F.unfold`` based ``block()``.
    Channel ``c`` belongs to head ``c // (C/heads)``.
    """
    b, c, h, w = x.shape
    nh, nw = math.ceil(h / block), math.ceil(w / block)
    x = F.pad(x, (0, nw * block - w, 0, nh * block - h))
    x = x.view(b, heads, c // heads, nh, block, nw, block)
    x = x.permute(0, 1, 3, 5, 4, 6, 2)  # (B, heads, nh, nw, bi, bj, Ch)
    return x.reshape(b, heads, nh * nw, block * block, c // heads)


def from_blocks(x: torch.Tensor, block: int, size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`to_blocks`: (B, heads, N, R, Ch) -> (B, heads*Ch, H, W), padding cropped."""
    b, heads, _, _, ch = x.shape
    h, w = size
    nh, nw = math.ceil(h / block), math.ceil(w / block)
    x = x.view(b, heads, nh, nw, block, block, ch).permute(0, 1, 6, 2, 4, 3, 5)
    x = x.reshape(b, heads * ch, nh * block, nw * block)
    return x[:, :, :h, :w]


def block_valid(size: tuple[int, int], block: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, R) bool: True at the real (not padded) positions of each block of an (H, W) map."""
    ones = torch.ones(1, 1, *size, device=device)
    return to_blocks(ones, block, 1)[0, 0, :, :, 0] > 0


def aggregate_blocks(
    key: torch.Tensor,
    value: torch.Tensor,
    block: int,
    heads: int,
    alpha: torch.Tensor | float,
    beta: torch.Tensor | float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The distributed attention's per-block style summary.

    key, value (B, C, h, w) -> k_agg, v_agg (B, C, M), M = number of style blocks.
    ``alpha``/``beta``: the learnable ``sim_alpha``/``sim_beta`` (tensors of shape (1,) or floats).
    """
    bsz, c = key.shape[:2]
    k = to_blocks(key, block, heads)  # (B, hd, M, R, Ch)
    v = to_blocks(value, block, heads)
    valid = block_valid(key.shape[-2:], block, key.device).to(key.dtype)  # (M, R)
    count = valid.sum(-1)  # (M,) real positions per block
    k_center = k.sum(3) / count[:, None]  # (B, hd, M, Ch); padding is zero
    v_center = v.sum(3) / count[:, None]
    dis = torch.einsum("bhmrc,bhmc->bhmr", k, k_center)  # (B, hd, M, R)
    sim = torch.sigmoid(beta + alpha * dis) * valid
    k_agg = (torch.einsum("bhmr,bhmrc->bhmc", sim, k) + k_center) / (count[:, None] + 1)
    v_agg = (torch.einsum("bhmr,bhmrc->bhmc", sim, v) + v_center) / (count[:, None] + 1)
    m = k_agg.shape[2]
    # (B, hd, M, Ch) -> (B, C, M)
    return k_agg.transpose(2, 3).reshape(bsz, c, m), v_agg.transpose(2, 3).reshape(bsz, c, m)


def distributed_attention(
    query: torch.Tensor,
    k_agg: torch.Tensor,
    v_agg: torch.Tensor,
    heads: int,
    chunk: int | None = None,
) -> torch.Tensor:
    """Every content point attends over all aggregated style blocks (unscaled softmax, per head).

    query (B, C, Nq), k_agg / v_agg (B, C, M) -> (B, C, Nq).
    ``chunk``: at most this many queries at a time (bounded memory, same result).
    """
    bsz, c, nq = query.shape
    m = k_agg.shape[2]
    q = query.reshape(bsz * heads, c // heads, nq)  # (BH, Ch, Nq)
    k = k_agg.reshape(bsz * heads, c // heads, m)  # (BH, Ch, M)
    v = v_agg.reshape(bsz * heads, c // heads, m)
    step = nq if chunk is None else max(1, int(chunk))
    parts = []
    for start in range(0, nq, step):
        attn = torch.softmax(torch.bmm(q[:, :, start:start + step].transpose(1, 2), k), dim=-1)  # (BH, n, M)
        parts.append(torch.bmm(v, attn.transpose(1, 2)))  # (BH, Ch, n)
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
    return out.reshape(bsz, c, nq)


def progressive_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    block: int,
    heads: int,
) -> torch.Tensor:
    """Block-to-block matching, then point attention inside the matched style block (per head).

    query (B, C, H, W), key / value (B, C, h, w) -> (B, C, H, W).
    """
    q = to_blocks(query, block, heads)  # (B, hd, N, R, Ch)
    k = to_blocks(key, block, heads)  # (B, hd, M, R, Ch)
    v = to_blocks(value, block, heads)
    bsz, hd, n, r, ch = q.shape
    # block match: position-aligned dot product of whole blocks -> (B, hd, N, M)
    match = torch.matmul(q.reshape(bsz, hd, n, r * ch), k.reshape(bsz, hd, -1, r * ch).transpose(2, 3))
    index = match.argmax(dim=-1)  # (B, hd, N)
    rows = torch.arange(bsz * hd, device=q.device)[:, None]
    flat_index = index.reshape(bsz * hd, n)
    k_match = k.reshape(bsz * hd, -1, r, ch)[rows, flat_index]  # (BH, N, R, Ch)
    v_match = v.reshape(bsz * hd, -1, r, ch)[rows, flat_index]
    valid = block_valid(key.shape[-2:], block, key.device)[flat_index]  # (BH, N, R)
    logits = torch.matmul(q.reshape(bsz * hd, n, r, ch), k_match.transpose(2, 3))  # (BH, N, R, R)
    logits = logits.masked_fill(~valid[:, :, None, :], float("-inf"))
    out = torch.matmul(torch.softmax(logits, dim=-1), v_match)  # (BH, N, R, Ch)
    return from_blocks(out.view(bsz, hd, n, r, ch), block, query.shape[-2:])
