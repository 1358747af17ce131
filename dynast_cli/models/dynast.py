"""The DynaST generator (Liu et al., ECCV 2022): exemplar-guided generation with dynamic sparse attention.

Composition (coarse to fine, as the official ``DynaSTGenerator``):

- two pyramid encoders: ``encoder_q`` on the query semantics, ``encoder_kv`` on cat(reference RGB,
  reference semantics), each giving features at 1/8, 1/4, 1/2 and 1;
- at 1/8: SPADE residual embeddings, then ``n_layers`` blocks of *dense* prune-masked attention
  (:func:`dynast_cli.attention.dense.dense_attention`) with a learned positional embedding; the last
  block's raw scores give each query its ``top_k`` reference matches;
- at 1/4, 1/2, 1: features upsampled from the coarser scale, then one *inter-scale* block (attend to the
  2x2 children of the parent's matches) and ``n_layers - 1`` *inner-scale* blocks (own matches plus the
  neighbours' ones), each passing its top-k on (:mod:`dynast_cli.attention.sparse`);
- a main branch upsampled scale by scale and merged with each scale's attention result, then a
  3x3 conv and tanh.

Usage::

    model = build_model("dynast_deepfashion.safetensors", "dynast")  # dynast_cli.weights.build; eval mode
    with torch.inference_mode():
        image = model(query, ref_image, ref_semantics)                # (B, 3, H, W) in [-1, 1]

``query`` (B, semantic_nc, H, W) and ``ref_semantics`` (B, semantic_nc, H, W) are the target and the
reference's semantics (for DeepFashion: RGB skeleton in [0, 1] + 17 limb distance maps), ``ref_image``
(B, 3, H, W) the reference RGB in [-1, 1]. H and W must be multiples of 8 and at least 16 (the
pipelines pad). The positional embedding is learned for ``crop_size``; other sizes interpolate it
(bilinear). Official quirks kept: the last merge reuses ``embed_q1`` (``embed_1`` is never used and
not part of the model), PReLUs are shared inside blocks, the 1/8 scale uses temperature sqrt(C).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from dynast_cli.attention.dense import dense_attention
from dynast_cli.attention.sparse import (
    DEFAULT_CHUNK,
    inner_scale_sparse_attention,
    inter_scale_sparse_attention,
)
from dynast_cli.errors import InputError
from dynast_cli.nn.spade import (
    SPADE,
    FeatureEncoder,
    ResidualBlock,
    SPADEResnetBlock,
    conv3x3,
    feature_normalize,
    positional_norm,
    upsample_conv,
)

ARCHITECTURE = "dynast"


@dataclass(frozen=True)
class DynastConfig:
    """Constructor arguments of :class:`DynastGenerator` (defaults: the official DeepFashion model)."""

    ngf: int = 64
    max_multi: int = 8
    n_layers: int = 2
    top_k: int = 4
    smooth: float = 0.01
    pos_dim: int = 16
    prune_dim: int = 16
    semantic_nc: int = 20
    crop_size: int = 256

    def mult(self, m: int) -> int:
        """Channel multiplier of the scale whose nominal multiplier is ``m`` (8 at 1/8 ... 1 at 1)."""
        return min(self.max_multi, m)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> DynastConfig:
        """Build from a dict (e.g. safetensors metadata); unknown keys raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DynaST config key(s) {unknown}")
        return cls(**data)


class DynastTransformerBlock(nn.Module):
    """One attention block: query/key = cat(L2-normalised features, positional embedding).

    ``kind`` is ``dense`` (1/8), ``inter`` or ``inner`` (finer scales). Output:
    res_block(positional_norm(attn + (1 - conf) * SPADE(x, seg) + x)).
    """

    def __init__(self, dim_qk: int, dim_v: int, dim_prune: int, ic: int, kind: str, smooth: float | None):
        super().__init__()
        self.f = nn.Conv2d(dim_qk, dim_qk, (1, 1))
        self.g = nn.Conv2d(dim_qk, dim_qk, (1, 1))
        self.h = nn.Conv2d(dim_v, dim_v, (1, 1))
        self.f_prune = nn.Conv2d(dim_qk, dim_prune, (1, 1))
        self.g_prune = nn.Conv2d(dim_qk, dim_prune, (1, 1))
        self.spade = SPADE(dim_v, ic)
        self.res_block = ResidualBlock(dim_v)
        self.kind = kind
        self.smooth = smooth

    def forward(
        self,
        x: torch.Tensor,
        kv: torch.Tensor,
        pos: torch.Tensor,
        seg: torch.Tensor,
        top_k: torch.Tensor | int | None,
        need_idx: bool,
        ref: torch.Tensor | None,
        chunk: int,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """x, kv (B, C, h, w); pos (1, Cp, h, w); seg (B, ic, H, W); ref (B, 3, h, w) to warp or None.

        ``top_k``: for ``dense`` the number of matches to return (used when ``need_idx``), otherwise
        the previous indices. -> (output (B, C, h, w), top-k indices or None, warped ref or None).
        """
        pos = pos.expand(x.shape[0], -1, -1, -1)
        query = torch.cat([feature_normalize(x), pos], 1)
        key = torch.cat([feature_normalize(kv), pos], 1)
        args = (self.f(query), self.g(key), self.f_prune(query), self.g_prune(key), self.h(kv))
        if self.kind == "dense":
            res = dense_attention(*args, self.smooth, top_k if need_idx else None, ref, chunk)
        else:
            attend = inter_scale_sparse_attention if self.kind == "inter" else inner_scale_sparse_attention
            res = attend(*args, top_k, self.smooth, need_idx, ref, chunk)
        y = positional_norm(res.output + (1 - res.conf) * self.spade(x, seg) + x)
        return self.res_block(y), res.top_k, res.warped


class DynastGenerator(nn.Module):
    """DynaST generator; state-dict keys are those of the official checkpoint after conversion.

    ``chunk`` (query positions per attention step) bounds attention memory; it does not change results.
    """

    def __init__(self, config: DynastConfig = DynastConfig(), chunk: int = DEFAULT_CHUNK):
        super().__init__()
        self.config = config
        self.chunk = chunk
        c = config
        sem, ref_nc = c.semantic_nc, c.semantic_nc + 3
        self.encoder_q = FeatureEncoder(sem, c.ngf, c.max_multi)
        self.encoder_kv = FeatureEncoder(ref_nc, c.ngf, c.max_multi)
        self.pos_embed = nn.Parameter(torch.randn(1, c.pos_dim * c.mult(8), c.crop_size // 8, c.crop_size // 8))
        for level, m in ((4, 8), (3, 4), (2, 2), (1, 1)):
            width = c.ngf * c.mult(m)
            if level < 4:  # upsampling from the coarser scale
                coarser = c.ngf * c.mult(2 * m)
                for name in ("decoder_", "decoder_q", "decoder_kv"):
                    self.add_module(f"{name}{level + 1}{level}", upsample_conv(coarser, width, nn.ReLU()))
                pos_in, pos_out = c.pos_dim * c.mult(2 * m), c.pos_dim * c.mult(m)
                self.add_module(f"pos_{level + 1}{level}", upsample_conv(pos_in, pos_out, nn.LeakyReLU()))
            self.add_module(f"embed_q{level}", SPADEResnetBlock(width, sem))
            self.add_module(f"embed_kv{level}", SPADEResnetBlock(width, ref_nc))
            blocks = [
                DynastTransformerBlock(
                    (c.ngf + c.pos_dim) * c.mult(m),
                    width,
                    c.prune_dim * c.mult(m),
                    sem,
                    kind="dense" if level == 4 else ("inter" if i == 0 else "inner"),
                    smooth=None if level == 4 else c.smooth,
                )
                for i in range(c.n_layers)
            ]
            self.add_module(f"transformer_{level}", nn.ModuleList(blocks))
            if level in (3, 2):  # the official embed_1 exists but is never used: the last merge uses embed_q1
                self.add_module(f"embed_{level}", SPADEResnetBlock(width, sem))
        self.decoder_10 = nn.Sequential(conv3x3(c.ngf, 3), nn.Tanh())

    def _check_inputs(self, query: torch.Tensor, ref_image: torch.Tensor, ref_semantics: torch.Tensor) -> None:
        nc = self.config.semantic_nc
        if query.dim() != 4 or query.shape[1] != nc:
            raise InputError(f"DynaST query must be (B, {nc}, H, W), got {tuple(query.shape)}")
        b, _, h, w = query.shape
        if tuple(ref_image.shape) != (b, 3, h, w) or tuple(ref_semantics.shape) != (b, nc, h, w):
            raise InputError(
                f"DynaST reference must be (B, 3, H, W) + (B, {nc}, H, W) matching the query {tuple(query.shape)}, "
                f"got {tuple(ref_image.shape)} and {tuple(ref_semantics.shape)}"
            )
        if h % 8 or w % 8 or h < 16 or w < 16:
            raise InputError(f"DynaST needs height and width that are multiples of 8 and at least 16, got {h}x{w}")
        if (h // 8) * (w // 8) < self.config.top_k:
            raise InputError(f"DynaST with top_k={self.config.top_k} needs at least that many 8x8 cells, got {h}x{w}")

    def positional_embedding(self, hw: tuple[int, int]) -> torch.Tensor:
        """The learned 1/8-scale embedding (1, C, h, w), bilinearly resized when the size differs from the crop."""
        if tuple(self.pos_embed.shape[-2:]) == tuple(hw):
            return self.pos_embed
        return F.interpolate(self.pos_embed, size=hw, mode="bilinear", align_corners=False)

    def _attend(
        self,
        level: int,
        x: torch.Tensor,
        kv: torch.Tensor,
        pos: torch.Tensor,
        top_k: torch.Tensor | int,
        query: torch.Tensor,
        ref_image: torch.Tensor | None,
        warped: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor | int]:
        """The attention blocks of one scale (4: 1/8 ... 1: full). ``top_k``: the number of matches
        at 1/8, else the previous scale's indices; returns (features, this scale's indices).
        With ``ref_image`` the warped references are appended to ``warped``."""
        ref = None
        if ref_image is not None:
            factor = 2 ** (level - 1)
            ref = F.avg_pool2d(ref_image, factor, stride=factor) if factor > 1 else ref_image
        blocks = getattr(self, f"transformer_{level}")
        for i, block in enumerate(blocks):
            last = i == len(blocks) - 1
            # 1/8 ranks matches after its last block; the very last block needs none
            need_idx = last if level == 4 else not (level == 1 and last)
            x, idx, warp = block(x, kv, pos, query, top_k, need_idx, ref, self.chunk)
            if idx is not None:  # the matches found here seed the next block
                top_k = idx
            if warp is not None:
                warped.append(warp)
        return x, top_k

    def forward(
        self,
        query: torch.Tensor,
        ref_image: torch.Tensor,
        ref_semantics: torch.Tensor,
        return_all: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor | list[torch.Tensor]]:
        """-> image (B, 3, H, W) in [-1, 1]; with ``return_all`` a dict ``{"image", "warped"}`` where
        ``warped`` lists, per attention block from 1/8 to full scale, the reference RGB warped by
        that block's attention (B, 3, H/s, W/s), as the official training code's ``warp_out``."""
        self._check_inputs(query, ref_image, ref_semantics)
        cfg = self.config
        ref_input = torch.cat([ref_image, ref_semantics], 1)
        q_feats = self.encoder_q(query)  # 1/8, 1/4, 1/2, 1
        kv_feats = self.encoder_kv(ref_input)
        warped: list[torch.Tensor] = []
        q = self.embed_q4(q_feats[0], query)
        kv = self.embed_kv4(kv_feats[0], ref_input)
        pos = self.positional_embedding(tuple(q.shape[-2:]))
        x, top_k = self._attend(4, q, kv, pos, cfg.top_k, query, ref_image if return_all else None, warped)
        for level in (3, 2, 1):
            up = f"{level + 1}{level}"
            x = getattr(self, f"decoder_{up}")(x)
            q = getattr(self, f"embed_q{level}")(getattr(self, f"decoder_q{up}")(q) + q_feats[4 - level], query)
            kv = getattr(self, f"embed_kv{level}")(getattr(self, f"decoder_kv{up}")(kv) + kv_feats[4 - level], ref_input)
            pos = getattr(self, f"pos_{up}")(pos)
            x_level, top_k = self._attend(level, q, kv, pos, top_k, query, ref_image if return_all else None, warped)
            merge = getattr(self, f"embed_{level}") if level > 1 else self.embed_q1
            x = merge(x + x_level, query)
        image = self.decoder_10(x)
        return {"image": image, "warped": warped} if return_all else image


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode ``BatchNorm2d`` that directly follows a ``Conv2d`` in an ``nn.Sequential``
    into that convolution (weight * gamma / sqrt(var + eps), bias likewise) and replace it by
    ``nn.Identity`` (positions kept, so the shared PReLU stays ``model.2``). In place; returns ``model``.

    For inference only: the folded model has no BatchNorm parameters or statistics (its state dict
    lacks those keys) and computes the same outputs as the eval-mode original up to float rounding.
    Training code builds :class:`DynastGenerator` itself and keeps its BatchNorms.
    """
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(1, len(seq)):
            conv, bn = seq[i - 1], seq[i]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)) or bn.training:
                continue
            if bn.running_mean is None or bn.running_var is None:
                continue
            with torch.no_grad():
                scale = bn.running_var.add(bn.eps).rsqrt()
                if bn.affine:
                    scale = scale * bn.weight
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                new_bias = (bias - bn.running_mean) * scale + (bn.bias if bn.affine else 0)
                conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1), requires_grad=False)
                conv.bias = nn.Parameter(new_bias, requires_grad=False)
            seq[i] = nn.Identity()
    return model
