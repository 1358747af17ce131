"""DynaST's coarse-to-fine matching applied to arbitrary style transfer (parameter-free).

Each content position is matched to the style coarse to fine, as the DynaST generator matches a
query to its exemplar (:mod:`dynast_cli.models.dynast`), but on frozen VGG16 features:

- at the coarse level (``coarse``: relu4_1 by default, or relu5_1) *dense* attention of every content
  position over every style position (:func:`dynast_cli.attention.dense.dense_attention`), which also
  gives each content position its ``top_k`` best style matches;
- at each finer level (relu3_1, and relu4_1 when ``coarse="relu5_1"``) one *inter-scale* step (attend
  to the 2x2 children of the coarser matches) and ``inner_steps`` *inner-scale* steps (own matches plus
  the 4 neighbours' shifted ones), each passing its top-k on (:mod:`dynast_cli.attention.sparse`);
  relu5_1 when ``coarse="relu4_1"`` gets plain dense attention (no top-k).

Why relu4_1 by default: with relu5_1 (only 1/16, 512 channels) the candidates carried down miss the
best relu3_1 match more often (on 3 x 3 shared-data pairs at 256 px the relu3_1 match found had 0.71
of the best cosine similarity anywhere in the style with relu5_1, 0.84 with relu4_1) and the outputs'
global VGG statistics were slightly further from the style's; pictures look alike otherwise.

Queries and keys are the content and style features, mean-variance normalised per channel and then
L2-normalised per position, so scores are cosine similarities divided by the temperature ``smooth``.
The attended values are the style features *and their squares*, so every level yields the
attention-weighted mean and standard deviation of the matched style features, computed over the
sparse matched set only; the level's output is ``std * mean_variance_norm(content) + mean`` (the
AdaAttN transform, i.e. the "local" feature target of the papers' unsupervised setting). The three
outputs (relu3_1, relu4_1, relu5_1) are decoded by the project's universal decoder.

Prune mask: without learned prune embeddings every match is kept. This is done through the attention
functions' own prune gate, with constant one-dimensional prune embeddings equal to 1 on both sides
(gate ``1 * 1 > 0``), so ``conf`` is 1 everywhere and the attention functions are used unchanged.

Sizes: the inter-scale step needs each level to be exactly twice the next coarser one, so the
content is reflect-padded to a multiple of 16 (and the image cropped back) and the style is
reflect-padded to a multiple of 16 once in :meth:`DynastStyleModel.prepare_style`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dynast_cli.attention.dense import AttentionResult, dense_attention
from dynast_cli.attention.sparse import inner_scale_sparse_attention, inter_scale_sparse_attention
from dynast_cli.models.adaattn import finish_image, mix_weights
from dynast_cli.models.decoder import decode_features
from dynast_cli.nn.decoders import VGGDecoder
from dynast_cli.nn.norm import mean_variance_norm
from dynast_cli.pipelines.style import pad_to_multiple

#: Encoder output indices of the transformed levels, fine to coarse: relu3_1, relu4_1, relu5_1.
LEVELS = (2, 3, 4)
LEVEL_NAMES = {"relu3_1": 2, "relu4_1": 3, "relu5_1": 4}
#: relu5_1 is at 1/16 of the input; every level must be exactly twice the next coarser one.
SIZE_MULTIPLE = 16


def matching_features(feat: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W): mean-variance normalised per channel, then unit L2 norm per position."""
    return F.normalize(mean_variance_norm(feat), dim=1)


def moments_to_mean_std(moments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attended (E[v], E[v^2]) stacked on channels (B, 2C, H, W) -> mean, std (B, C, H, W).

    ``std = sqrt(relu(E[v^2] - E[v]^2))`` as in AdaAttN.
    """
    mean, second = moments.chunk(2, dim=1)
    return mean, torch.sqrt(torch.relu(second - mean * mean))


@dataclass
class DynastStyle:
    """A style encoded once. Per entry of :data:`LEVELS` (relu3_1, relu4_1, relu5_1):
    keys (1, C, hk, wk) matching features, moments (1, 2C, hk, wk) = cat(feature, feature^2)."""

    keys: list[torch.Tensor]
    moments: list[torch.Tensor]


class DynastStyleModel(nn.Module):
    """Parameter-free DynaST-style matching + AdaAttN transform + universal decoder.

    ``encoder``: VGG-shaped (forward(x) -> [relu1_1 .. relu5_1], ceil-mode pooling);
    ``decoder``: a VGGDecoder(skip=True) inverting the encoder's relu3_1/4_1/5_1 (the universal decoder).
    ``top_k``: matches carried from level to level (capped by the number of coarse style positions);
    ``coarse``: ``"relu4_1"`` or ``"relu5_1"``, where the dense matching happens;
    ``smooth``: softmax temperature on cosine similarities; ``inner_steps``: inner-scale steps per
    finer level; ``chunk``: query positions per attention chunk (bounds memory, not the result).
    """

    name = "dynast"

    def __init__(
        self,
        encoder: nn.Module,
        decoder: VGGDecoder,
        top_k: int = 4,
        coarse: str = "relu4_1",
        smooth: float = 0.05,
        inner_steps: int = 1,
        chunk: int = 1024,
    ):
        super().__init__()
        if coarse not in ("relu4_1", "relu5_1"):
            raise ValueError(f"coarse must be 'relu4_1' or 'relu5_1', got {coarse!r}")
        if top_k < 1 or inner_steps < 0 or smooth <= 0:
            raise ValueError(f"need top_k >= 1, inner_steps >= 0, smooth > 0 (got {top_k}, {inner_steps}, {smooth})")
        self.encoder = encoder
        self.decoder = decoder
        self.top_k = top_k
        self.coarse = LEVEL_NAMES[coarse]
        self.smooth = smooth
        self.inner_steps = inner_steps
        self.chunk = chunk

    def prepare_style(self, style: torch.Tensor) -> DynastStyle:
        """style (1, 3, h, w) in [0, 1] -> its matching keys and value moments at relu3_1..relu5_1
        (computed on the style reflect-padded to a multiple of 16)."""
        feats = self.encoder(pad_to_multiple(style, SIZE_MULTIPLE)[0])
        return DynastStyle(
            keys=[matching_features(feats[i]) for i in LEVELS],
            moments=[torch.cat([feats[i], feats[i] * feats[i]], dim=1) for i in LEVELS],
        )

    def match(self, feats: Sequence[torch.Tensor], style: DynastStyle) -> dict[int, AttentionResult]:
        """Coarse-to-fine matching of content features to one style.

        feats: content [relu1_1 .. relu5_1] (B, C_i, H_i, W_i), each level twice the next coarser one.
        -> {level index (4, 3, 2): AttentionResult(output = attended moments (B, 2C, H, W),
        conf (B, 1, H, W) == 1, top_k (B, H*W, K) indices into the style grid of that level, or None
        for a dense level coarser than ``coarse``)}.
        """
        results: dict[int, AttentionResult] = {}
        top: torch.Tensor | None = None
        for j, level in reversed(list(enumerate(LEVELS))):
            q = matching_features(feats[level])
            b = q.shape[0]
            k = style.keys[j].expand(b, -1, -1, -1)
            v = style.moments[j].expand(b, -1, -1, -1)
            keep_q = q.new_ones(b, 1, *q.shape[-2:])  # constant prune embeddings: every match kept
            keep_k = k.new_ones(b, 1, *k.shape[-2:])
            if level >= self.coarse:
                n_keys = k.shape[-2] * k.shape[-1]
                want = min(self.top_k, n_keys) if level == self.coarse else None
                res = dense_attention(q, k, keep_q, keep_k, v, smooth=self.smooth, top_k=want, chunk=self.chunk)
            else:
                res = inter_scale_sparse_attention(q, k, keep_q, keep_k, v, top, self.smooth, chunk=self.chunk)
                for _ in range(self.inner_steps):
                    res = inner_scale_sparse_attention(q, k, keep_q, keep_k, v, res.top_k, self.smooth, chunk=self.chunk)
            top = res.top_k
            results[level] = res
        return results

    def transform(
        self, feats: Sequence[torch.Tensor], states: Sequence[DynastStyle], mix: Sequence[float], alpha: float = 1.0
    ) -> list[torch.Tensor]:
        """Content features [relu1_1 .. relu5_1] -> transformed relu3_1, relu4_1, relu5_1 features.

        Per style and level ``std * mean_variance_norm(content) + mean`` from the matched moments,
        blended over the styles with the normalised ``mix``, then ``alpha * t + (1 - alpha) * content``.
        """
        weights = mix_weights(mix, len(states))
        blended = [torch.zeros_like(feats[level]) for level in LEVELS]
        for state, w in zip(states, weights):
            matches = self.match(feats, state)
            for j, level in enumerate(LEVELS):
                mean, std = moments_to_mean_std(matches[level].output)
                blended[j] = blended[j] + w * (std * mean_variance_norm(feats[level]) + mean)
        if alpha == 1.0:
            return blended
        return [alpha * t + (1.0 - alpha) * feats[level] for t, level in zip(blended, LEVELS)]

    def stylize(
        self, content: torch.Tensor, states: Sequence[DynastStyle], mix: Sequence[float], alpha: float = 1.0
    ) -> torch.Tensor:
        """content (B, 3, H, W) in [0, 1], any size -> stylised (B, 3, H, W) in [0, 1]."""
        padded, size = pad_to_multiple(content, SIZE_MULTIPLE)
        t3, t4, t5 = self.transform(self.encoder(padded), states, mix, alpha)
        return finish_image(decode_features(self.decoder, t3, t4, t5), size)
