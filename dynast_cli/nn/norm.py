"""Channel statistics used by every style method.

These follow the official AdaIN/AdaAttN/StyA2K code exactly (unbiased variance, ``eps`` added to
the variance before the square root), because the official checkpoints were trained with them.
"""

from __future__ import annotations

import torch


def calc_mean_std(feat: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over space.

    feat: (B, C, H, W) -> mean, std: (B, C, 1, 1); std = sqrt(unbiased var + eps).
    """
    b, c = feat.shape[:2]
    flat = feat.reshape(b, c, -1)
    var = flat.var(dim=2) + eps
    return flat.mean(dim=2).view(b, c, 1, 1), var.sqrt().view(b, c, 1, 1)


def mean_variance_norm(feat: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> the same, each channel normalised to zero mean and unit std."""
    mean, std = calc_mean_std(feat)
    return (feat - mean) / std


def adain(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """AdaIN (Huang & Belongie 2017): content (B,C,H,W) gets style's (B,C,h,w) channel mean/std."""
    s_mean, s_std = calc_mean_std(style)
    return mean_variance_norm(content) * s_std + s_mean
