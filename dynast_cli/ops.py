"""Pure tensor helpers shared by the models, the style methods and the pipelines.

Sizes (:func:`fit_size`, :func:`resize`, :func:`pad_to_multiple`, :func:`finish_image`), colour
(:func:`preserve_color`), mixing several styles and the style strength (:func:`mix_weights`,
:func:`blend`, :func:`apply_alpha`, :func:`mix_levels`) and image sheets (:func:`image_grid`).
Images are float tensors (B, 3, H, W) in [0, 1] unless said otherwise. Nothing here knows of files,
models or methods.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from dynast_cli.errors import DynastError

#: The side multiple every style method works at: relu5_1 is at 1/16 of the input, and DynaST's
#: inter-scale matching needs each level to be exactly twice the next coarser one.
PAD_MULTIPLE = 16


def fit_size(h: int, w: int, max_size: int | None = None, size: int | None = None) -> tuple[int, int]:
    """Target (H, W) keeping the aspect ratio: ``size`` sets the long side, ``max_size`` caps it."""
    long_side = max(h, w)
    target = size or long_side
    if max_size:
        target = min(target, max_size)
    if target == long_side:
        return h, w
    scale = target / long_side
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize(image: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(B,3,H,W) -> (B,3,*hw), antialiased when shrinking."""
    if tuple(image.shape[-2:]) == tuple(hw):
        return image
    return F.interpolate(image, size=hw, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def pad_to_multiple(image: torch.Tensor, multiple: int = PAD_MULTIPLE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (B,C,H,W) on the bottom/right to multiples of ``multiple``; returns the original (H, W)."""
    h, w = image.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        image = F.pad(image, (0, pw, 0, ph), mode=mode)
    return image, (h, w)


def finish_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Decoder output (B, 3, H', W') -> (B, 3, *size) in [0, 1].

    With ceil-mode pooling the decoded image covers the content (H' >= H) and is cropped at the
    bottom/right; otherwise (floor pooling) it is resized bilinearly.
    """
    h, w = size
    if image.shape[-2] >= h and image.shape[-1] >= w:
        image = image[..., :h, :w]
    else:
        image = F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False)
    return image.clamp(0.0, 1.0)


_RGB_TO_YUV = torch.tensor([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]])


def preserve_color(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Keep the stylised luminance and the content's chrominance (YUV), both (B,3,H,W) in [0,1]."""
    m = _RGB_TO_YUV.to(stylized)
    y_s = torch.einsum("ij,bjhw->bihw", m, stylized)
    y_c = torch.einsum("ij,bjhw->bihw", m, content)
    yuv = torch.cat([y_s[:, :1], y_c[:, 1:]], dim=1)
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(m), yuv).clamp(0, 1)


def mix_weights(mix: Sequence[float] | None, n: int) -> list[float]:
    """Mixing weights for ``n`` styles: default equal, must be >= 0, normalised to sum 1
    (:class:`DynastError` naming ``--mix`` otherwise)."""
    if n == 0:
        raise DynastError("at least one style image is needed")
    if mix is None or len(mix) == 0:
        return [1.0 / n] * n
    if len(mix) != n:
        raise DynastError(f"--mix has {len(mix)} weight(s) for {n} style(s)")
    if any(m < 0 or not math.isfinite(m) for m in mix) or sum(mix) <= 0:
        raise DynastError("--mix weights must be non-negative and not all zero")
    mix = [float(m) for m in mix]
    if not math.isfinite(sum(mix)):  # huge weights (1e308, 1e308) overflow the sum: divide by the largest first
        mix = [m / max(mix) for m in mix]
    total = sum(mix)
    return [m / total for m in mix]


def blend(features: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """Weighted sum of per-style tensors of one shape: ``sum_i features[i] * weights[i]``."""
    out = features[0] * weights[0]
    for f, m in zip(features[1:], weights[1:]):
        out = out + f * m
    return out


def apply_alpha(stylized: torch.Tensor | None, content: torch.Tensor, alpha: float) -> torch.Tensor | None:
    """The style strength on one feature map: ``alpha * stylized + (1 - alpha) * content``
    (``stylized`` itself at alpha 1; None stays None)."""
    if stylized is None or alpha == 1.0:
        return stylized
    return alpha * stylized + (1.0 - alpha) * content


def mix_levels(
    per_style: Sequence[Sequence[torch.Tensor | None]], content: Sequence[torch.Tensor], weights: Sequence[float],
    alpha: float = 1.0,
) -> list[torch.Tensor | None]:
    """Per-style transformed levels ``[[level_0, level_1, ...] per style]`` -> one list of levels:
    each level blended over the styles with ``weights`` (normalised, :func:`mix_weights`), then moved
    toward ``content[level]`` by ``alpha``. A level that is None (a method without it) stays None."""
    out: list[torch.Tensor | None] = []
    for j, level in enumerate(content):
        parts = [levels[j] for levels in per_style]
        mixed = None if parts[0] is None else blend(parts, weights)
        out.append(apply_alpha(mixed, level, alpha))
    return out


def image_grid(rows: Sequence[Sequence[torch.Tensor | None]], cell: int, pad: int = 4) -> torch.Tensor:
    """Lay out images (each (3, H, W) or (1, 3, H, W) in [0, 1]) in a white-padded grid -> (3, H', W').

    Each image is resized to fit a ``cell`` x ``cell`` box (aspect kept) and centred in it; ``None``
    leaves a cell blank. Rows may have different lengths.
    """
    n_cols = max(len(r) for r in rows)
    step = cell + pad
    grid = torch.ones(3, pad + step * len(rows), pad + step * n_cols)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            if image is None:
                continue
            x = image.detach().float().cpu().reshape(1, *image.shape[-3:])
            h, w = x.shape[-2:]
            scale = cell / max(h, w)
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
            top = pad + r * step + (cell - nh) // 2
            left = pad + c * step + (cell - nw) // 2
            grid[:, top : top + nh, left : left + nw] = x.clamp(0.0, 1.0)
    return grid
