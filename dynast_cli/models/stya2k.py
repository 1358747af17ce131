"""StyA2K (Zhu et al., ICCV 2023), key-compatible with the official checkpoints.

Official structure (``models/A2K_model.py``): ``A2K`` all-to-key attention at relu3_1 (256 channels,
8x8 blocks), ``transform.attn_adain_4_1`` (8x8 blocks) and ``transform.attn_adain_5_1`` (4x4 blocks)
at relu4_1/relu5_1 (512 channels), ``transform.merge_conv`` (3x3, reflection pad) on
``a4 + upsample(a5)``, then the decoder. Each A2K layer: ``Q = q(norm(c))``, ``K = k(norm(s))``,
``V = v(s)`` (and ``q2/k2/v2`` for the second branch), 8 heads,
``Z = fusion1(distributed) + fusion2(progressive) + c`` (see :mod:`dynast_cli.attention.all_to_key`).

How relu3_1 enters the decoder: the official model code runs with ``skip_connection_3=True`` (its
default), concatenating the A2K relu3_1 output to the decoder's 256 channels, so
``decoder_layer_2.1`` takes 512 channels (``skip3=True``). A decoder whose ``decoder_layer_2.1``
takes 256 channels (the layout listed in ``shared/reference/stya2k_keys.txt``) has no input for it:
with ``skip3=False`` the relu3_1 branch is not built and the decoder sees the transform output only.

Differences from the official code, none of which changes its results on its own inputs:
any content and style size (see the padding scheme in :mod:`~dynast_cli.attention.all_to_key`;
relu5_1 is resized to relu4_1's exact size), style blocks computed once per style
(:meth:`StyA2KModel.prepare_style`), one style per :meth:`StyA2KModel.transform` call (the style
strength ``alpha * Z + (1 - alpha) * c`` and the blending of several styles are applied per level by
the one style-method path, :class:`dynast_cli.styles.base.StyleMethod`).

``learned=False`` is the official *parameter-free* A2K (the target of the official ``loss_A2K``):
q/k/v/q2/k2/v2 and fusion1/fusion2 (and merge_conv) are identities and ``sim_alpha = 1``,
``sim_beta = 0`` (the official initial values, the ``sigmoid(dis)`` of that loss), so
``Z = c + distributed + progressive`` with keys ``norm(c)``/``norm(s)`` and values ``s``; only the
decoder has weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from dynast_cli.attention.all_to_key import aggregate_blocks, distributed_attention, progressive_attention
from dynast_cli.models.adaattn import CHUNK_ELEMENTS, merge_levels
from dynast_cli.nn.decoders import VGGDecoder
from dynast_cli.nn.norm import adain, mean_variance_norm

HEADS = 8
#: Block sizes of the official A2K layers at relu3_1, relu4_1, relu5_1.
BLOCKS = (8, 8, 4)


@dataclass
class A2KLevel:
    """One style at one level: aggregated blocks (B, C, M) for the distributed branch and the
    projected key/value maps (B, C, h, w) for the progressive branch."""

    k_agg: torch.Tensor
    v_agg: torch.Tensor
    key2: torch.Tensor
    value2: torch.Tensor


class A2KLayer(nn.Module):
    """The official ``networks.A2K`` (keys q, k, v, q2, k2, v2, fusion1, fusion2, sim_alpha, sim_beta)."""

    def __init__(self, planes: int, block: int, heads: int = HEADS, learned: bool = True, residual: bool = True):
        super().__init__()
        self.block, self.heads, self.learned, self.residual = block, heads, learned, residual
        if learned:
            for name in ("q", "k", "v", "q2", "k2", "v2", "fusion1", "fusion2"):
                setattr(self, name, nn.Conv2d(planes, planes, 1))
            self.sim_alpha = nn.Parameter(torch.ones(1))
            self.sim_beta = nn.Parameter(torch.zeros(1))

    def _proj(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, name)(x) if self.learned else x

    def prepare(self, style: torch.Tensor) -> A2KLevel:
        """style (B, C, h, w) -> its A2K key/value summary."""
        norm_style = mean_variance_norm(style)
        alpha, beta = (self.sim_alpha, self.sim_beta) if self.learned else (1.0, 0.0)
        k_agg, v_agg = aggregate_blocks(
            self._proj("k", norm_style), self._proj("v", style), self.block, self.heads, alpha, beta
        )
        return A2KLevel(k_agg, v_agg, self._proj("k2", norm_style), self._proj("v2", style))

    def forward(self, content: torch.Tensor, level: A2KLevel, chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
        """content (B, C, H, W) -> Z = fusion1(distributed) + fusion2(progressive) + content.

        ``residual=False`` (parameter-free use with the universal decoder): Z = AdaIN((distributed +
        progressive) / 2, style), a feature map on the scale of VGG features, which that decoder
        inverts (the official sum carries the content plus twice the style scale and washes the decoded
        image out; the block averages alone lose contrast, which AdaIN to the style restores).
        """
        b, c, h, w = content.shape
        norm_content = mean_variance_norm(content)
        k_agg, v_agg, key2, value2 = level.k_agg, level.v_agg, level.key2, level.value2
        if k_agg.shape[0] != b:
            k_agg, v_agg = k_agg.expand(b, -1, -1), v_agg.expand(b, -1, -1)
            key2, value2 = key2.expand(b, -1, -1, -1), value2.expand(b, -1, -1, -1)
        chunk = max(1, chunk_elements // (self.heads * k_agg.shape[2]))
        da = distributed_attention(self._proj("q", norm_content).flatten(2), k_agg, v_agg, self.heads, chunk)
        pa = progressive_attention(self._proj("q2", norm_content), key2, value2, self.block, self.heads)
        if not self.residual:  # parameter-free only: value2 is the style feature itself
            return adain(0.5 * (da.view(b, c, h, w) + pa), value2)
        return self._proj("fusion1", da.view(b, c, h, w)) + self._proj("fusion2", pa) + content


class A2KTransform(nn.Module):
    """The official ``networks.Transform`` (keys ``attn_adain_4_1``, ``attn_adain_5_1``, ``merge_conv``)."""

    def __init__(self, learned: bool = True, heads: int = HEADS, residual: bool = True):
        super().__init__()
        self.attn_adain_4_1 = A2KLayer(512, BLOCKS[1], heads, learned, residual)
        self.attn_adain_5_1 = A2KLayer(512, BLOCKS[2], heads, learned, residual)
        self.merge_conv = nn.Conv2d(512, 512, 3) if learned else None

    def merge(self, f4: torch.Tensor, f5: torch.Tensor) -> torch.Tensor:
        """merge_conv(pad(f4 + up(f5))), identity merge when not learned."""
        return merge_levels(f4, f5, self.merge_conv)


@dataclass
class StyA2KStyle:
    """A style encoded once: :class:`A2KLevel` at relu3_1 (None without skip3), relu4_1, relu5_1."""

    levels: list[A2KLevel | None]


class StyA2KModel(nn.Module):
    """StyA2K with any VGG-shaped ``encoder`` (forward(x) -> [relu1_1 .. relu5_1]).

    State-dict prefixes: ``a2k.`` (only with ``skip3``), ``transformer.`` (the official ``transform``), ``decoder.``
    (+ the encoder's under ``encoder.``). ``decoder``: a VGGDecoder with ``skip == skip3`` to use.
    ``residual=False`` (parameter-free only): each level outputs the mean of the two attentions,
    AdaIN-matched to the style, instead of the official content + both (see :meth:`A2KLayer.forward`).
    """

    architecture = "stya2k"

    def __init__(
        self,
        encoder: nn.Module,
        learned: bool = True,
        skip3: bool = True,
        heads: int = HEADS,
        decoder: VGGDecoder | None = None,
        chunk_elements: int = CHUNK_ELEMENTS,
        residual: bool = True,
    ):
        super().__init__()
        if residual is False and learned:
            raise ValueError("residual=False is for the parameter-free model (learned=False)")
        if decoder is not None and decoder.skip != skip3:
            raise ValueError(f"decoder skip={decoder.skip} does not match skip3={skip3}")
        self.encoder = encoder
        self.a2k = A2KLayer(256, BLOCKS[0], heads, learned, residual) if skip3 else None
        self.transformer = A2KTransform(learned, heads, residual)
        self.decoder = decoder if decoder is not None else VGGDecoder(skip=skip3)
        self.learned, self.skip3, self.heads = learned, skip3, heads
        self.chunk_elements = chunk_elements

    def config(self) -> dict:
        """Constructor arguments that define the architecture (stored in converted files)."""
        return {"learned": self.learned, "skip3": self.skip3, "heads": self.heads}

    def attention_layers(self) -> list[tuple[int, A2KLayer | None]]:
        """(encoder output index, A2K layer or None without skip3) at relu3_1, relu4_1, relu5_1."""
        return [(2, self.a2k), (3, self.transformer.attn_adain_4_1), (4, self.transformer.attn_adain_5_1)]

    def prepare_style(self, style: torch.Tensor) -> StyA2KStyle:
        """style (1, 3, h, w) in [0, 1] -> its A2K summaries at the attention levels."""
        feats = self.encoder(style)
        return StyA2KStyle([None if layer is None else layer.prepare(feats[i]) for i, layer in self.attention_layers()])

    def transform(self, feats: Sequence[torch.Tensor], state: StyA2KStyle) -> list[torch.Tensor | None]:
        """Content features [relu1_1 .. relu5_1] and one style -> the A2K outputs Z at relu3_1 (None
        without skip3), relu4_1, relu5_1."""
        return [None if layer is None else layer(feats[i], state.levels[j], self.chunk_elements)
                for j, (i, layer) in enumerate(self.attention_layers())]

    def decode(self, levels: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """[Z3 (or None), Z4, Z5] -> the decoded image (unclamped): ``decoder(merge_conv(pad(Z4 + up(Z5))), Z3)``."""
        f3, f4, f5 = levels
        return self.decoder(self.transformer.merge(f4, f5), f3)
