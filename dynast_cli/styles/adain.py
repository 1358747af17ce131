"""``--method adain``: the global-statistics baseline (Huang & Belongie, ICCV 2017).

AdaIN at relu3_1, relu4_1 and relu5_1 of the frozen ImageNet VGG16, decoded by the project's universal
decoder (``--weights``: another decoder file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from dynast_cli.memory import FLOAT, level_sizes
from dynast_cli.models.vgg import TRANSFORM_LEVELS
from dynast_cli.nn.norm import adain
from dynast_cli.styles import base
from dynast_cli.styles.registry import MemoryProfile, register_method


def style_bytes(method: Any, style_hw: tuple[int, int], caps: Any = None) -> int:
    """One prepared style: its relu3_1, relu4_1, relu5_1 feature maps."""
    return FLOAT * sum(c * n for c, n in zip((256, 512, 512), level_sizes(style_hw)))


@register_method(
    "adain", "AdaIN global mean/std baseline (universal decoder)", title="AdaIN",
    # measured 1024 B/px (docs/bench/calibrate_memory.py), raised above the fitted slope
    memory=MemoryProfile(bytes_per_pixel=1120.0, style_bytes=style_bytes),
)
class AdaINMethod(base.StyleMethod):
    """AdaIN at relu3_1, relu4_1, relu5_1, then the universal decoder."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        self.encoder, self.decoder = encoder, decoder

    @classmethod
    def build(cls, weights: str | Path | None = None, device: torch.device = torch.device("cpu"),
              vgg: str | Path | None = None) -> AdaINMethod:
        return cls(base.vgg16(device, vgg), base.universal_decoder(device, weights))

    def prepare_style(self, style: torch.Tensor) -> list[torch.Tensor]:
        """style (1, 3, h, w) -> its [relu3_1, relu4_1, relu5_1] features."""
        feats = self.encoder(style)
        return [feats[i] for i in TRANSFORM_LEVELS]

    def transform(self, feats: Sequence[torch.Tensor], state: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [adain(feats[i], s) for i, s in zip(TRANSFORM_LEVELS, state)]
