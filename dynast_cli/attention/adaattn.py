"""AdaAttN (Liu et al., ICCV 2021): attention-weighted mean and standard deviation.

For every content position the style values are averaged with attention weights, giving a
per-position mean and standard deviation; the model then applies ``std * norm(content) + mean``.

Two score functions, both from the official code:

* ``softmax`` (the image model, ``networks.AdaAttN``): ``softmax(q^T k)`` over the style positions,
  *unscaled* (no ``1/sqrt(d)``).
* ``cosine`` (the video model, ``inference_frame.AttnAdaINCos``):
  ``s = relu(q.k / (|q| + 1e-5) / (|k| + 1e-5) + 1)``, weights ``s / (sum_k s + 1e-5)``.
  The scores are bounded, so attention is smoother and more stable from frame to frame.

The official models subsample style positions above ``max_sample`` with ``torch.manual_seed(seed)``
then ``torch.randperm(N)`` (CPU generator) and keep the first ``max_sample``;
:func:`style_sample_index` reproduces that index without touching the global RNG.
"""

from __future__ import annotations

import torch

KINDS = ("softmax", "cosine")


def _weights(query: torch.Tensor, key: torch.Tensor, key_norm: torch.Tensor | None, kind: str) -> torch.Tensor:
    """query (B, Ck, n), key (B, Ck, Nk) -> attention weights (B, n, Nk), rows sum to ~1."""
    scores = torch.bmm(query.transpose(1, 2), key)  # (B, n, Nk)
    if kind == "softmax":
        # The unscaled scores spread over hundreds, so most weights underflow; those that land in the
        # subnormal range (below finfo.tiny, ~1.2e-38) made the next bmm crawl on x86 CPUs (`-m adaattn` on
        # the bundled example: 14.3 s, flushed 2.7 s). They are flushed to 0: together they weigh less than
        # n_keys * 1.2e-38, so the statistics move by less than that times the largest value (the bundled
        # example's output is the same to the bit; tested against the unflushed softmax).
        weights = torch.softmax(scores, dim=-1)
        subnormal = weights < torch.finfo(weights.dtype).tiny
        # in place at inference (no second attention-sized tensor); training needs the softmax output kept
        return weights.masked_fill(subnormal, 0.0) if weights.requires_grad else weights.masked_fill_(subnormal, 0.0)
    q_norm = query.pow(2).sum(1).sqrt().unsqueeze(-1)  # (B, n, 1)
    scores = torch.relu(scores / (q_norm + 1e-5) / (key_norm + 1e-5) + 1)
    return scores / (scores.sum(dim=-1, keepdim=True) + 1e-5)


def adaattn_stats(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    kind: str = "softmax",
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention-weighted mean and std of the style values at every content position.

    query (B, Ck, Nq) content keys, key (B, Ck, Nk) style keys, value (B, C, Nk) style values
    -> mean, std: (B, C, Nq), with ``std = sqrt(relu(E[v^2] - mean^2))``.
    ``chunk``: process at most this many queries at a time (bounded memory, same result).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown AdaAttN attention kind {kind!r} (use one of {KINDS})")
    c = value.shape[1]
    nq = query.shape[2]
    moments = torch.cat([value, value * value], dim=1)  # (B, 2C, Nk): E[v] and E[v^2] in one bmm
    key_norm = key.pow(2).sum(1).sqrt().unsqueeze(1) if kind == "cosine" else None  # (B, 1, Nk)
    step = nq if chunk is None else max(1, int(chunk))
    parts = []
    for start in range(0, nq, step):
        attn = _weights(query[:, :, start:start + step], key, key_norm, kind)  # (B, n, Nk)
        parts.append(torch.bmm(moments, attn.transpose(1, 2)))  # (B, 2C, n)
    stats = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)  # (B, 2C, Nq)
    mean, second = stats[:, :c], stats[:, c:]
    std = torch.sqrt(torch.relu(second - mean * mean))
    return mean, std


def style_sample_index(n: int, max_sample: int, seed: int | None, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The official style-position subsampling: ``None`` when ``n <= max_sample``, else the first
    ``max_sample`` entries of ``torch.randperm(n)`` drawn on the CPU right after
    ``torch.manual_seed(seed)`` (a private generator is used, so the global RNG is left alone;
    ``seed=None`` draws from the global RNG, as the official code does).
    """
    if n <= max_sample:
        return None
    if seed is None:
        perm = torch.randperm(n)
    else:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:max_sample].to(device)
