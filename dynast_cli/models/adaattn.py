"""AdaAttN (Liu et al., ICCV 2021), key-compatible with the official checkpoints.

Official layout (``skip_connection_3`` + ``shallow_layer``, the released models): attention at
relu3_1 (``adaattn_3``, 256 channels, keys 448 wide, style subsampled above 64*64 positions),
relu4_1 and relu5_1 (``transformer.attn_adain_4_1`` / ``attn_adain_5_1``, keys 960 / 1472 wide,
subsampled above 256*256), ``transformer.merge_conv`` (3x3, reflection pad) on
``attn4 + upsample(attn5)``, then ``decoder`` (:class:`~dynast_cli.nn.decoders.VGGDecoder`,
``skip=True``) with the relu3_1 result as skip input. Keys are the concatenation of all shallower
layers' features, nearest-resized to the layer's size, each mean-variance normalised.
Subsampling is seeded (6666) as in the official test code.

Differences from the official code, none of which changes its results on its own inputs:

* any content/style size: relu5_1 is resized to relu4_1's exact size (same as ``scale_factor=2`` for
  even sizes) and the decoded image is cropped (or, for an encoder with floor pooling, resized) to
  the content size;
* style positions are subsampled *before* the (pointwise) ``g``/``h`` convolutions, and style keys
  and values are computed once per style (:meth:`AdaAttNModel.prepare_style`);
* ``learned=False`` ("AdaAttN*"): ``f``, ``g``, ``h`` and ``merge_conv`` are identities, so the only
  weights are the decoder's (the project's universal decoder);
* ``attention="cosine"``: the video model's bounded cosine scores at every level;
* one style per :meth:`AdaAttNModel.transform` call: mixing several styles and the style strength
  (``alpha``) are applied to the per-style outputs by the one style-method path
  (:class:`dynast_cli.styles.base.StyleMethod`), before :meth:`AdaAttNModel.decode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dynast_cli.attention.adaattn import KINDS, adaattn_stats, style_sample_index
from dynast_cli.nn.decoders import VGGDecoder
from dynast_cli.models.vgg import FEATURE_CHANNELS, TRANSFORM_LEVELS
from dynast_cli.nn.norm import mean_variance_norm

#: Score-matrix elements per attention chunk (2**24 float32 = 64 MiB).
CHUNK_ELEMENTS = 1 << 24


def get_key(feats: Sequence[torch.Tensor], index: int) -> torch.Tensor:
    """The official ``get_key(feats, index, need_shallow=True)``.

    feats: [relu1_1, ..., relu5_1]; -> (B, sum of widths up to ``index``, h, w) at feats[index]'s size:
    each shallower layer nearest-resized, then every part mean-variance normalised, concatenated.
    """
    size = feats[index].shape[-2:]
    parts = [mean_variance_norm(F.interpolate(f, size=size)) for f in feats[:index]]
    return torch.cat(parts + [mean_variance_norm(feats[index])], dim=1)


def resize_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Nearest-resize x (B, C, h, w) to ref's spatial size (the official 2x upsampling, any size)."""
    return x if x.shape[-2:] == ref.shape[-2:] else F.interpolate(x, size=ref.shape[-2:], mode="nearest")


def merge_levels(f4: torch.Tensor, f5: torch.Tensor, merge_conv: nn.Conv2d | None) -> torch.Tensor:
    """The official transformer merge: merge_conv(reflect_pad(f4 + up(f5))); identity conv when None.

    f4 (B, 512, h, w), f5 (B, 512, h', w') nearest-resized to (h, w) -> (B, 512, h, w).
    """
    x = f4 + resize_to(f5, f4)
    if merge_conv is None:
        return x
    return merge_conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))


def conv1x1(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Apply a 1x1 Conv2d to flattened positions: x (B, Cin, N) -> (B, Cout, N)."""
    return F.conv1d(x, conv.weight.flatten(1).unsqueeze(-1), conv.bias)


class AdaAttNLayer(nn.Module):
    """The official ``networks.AdaAttN`` (keys ``f``, ``g``, ``h``), split into a style and a content step.

    ``learned=False``: no parameters; query = content key, key = style key, value = style feature.
    """

    def __init__(self, in_planes: int, key_planes: int, max_sample: int, learned: bool = True):
        super().__init__()
        self.learned = learned
        self.max_sample = max_sample
        if learned:
            self.f = nn.Conv2d(key_planes, key_planes, 1)
            self.g = nn.Conv2d(key_planes, key_planes, 1)
            self.h = nn.Conv2d(in_planes, in_planes, 1)

    def prepare(self, style: torch.Tensor, style_key: torch.Tensor, seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """style (B, C, h, w), style_key (B, Ck, h, w) -> key (B, Ck, Nk), value (B, C, Nk).

        Nk = min(h*w, max_sample): positions subsampled with the official seeded randperm.
        """
        key, value = style_key.flatten(2), style.flatten(2)
        index = style_sample_index(key.shape[2], self.max_sample, seed, key.device)
        if index is not None:
            key, value = key[:, :, index], value[:, :, index]
        if self.learned:
            key, value = conv1x1(self.g, key), conv1x1(self.h, value)
        return key, value

    def forward(
        self,
        content: torch.Tensor,
        content_key: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        kind: str = "softmax",
        chunk_elements: int = CHUNK_ELEMENTS,
    ) -> torch.Tensor:
        """content (B, C, H, W), content_key (B, Ck, H, W), key/value from :meth:`prepare`
        -> ``std * mean_variance_norm(content) + mean``: (B, C, H, W)."""
        b, c, h, w = content.shape
        query = content_key.flatten(2)  # (B, Ck, Nq)
        if self.learned:
            query = conv1x1(self.f, query)
        if key.shape[0] != b:
            key, value = key.expand(b, -1, -1), value.expand(b, -1, -1)
        mean, std = adaattn_stats(query, key, value, kind, chunk=max(1, chunk_elements // key.shape[2]))
        return (std * mean_variance_norm(content).flatten(2) + mean).view(b, c, h, w)


class AdaAttNTransformer(nn.Module):
    """The official ``networks.Transformer`` (keys ``attn_adain_4_1``, ``attn_adain_5_1``, ``merge_conv``)."""

    def __init__(self, learned: bool = True, max_sample: int = 256 * 256):
        super().__init__()
        self.attn_adain_4_1 = AdaAttNLayer(512, sum(FEATURE_CHANNELS[:4]), max_sample, learned)
        self.attn_adain_5_1 = AdaAttNLayer(512, sum(FEATURE_CHANNELS), max_sample, learned)
        self.merge_conv = nn.Conv2d(512, 512, 3) if learned else None

    def merge(self, f4: torch.Tensor, f5: torch.Tensor) -> torch.Tensor:
        """relu4_1-level (B,512,h,w) + relu5_1-level (B,512,h',w') -> merge_conv(pad(f4 + up(f5)))."""
        return merge_levels(f4, f5, self.merge_conv)


@dataclass
class AdaAttNStyle:
    """A style encoded once: (key (B, Ck, Nk), value (B, C, Nk)) at relu3_1, relu4_1, relu5_1."""

    levels: list[tuple[torch.Tensor, torch.Tensor]]


class AdaAttNModel(nn.Module):
    """AdaAttN with any VGG-shaped ``encoder`` (forward(x) -> [relu1_1 .. relu5_1]).

    State-dict prefixes: ``adaattn_3.``, ``transformer.``, ``decoder.`` (+ the encoder's under ``encoder.``).
    ``max_sample`` / ``max_sample_3``: style positions kept at relu4_1/relu5_1 and at relu3_1.
    ``decoder``: a VGGDecoder(skip=True) to use (e.g. the universal decoder); a fresh one by default.
    """

    architecture = "adaattn"

    def __init__(
        self,
        encoder: nn.Module,
        learned: bool = True,
        attention: str = "softmax",
        max_sample: int = 256 * 256,
        max_sample_3: int = 64 * 64,
        seed: int | None = 6666,
        decoder: VGGDecoder | None = None,
        chunk_elements: int = CHUNK_ELEMENTS,
    ):
        super().__init__()
        if attention not in KINDS:
            raise ValueError(f"unknown attention {attention!r} (use one of {KINDS})")
        self.encoder = encoder
        self.adaattn_3 = AdaAttNLayer(256, sum(FEATURE_CHANNELS[:3]), max_sample_3, learned)
        self.transformer = AdaAttNTransformer(learned, max_sample)
        self.decoder = decoder if decoder is not None else VGGDecoder(skip=True)
        self.learned = learned
        self.attention = attention
        self.seed = seed
        self.chunk_elements = chunk_elements

    def config(self) -> dict:
        """Constructor arguments that define the architecture (stored in converted files)."""
        return {
            "learned": self.learned,
            "attention": self.attention,
            "max_sample": self.transformer.attn_adain_4_1.max_sample,
            "max_sample_3": self.adaattn_3.max_sample,
            "seed": self.seed,
        }

    def attention_layers(self) -> tuple[AdaAttNLayer, AdaAttNLayer, AdaAttNLayer]:
        """The attention layers at relu3_1, relu4_1, relu5_1 (their ``max_sample`` caps the style keys)."""
        return self.adaattn_3, self.transformer.attn_adain_4_1, self.transformer.attn_adain_5_1

    def prepare_style(self, style: torch.Tensor) -> AdaAttNStyle:
        """style (1, 3, h, w) in [0, 1] -> its keys and values at the three attention levels."""
        feats = self.encoder(style)
        return AdaAttNStyle([layer.prepare(feats[i], get_key(feats, i), self.seed)
                             for i, layer in zip(TRANSFORM_LEVELS, self.attention_layers())])

    def transform(self, feats: Sequence[torch.Tensor], state: AdaAttNStyle) -> list[torch.Tensor]:
        """Content features [relu1_1 .. relu5_1] and one style -> the attention outputs at relu3_1,
        relu4_1, relu5_1 (before merging/decoding)."""
        return [layer(feats[i], get_key(feats, i), *state.levels[j], self.attention, self.chunk_elements)
                for j, (i, layer) in enumerate(zip(TRANSFORM_LEVELS, self.attention_layers()))]

    def decode(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """Transformed [relu3_1, relu4_1, relu5_1] -> the decoded image (unclamped): the official
        ``decoder(merge_conv(pad(f4 + up(f5))), f3)``."""
        f3, f4, f5 = levels
        return self.decoder(self.transformer.merge(f4, f5), f3)
