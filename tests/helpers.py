"""Test doubles shared by several test files (no downloads, tiny and fast)."""

from __future__ import annotations

import torch
from torch import nn


class TinyEncoder(nn.Module):
    """Stands in for the VGG encoders: 5 maps with VGG's channels at strides 1, 2, 4, 8, 16."""

    CHANNELS = (64, 128, 256, 512, 512)

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        convs, cin = [], 3
        for c in self.CHANNELS:
            conv = nn.Conv2d(cin, c, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / (9 * cin)) ** 0.5)
                conv.bias.zero_()
            convs.append(conv)
            cin = c
        self.convs = nn.ModuleList(convs)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor, upto: int = 5) -> list[torch.Tensor]:
        feats = []
        for i, conv in enumerate(self.convs[:upto]):
            if i:
                x = nn.functional.max_pool2d(x, 2, ceil_mode=True)
            x = torch.relu(conv(x))
            feats.append(x)
        return feats
