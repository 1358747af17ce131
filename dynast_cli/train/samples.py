"""Image grids for training samples and evaluation sheets."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


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
