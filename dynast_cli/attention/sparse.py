"""DynaST dynamic sparse attention at the finer scales (1/4, 1/2, 1) and top-k propagation.

Public API (pure functions on tensors; the naive twins in ``dynast_cli.attention.reference`` follow
the official code and take the same arguments minus ``chunk``)::

    inter_scale_sparse_attention(q, k, q_prune, k_prune, v, prev_top_k, smooth, need_idx=True,
                                 v2=None, chunk=2048) -> AttentionResult
    inner_scale_sparse_attention(q, k, q_prune, k_prune, v, prev_top_k, smooth, need_idx=True,
                                 v2=None, chunk=2048) -> AttentionResult
        q (B, C, Hq, Wq), k (B, C, Hk, Wk), q_prune (B, P, Hq, Wq), k_prune (B, P, Hk, Wk),
        v (B, Cv, Hk, Wk), v2 (B, C2, Hk, Wk) or None (training: the reference image to warp)
        inter: prev_top_k (B, (Hq/2)*(Wq/2), K), indices into the (Hk/2, Wk/2) grid of the coarser scale
        inner: prev_top_k (B, Hq*Wq, K), indices into the (Hk, Wk) grid of this scale
        -> AttentionResult(output (B, Cv, Hq, Wq), conf (B, 1, Hq, Wq),
                           top_k (B, Hq*Wq, K) int64 indices into (Hk, Wk) or None, warped (B, C2, Hq, Wq) or None)

    inter_scale_candidates(prev_top_k, k_hw) -> (B, Nwin, 4K)   key indices of the 2x2 children
    inner_scale_candidates(prev_top_k, q_hw, k_hw) -> (B, Hq*Wq, 5K)   own top-k + 4 neighbours' shifted
    propagate_top_k(attn, candidates, top_k) -> (..., top_k)   the candidates with the highest attention

What they compute (as the official code):
- inter-scale: queries come in 2x2 windows; each window's parent (one position of the coarser scale)
  has K matches there; all four queries attend to the 2x2 children of those K matches (4K keys).
- inner-scale: each query attends to its own K matches plus, for each 4-neighbour, that neighbour's
  K matches shifted by the same offset back towards this query (up neighbour's matches moved one row
  down, etc., clipped at the border): 5K keys.
- in both, softmax(q.k / smooth) over the candidates, multiplied by the 0/1 prune gate
  (q_prune.k_prune > 0); ``conf`` is the kept mass; the next top-k are the K candidates of highest
  score (``propagate_top_k``), as flat indices into the key grid of this scale.

One deliberate difference: the official code ranks candidates by the softmax, not by the raw score.
With smooth = 0.01 the softmax underflows to exactly 0 for most candidates, so its choice among them
is left to torch.topk's tie handling (which differs between CPU and CUDA and between tensor
layouts). Ranking by the raw score gives the same indices whenever the official choice is defined
and breaks those ties by score; the naive twins do the same.

Efficiency: the official code gathers, for every query, copies of all its candidate keys and values
(at full resolution of a 256 image: 65,536 x 20 x 80 floats per tensor, several such tensors) and
multiplies elementwise. Here candidate *indices* are built with integer shifts, candidate rows are
gathered with index_select into contiguous per-chunk buffers (batched matmuls, no broadcast
products), and queries are processed ``chunk`` positions at a time. Without autograd
(:func:`_candidate_attention_lowmem`) no full-size copy of any input is made either, and each input is
read in the layout it comes in. Channels-last inputs (the inference encoder's features: the style methods)
are row tables already: the chunk's candidate rows are gathered and multiplied in one bmm, and the
weighted sums of values are ``embedding_bag``s over all channels (each query a bag of its candidate rows
with their attention weights: no gathered copy of the rows); one style expanded over a batch is one table.
Channel-first inputs (the DynaST generator's) give up their candidates' key columns for the scores and
are made row-major ``CHANNEL_SLICE`` channels at a time for the values (exact, each output channel is
independent); with one query per group (inner-scale) their dot products are a product summed over the
channels rather than a batched matmul of 1-row matrices, which is many times slower on a CPU against
strided columns. Either way each dot product is one reduction over all channels, as in the naive twin, so
prune-mask signs agree, and each chunk's output is written straight to its positions in the preallocated
result. With autograd on, the simpler path that keeps whole row-major copies is used. Results do not
depend on ``chunk``, ``CHANNEL_SLICE`` or the layout (up to float rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dynast_cli.attention.dense import (
    AttentionResult,
    sign_with_sigmoid_grad,
    warp_weights,
)

DEFAULT_CHUNK = 2048


def inter_scale_candidates(prev_top_k: torch.Tensor, k_hw: tuple[int, int]) -> torch.Tensor:
    """Children of each coarse match. prev_top_k (B, L, K) into (Hk/2, Wk/2) -> (B, L, 4K) into (Hk, Wk).

    Order per match: (0,0), (0,1), (1,0), (1,1) inside its 2x2 window, matches in the given order.
    """
    _, wk = k_hw
    y = prev_top_k // (wk // 2)
    x = prev_top_k % (wk // 2)
    top_left = 2 * y * wk + 2 * x  # (B, L, K)
    offsets = torch.tensor([0, 1, wk, wk + 1], device=prev_top_k.device)
    return (top_left.unsqueeze(-1) + offsets).flatten(-2)  # (B, L, K*4)


def inner_scale_candidates(prev_top_k: torch.Tensor, q_hw: tuple[int, int], k_hw: tuple[int, int]) -> torch.Tensor:
    """Own matches plus the 4 neighbours' matches shifted back. (B, Hq*Wq, K) -> (B, Hq*Wq, 5K).

    Order: own, from the up neighbour moved down, from the down neighbour moved up, from the left
    neighbour moved right, from the right neighbour moved left. Neighbours outside the image are the
    position itself (replicate); shifted matches are clipped to the key grid.
    """
    b, _, kk = prev_top_k.shape
    hq, wq = q_hw
    hk, wk = k_hw
    own = prev_top_k.view(b, hq, wq, kk)
    # neighbours' matches by shifting the index map (replicate at the border)
    up = torch.cat([own[:, :1], own[:, :-1]], dim=1)
    down = torch.cat([own[:, 1:], own[:, -1:]], dim=1)
    left = torch.cat([own[:, :, :1], own[:, :, :-1]], dim=2)
    right = torch.cat([own[:, :, 1:], own[:, :, -1:]], dim=2)
    up_down = (up // wk + 1).clamp(max=hk - 1) * wk + up % wk
    down_up = (down // wk - 1).clamp(min=0) * wk + down % wk
    left_right = left // wk * wk + (left % wk + 1).clamp(max=wk - 1)
    right_left = right // wk * wk + (right % wk - 1).clamp(min=0)
    return torch.cat([own, up_down, down_up, left_right, right_left], dim=-1).flatten(1, 2)  # (B, Nq, 5K)


def propagate_top_k(scores: torch.Tensor, candidates: torch.Tensor, top_k: int) -> torch.Tensor:
    """Key indices of the ``top_k`` candidates with the highest score.

    scores (..., G, M) of G queries over M candidates; candidates (..., M) shared by the G queries,
    or (..., G, M) -> (..., G, top_k).
    """
    choice = torch.topk(scores, top_k, dim=-1).indices  # (..., G, top_k)
    if candidates.dim() == scores.dim() - 1:
        candidates = candidates.unsqueeze(-2).expand(scores.shape)
    return candidates.gather(-1, choice)


class _RowGather:
    """``table[rows]`` for a (N, C) table, chunk after chunk.

    Without autograd the rows go into one reused buffer: a fresh multi-megabyte tensor per chunk
    costs more in page faults than the copy itself. With autograd on, never: the gathered rows of a
    table that needs no gradient are still saved for the backward pass when the other operand of
    their matmul needs one (frozen values, learned prune embeddings), so overwriting them breaks it.
    """

    def __init__(self, table: torch.Tensor):
        self.table = table.contiguous()  # rows must be contiguous in memory: (B, C, H, W) inputs are not
        self.reuse = not torch.is_grad_enabled()
        self.buffer = table.new_empty(0, table.shape[1])

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        if not self.reuse:
            return self.table.index_select(0, rows)
        if self.buffer.shape[0] < rows.numel():
            self.buffer = self.table.new_empty(rows.numel(), self.table.shape[1])
        return torch.index_select(self.table, 0, rows, out=self.buffer[: rows.numel()])


def _candidate_attention(
    q: torch.Tensor,
    q_prune: torch.Tensor,
    keys: torch.Tensor,
    keys_prune: torch.Tensor,
    values: torch.Tensor,
    values2: torch.Tensor | None,
    candidates: torch.Tensor,
    smooth: float,
    top_k: int | None,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Attention of groups of queries over their shared candidate keys (the core of both variants).

    q (B, L, G, C) and q_prune (B, L, G, P): L groups of G queries; keys (B, Nk, C), keys_prune
    (B, Nk, P), values (B, Nk, Cv), values2 (B, Nk, C2) or None: one row per key position;
    candidates (B, L, M) indices into Nk. Groups are processed ``chunk`` query positions at a time.
    -> output (B, L, G, Cv), conf (B, L, G), top-k key indices (B, L, G, K) or None, warped (B, L, G, C2) or None
    """
    b, n_groups, g, c = q.shape
    q, q_prune = q.contiguous(), q_prune.contiguous()  # strided batches make bmm copy batch by batch
    n_k = keys.shape[1]
    m = candidates.shape[-1]
    # flat row index of every candidate in (B*Nk, .): one index_select per tensor serves the whole batch
    rows = candidates + torch.arange(b, device=candidates.device).view(b, 1, 1) * n_k  # (B, L, M)
    gather_keys = _RowGather(keys.reshape(b * n_k, -1))
    gather_keys_prune = _RowGather(keys_prune.reshape(b * n_k, -1))
    gather_values = _RowGather(values.reshape(b * n_k, -1))
    gather_values2 = None if values2 is None else _RowGather(values2.reshape(b * n_k, -1))

    outs, confs, tops, warps = [], [], [], []
    step = max(1, chunk // g)
    for s in range(0, n_groups, step):
        r = rows[:, s : s + step].reshape(-1)  # (B*n*M,)
        n = r.numel() // (b * m)
        sel = gather_keys(r).view(b * n, m, c)  # (B*n, M, C)
        sel_prune = gather_keys_prune(r).view(b * n, m, -1)  # (B*n, M, P)
        qs = q[:, s : s + step].reshape(b * n, g, c)  # (B*n, G, C)
        qps = q_prune[:, s : s + step].reshape(b * n, g, -1)  # (B*n, G, P)
        scores = torch.bmm(qs, sel.transpose(1, 2)) / smooth  # (B*n, G, M)
        mask = sign_with_sigmoid_grad(torch.bmm(qps, sel_prune.transpose(1, 2)))  # (B*n, G, M)
        kept = torch.softmax(scores, dim=-1) * mask
        vals = gather_values(r).view(b * n, m, -1)  # (B*n, M, Cv)
        outs.append(torch.bmm(kept, vals).view(b, n, g, -1))  # (B, n, G, Cv)
        confs.append(kept.sum(-1).view(b, n, g))
        if top_k is not None:
            cand = candidates[:, s : s + step].reshape(b * n, m)
            tops.append(propagate_top_k(scores, cand, top_k).view(b, n, g, top_k))
        if gather_values2 is not None:
            vals2 = gather_values2(r).view(b * n, m, -1)  # (B*n, M, C2)
            warps.append(torch.bmm(warp_weights(scores, mask), vals2).view(b, n, g, -1))
    top = torch.cat(tops, 1) if top_k is not None else None
    warped = torch.cat(warps, 1) if gather_values2 is not None else None
    return torch.cat(outs, 1), torch.cat(confs, 1), top, warped


#: channels per slice in :func:`_candidate_attention_lowmem`: one (B, Nk, slice) row table at a time
CHANNEL_SLICE = 64


def _candidate_attention_lowmem(
    q: torch.Tensor,
    q_prune: torch.Tensor,
    k: torch.Tensor,
    k_prune: torch.Tensor,
    v: torch.Tensor,
    v2: torch.Tensor | None,
    candidates: torch.Tensor,
    positions: torch.Tensor,
    smooth: float,
    top_k: int | None,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """:func:`_candidate_attention` without autograd, holding no full-size copy of any input.

    q (B, C, Nq), q_prune (B, P, Nq), k (B, C, Nk), k_prune (B, P, Nk), v (B, Cv, Nk),
    v2 (B, C2, Nk) or None: positions flattened (views of the (B, C, H, W) inputs, channel-first or
    channels-last, each as it comes); candidates (B, L, M) indices into Nk; positions (L, G) the query
    position of each of the G queries of each group. -> output (B, Cv, Nq), conf (B, Nq), top-k
    (B, Nq, K) or None, warped (B, C2, Nq) or None, in raster order (output and warped position-major
    in memory when their values are).

    Queries are processed ``chunk`` at a time; scores by ``dot_products``, weighted sums of values by
    ``weighted_sum``. Each reads the layout its inputs come in: the channels-last features of the
    inference encoder (:func:`dynast_cli.styles.base.inference_layout`) are row tables already, and
    reading them column-wise, as channel-first ones are read, made the style default's sparse matching
    at 512 px 3.5-4.7x slower (session 12).
    """
    b, _, n_q = q.shape
    n_k = k.shape[-1]
    n_groups, g = positions.shape
    m = candidates.shape[-1]
    rows = candidates + torch.arange(b, device=candidates.device).view(b, 1, 1) * n_k  # (B, L, M)
    flat_pos = positions.reshape(-1)  # (L*G,)
    step = max(1, chunk // g)

    def dot_products(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """(B, c, Nq) queries . (B, c, Nk) keys over each group's candidates -> (B, L, G, M).

        Each dot product is one reduction over all c channels, never split into channel slices (whose
        partial sums can flip a prune-mask sign at a near-zero product at the official size), so its
        rounding differs from the naive twin's only as two full reductions differ (the tests compare them
        in float64). Keys stored position-major (a channels-last input): the chunk's candidate rows are
        gathered (contiguous copies) and multiplied in one bmm. Channel-first keys: the chunk's candidate
        columns are gathered; with one query per group the product is summed over the channels (a bmm of
        1-row matrices against these strided columns is ~15x slower on a CPU), otherwise a bmm.
        Only the chunk's candidates and queries are copied.
        """
        c = queries.shape[1]
        key_table, query_rows = _row_table(keys), _position_rows(queries)  # views or None
        if key_table is not None:
            gather = _RowGather(key_table[0])  # a view: no copy of the table
            index = candidates if key_table[1] else rows  # a shared table: no per-item offsets
        else:
            flat_keys = keys.transpose(0, 1).reshape(c, b * n_k)  # (c, B*Nk); a view when B == 1
        acc = q.new_empty(b, n_groups, g, m)
        for s in range(0, n_groups, step):
            n = min(step, n_groups - s)
            pos = flat_pos[s * g : (s + n) * g]
            if key_table is not None:
                sel = gather(index[:, s : s + n].reshape(-1)).view(b * n, m, c)  # (B*n, M, c)
                qs = query_rows.index_select(1, pos) if query_rows is not None else queries.index_select(2, pos).transpose(1, 2)
                qs = qs.reshape(b * n, g, c)  # (B*n, G, c)
                acc[:, s : s + n] = torch.bmm(sel, qs.transpose(1, 2)).view(b, n, m, g).transpose(2, 3)
                continue
            sel = flat_keys.index_select(1, rows[:, s : s + n].reshape(-1))  # (c, B*n*M)
            qs = queries.index_select(2, pos)  # (B, c, n*G)
            if g == 1:
                prod = sel.view(c, b, n, m).mul_(qs.permute(1, 0, 2).unsqueeze(-1))  # (c, B, n, M)
                acc[:, s : s + n] = prod.sum(0).view(b, n, 1, m)
                continue
            sel = sel.view(c, b * n, m).permute(1, 0, 2)  # (B*n, c, M)
            qs = qs.view(b, c, n, g).permute(0, 2, 3, 1).reshape(b * n, g, c)  # (B*n, G, c)
            acc[:, s : s + n] = torch.bmm(qs, sel).view(b, n, g, m)
        return acc

    def bag_sums(weights: torch.Tensor, table: torch.Tensor, index: torch.Tensor, s: int, n: int) -> torch.Tensor:
        """Groups s..s+n: each query's weighted sum of its candidates' rows of ``table`` -> (B, n*G, cs), by
        ``embedding_bag`` (each query a bag of its group's M candidate rows with their weights: no gathered copy
        of the rows). ``index``: ``rows`` for a (B*Nk, cs) table, ``candidates`` for one (Nk, cs) table shared
        by the batch."""
        bags = index[:, s : s + n].unsqueeze(2).expand(b, n, g, m).reshape(b * n * g, m)
        w = weights[:, s : s + n].reshape(b * n * g, m)
        return F.embedding_bag(bags, table, per_sample_weights=w, mode="sum").view(b, n * g, -1)

    def weighted_sum(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """(B, L, G, M) weights over each group's candidates of (B, c, Nk) values -> (B, c, Nq).

        Values stored position-major (channels-last) are already the row table, all channels at once (one
        table when a style's values are expanded over the batch), and the result is position-major too;
        channel-first values are made row-major ``CHANNEL_SLICE`` channels at a time (exact: each output
        channel is independent). Outputs go straight to their positions in the preallocated result."""
        c = values.shape[1]
        value_table = _row_table(values)
        if value_table is not None:
            table, shared = value_table  # a view: no copy
            out_rows = values.new_empty(b, n_q, c)  # (B, Nq, c)
            for s in range(0, n_groups, step):
                n = min(step, n_groups - s)
                sums = bag_sums(weights, table, candidates if shared else rows, s, n)
                out_rows.index_copy_(1, flat_pos[s * g : (s + n) * g], sums)
            return out_rows.transpose(1, 2)
        out = values.new_empty(b, c, n_q)
        for c0 in range(0, c, CHANNEL_SLICE):
            table = values[:, c0 : c0 + CHANNEL_SLICE].transpose(1, 2).contiguous().view(b * n_k, -1)
            for s in range(0, n_groups, step):
                n = min(step, n_groups - s)
                res = bag_sums(weights, table, rows, s, n)  # (B, n*G, cs)
                out[:, c0 : c0 + table.shape[1]].index_copy_(2, flat_pos[s * g : (s + n) * g], res.transpose(1, 2))
        return out

    scores = dot_products(q, k).div_(smooth)  # (B, L, G, M)
    mask = sign_with_sigmoid_grad(dot_products(q_prune, k_prune))
    kept = torch.softmax(scores, dim=-1).mul_(mask)
    conf = q.new_empty(b, n_q).index_copy_(1, flat_pos, kept.sum(-1).view(b, -1))
    top = None
    if top_k is not None:
        top_grouped = propagate_top_k(scores, candidates, top_k).view(b, -1, top_k)  # (B, L*G, K)
        top = top_grouped.new_empty(b, n_q, top_k).index_copy_(1, flat_pos, top_grouped)
    out = weighted_sum(kept, v)
    warped = None if v2 is None else weighted_sum(warp_weights(scores, mask), v2)
    return out, conf, top, warped


def _position_rows(x: torch.Tensor) -> torch.Tensor | None:
    """(B, C, N) -> its (B, N, C) transpose when that is contiguous (positions are rows in memory: a
    channels-last (B, C, H, W) flattened, or C == 1), else None."""
    rows = x.transpose(1, 2)
    return rows if rows.is_contiguous() else None


def _row_table(x: torch.Tensor) -> tuple[torch.Tensor, bool] | None:
    """(B, C, N) stored position-major -> (its row table, shared): a (N, C) view of the one table every batch
    item reads (B == 1, or one style's features expanded over a batch of contents: batch stride 0), or a
    (B*N, C) view; None when the positions are not rows in memory."""
    rows = x.transpose(1, 2)  # (B, N, C)
    if x.shape[0] == 1 or x.stride(0) == 0:
        return (rows[0], True) if rows[0].is_contiguous() else None
    return (rows.reshape(-1, rows.shape[-1]), False) if rows.is_contiguous() else None


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _flat(x: torch.Tensor | None) -> torch.Tensor | None:
    """(B, C, H, W) -> (B, C, H*W) view, or None."""
    return None if x is None else x.flatten(2)


def _window_positions(hw: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Raster positions of the 2x2 windows' queries: (L, 4), the order of :func:`_windows`."""
    h, w = hw
    rows = 2 * torch.arange(h // 2, device=device).view(-1, 1) * w
    top_left = (rows + 2 * torch.arange(w // 2, device=device)).view(-1, 1)
    return top_left + torch.tensor([0, 1, w, w + 1], device=device)


def _rows(x: torch.Tensor | None) -> torch.Tensor | None:
    """(B, C, H, W) -> (B, H*W, C), or None."""
    return None if x is None else x.flatten(2).transpose(1, 2)


def _windows(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, (H/2)*(W/2), 4, C): 2x2 windows in raster order, positions (0,0),(0,1),(1,0),(1,1)."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 3, 5, 1).reshape(b, (h // 2) * (w // 2), 4, c)


def _unwindow(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(B, (H/2)*(W/2), 4, C) -> (B, C, H, W), the inverse of :func:`_windows`."""
    b, _, _, c = x.shape
    h, w = hw
    return x.view(b, h // 2, w // 2, 2, 2, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)


def _lowmem_result(
    q: torch.Tensor,
    k: torch.Tensor,
    q_prune: torch.Tensor,
    k_prune: torch.Tensor,
    v: torch.Tensor,
    v2: torch.Tensor | None,
    candidates: torch.Tensor,
    positions: torch.Tensor,
    smooth: float,
    top_k: int | None,
    chunk: int,
) -> AttentionResult:
    """:func:`_candidate_attention_lowmem` on (B, C, H, W) inputs -> an AttentionResult in (B, C, H, W)."""
    b, _, hq, wq = q.shape
    out, conf, top, warped = _candidate_attention_lowmem(
        _flat(q), _flat(q_prune), _flat(k), _flat(k_prune), _flat(v), _flat(v2), candidates, positions, smooth, top_k, chunk
    )
    return AttentionResult(
        out.view(b, -1, hq, wq),
        conf.view(b, 1, hq, wq),
        top,
        None if warped is None else warped.view(b, -1, hq, wq),
    )


def inter_scale_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    q_prune: torch.Tensor,
    k_prune: torch.Tensor,
    v: torch.Tensor,
    prev_top_k: torch.Tensor,
    smooth: float,
    need_idx: bool = True,
    v2: torch.Tensor | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> AttentionResult:
    """Each 2x2 query window attends to the 2x2 children of its coarse parent's top-k matches."""
    b, _, hq, wq = q.shape
    top_k = prev_top_k.shape[-1]
    candidates = inter_scale_candidates(prev_top_k, k.shape[-2:])  # (B, L, 4K)
    if not _needs_grad(q, k, q_prune, k_prune, v, v2):
        positions = _window_positions((hq, wq), q.device)  # (L, 4)
        return _lowmem_result(q, k, q_prune, k_prune, v, v2, candidates, positions, smooth, top_k if need_idx else None, chunk)
    out, conf, top, warped = _candidate_attention(
        _windows(q),  # (B, L, 4, C)
        _windows(q_prune),  # (B, L, 4, P)
        _rows(k),
        _rows(k_prune),
        _rows(v),
        _rows(v2),
        candidates,
        smooth,
        top_k if need_idx else None,
        chunk,
    )
    # out (B, L, 4, Cv), conf (B, L, 4), top (B, L, 4, K): back to raster order
    top_raster = None if top is None else _unwindow(top, (hq, wq)).flatten(2).transpose(1, 2)
    return AttentionResult(
        _unwindow(out, (hq, wq)),
        _unwindow(conf.unsqueeze(-1), (hq, wq)),
        top_raster,
        None if warped is None else _unwindow(warped, (hq, wq)),
    )


def inner_scale_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    q_prune: torch.Tensor,
    k_prune: torch.Tensor,
    v: torch.Tensor,
    prev_top_k: torch.Tensor,
    smooth: float,
    need_idx: bool = True,
    v2: torch.Tensor | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> AttentionResult:
    """Each query attends to its own top-k matches and its 4 neighbours' matches, shifted back."""
    b, _, hq, wq = q.shape
    top_k = prev_top_k.shape[-1]
    candidates = inner_scale_candidates(prev_top_k, (hq, wq), k.shape[-2:])  # (B, Nq, 5K)
    if not _needs_grad(q, k, q_prune, k_prune, v, v2):
        positions = torch.arange(hq * wq, device=q.device).view(-1, 1)  # (Nq, 1): one query per group
        return _lowmem_result(q, k, q_prune, k_prune, v, v2, candidates, positions, smooth, top_k if need_idx else None, chunk)
    out, conf, top, warped = _candidate_attention(
        _rows(q).unsqueeze(2),  # (B, Nq, 1, C)
        _rows(q_prune).unsqueeze(2),  # (B, Nq, 1, P)
        _rows(k),
        _rows(k_prune),
        _rows(v),
        _rows(v2),
        candidates,
        smooth,
        top_k if need_idx else None,
        chunk,
    )
    # out (B, Nq, 1, Cv) -> (B, Cv, Hq, Wq)
    return AttentionResult(
        out.squeeze(2).transpose(1, 2).reshape(b, -1, hq, wq),
        conf.view(b, 1, hq, wq),
        None if top is None else top.squeeze(2),
        None if warped is None else warped.squeeze(2).transpose(1, 2).reshape(b, -1, hq, wq),
    )
