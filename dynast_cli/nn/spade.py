"""Layers of the DynaST generator: positional norm, SPADE, residual blocks, the feature pyramid encoder.

Module and parameter names follow the official DynaST code (``models/networks/architecture.py``) so
that a converted official checkpoint loads key for key. Spectral normalisation is folded into plain
``weight`` tensors by the converter (``dynast_cli.weights.convert_dynast``): here every convolution is
an ordinary ``nn.Conv2d``. All 3x3 convolutions pad by reflection, as the official ones do.

Official quirks kept on purpose:
- :class:`ResidualBlock` and :class:`SPADEResnetBlock` use ONE ``nn.PReLU`` in several places; in the
  residual block it is registered twice (``relu`` and ``model.2``), so its weight appears under both keys.
- :func:`positional_norm` uses the unbiased variance over channels and ``eps`` inside the square root.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def positional_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalise each position over channels: (x - mean_c) / sqrt(var_c + eps). x: (B, C, H, W)."""
    mean = x.mean(dim=1, keepdim=True)
    std = x.var(dim=1, keepdim=True).add(eps).sqrt()
    return (x - mean) / std


def feature_normalize(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Divide each position's channel vector by its L2 norm (+ eps). x: (B, C, H, W)."""
    return x / (torch.norm(x, 2, 1, keepdim=True) + eps)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with reflection padding 1 (the only kind the generator uses)."""
    return nn.Conv2d(cin, cout, (3, 3), (stride, stride), 1, padding_mode="reflect")


class SPADE(nn.Module):
    """Spatially-adaptive denormalisation: (1 + gamma(s)) * positional_norm(x) + beta(s).

    ``signal`` (B, ic, h, w) is resized (nearest) to x's size (B, dim, H, W) when they differ.
    """

    def __init__(self, dim: int, ic: int):
        super().__init__()
        self.mlp_shared = nn.Sequential(conv3x3(ic, dim), nn.ReLU())
        self.mlp_gamma = conv3x3(dim, dim)
        self.mlp_beta = conv3x3(dim, dim)

    def forward(self, x: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
        if signal.shape[-2:] != x.shape[-2:]:
            signal = F.interpolate(signal, x.shape[-2:])
        hidden = self.mlp_shared(signal)
        return (1 + self.mlp_gamma(hidden)) * positional_norm(x) + self.mlp_beta(hidden)


class ResidualBlock(nn.Module):
    """prelu(x + BN(conv(prelu(BN(conv(x)))))) with one shared PReLU. x: (B, dim, H, W)."""

    def __init__(self, dim: int):
        super().__init__()
        self.relu = nn.PReLU()
        self.model = nn.Sequential(
            conv3x3(dim, dim), nn.BatchNorm2d(dim), self.relu, conv3x3(dim, dim), nn.BatchNorm2d(dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.model(x))


class SPADEResnetBlock(nn.Module):
    """Residual block conditioned on ``seg`` through two SPADE layers; one shared PReLU.

    x: (B, dim, H, W), seg: (B, ic, h, w) -> (B, dim, H, W).
    """

    def __init__(self, dim: int, ic: int):
        super().__init__()
        self.conv_0 = conv3x3(dim, dim)
        self.conv_1 = conv3x3(dim, dim)
        self.norm_0 = SPADE(dim, ic)
        self.norm_1 = SPADE(dim, ic)
        self.relu = nn.PReLU()

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        dx = self.conv_0(self.relu(self.norm_0(x, seg)))
        dx = self.conv_1(self.relu(self.norm_1(dx, seg)))
        return self.relu(x + dx)


class FeatureEncoder(nn.Module):
    """Four-level pyramid (the official ``FeatureGenerator`` with instance norm).

    Level i: conv (stride 1 for level 1, else 2) -> InstanceNorm2d -> ResidualBlock, with widths
    nf, nf*min(2,m), nf*min(4,m), nf*min(8,m). forward(x (B, ic, H, W)) -> (x4, x3, x2, x1) at
    1/8, 1/4, 1/2 and full resolution.
    """

    def __init__(self, ic: int, nf: int, max_multi: int):
        super().__init__()
        widths = [nf * min(m, max_multi) for m in (1, 2, 4, 8)]
        cins = [ic] + widths[:-1]
        for i, (cin, cout) in enumerate(zip(cins, widths)):
            layer = nn.Sequential(
                conv3x3(cin, cout, stride=1 if i == 0 else 2), nn.InstanceNorm2d(cout), ResidualBlock(cout)
            )
            self.add_module(f"layer{i + 1}", layer)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x1 = self.layer1(x)
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return x4, x3, x2, x1


def upsample_conv(cin: int, cout: int, activation: nn.Module) -> nn.Sequential:
    """x2 bilinear upsampling (align_corners=True) -> 3x3 reflect conv -> activation (keys ``1.*``)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), conv3x3(cin, cout), activation
    )
