"""Training data: random square crops from image folders, drawn with an explicit generator.

Images are read once into memory as uint8, downscaled so their short side is at most
``2 * size`` (a crop never needs more), which keeps a few hundred photos in ~100-300 MB.
Every draw takes a :class:`torch.Generator`, so a training run is reproducible and a resumed run
continues with exactly the batches it would have seen (the loop checkpoints the generator).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dynast_cli.errors import InputError
from dynast_cli.io.images import list_images, read_image_array


def spread_subset(paths: Sequence[Path], limit: int | None) -> list[Path]:
    """At most ``limit`` of ``paths``, evenly spread over the (sorted) list; all when ``limit`` is None."""
    paths = list(paths)
    if limit is None or len(paths) <= limit:
        return paths
    idx = np.linspace(0, len(paths) - 1, limit).round().astype(int)
    return [paths[i] for i in idx]


def _load_uint8(path: Path, max_short: int) -> torch.Tensor:
    """Read ``path`` as a (3, H, W) uint8 tensor whose short side is at most ``max_short``."""
    arr = (read_image_array(path) * 255.0).round().astype(np.uint8)
    h, w = arr.shape[:2]
    scale = max_short / min(h, w)
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        arr = np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.LANCZOS))
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def _short_size(h: int, w: int, short: int) -> tuple[int, int]:
    """``(H, W)`` resized so that the short side is ``short``."""
    scale = short / min(h, w)
    return max(short, round(h * scale)), max(short, round(w * scale))


def _resize_short(x: torch.Tensor, short: int) -> torch.Tensor:
    """Resize (1, 3, H, W) so that its short side is ``short`` (antialiased bilinear)."""
    size = _short_size(*x.shape[-2:], short)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


@dataclass
class FolderSummary:
    """What a crop source was built from (recorded in the weights manifest)."""

    folder: str
    count: int


class RandomCrops:
    """Random ``size`` x ``size`` crops (random scale, horizontal flips) from image folders.

    ``crops(batch, generator) -> (batch, 3, size, size)`` float32 in [0, 1]. The crop side is drawn
    uniformly between ``size`` and the image's short side (so zoomed-in and zoomed-out views both
    appear), then resized to ``size``; images smaller than ``size`` are upscaled first.
    """

    def __init__(self, folders: Sequence[str | Path], size: int, max_per_folder: int | None = None):
        self.size = size
        self.images: list[torch.Tensor] = []
        self.summary: list[FolderSummary] = []
        for folder in folders:
            paths = spread_subset(list_images(folder), max_per_folder)
            if not paths:
                raise InputError("no images in folder", folder)
            self.images += [_load_uint8(p, 2 * size) for p in paths]
            self.summary.append(FolderSummary(str(folder), len(paths)))

    def __len__(self) -> int:
        return len(self.images)

    def _crop_box(self, image: torch.Tensor, generator: torch.Generator) -> tuple[int, int, int, bool]:
        """Draw one crop of ``image``: (side, top, left, flip) in the (possibly upscaled) image."""
        h, w = image.shape[-2:]
        if min(h, w) < self.size:
            h, w = _short_size(h, w, self.size)
        side = int(torch.randint(self.size, min(h, w) + 1, (1,), generator=generator))
        top = int(torch.randint(0, h - side + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - side + 1, (1,), generator=generator))
        flip = bool(torch.rand((1,), generator=generator) < 0.5)
        return side, top, left, flip

    def _cut(self, image: torch.Tensor, box: tuple[int, int, int, bool]) -> torch.Tensor:
        """The (3, size, size) crop ``box`` of ``image``."""
        side, top, left, flip = box
        x = image.float().div_(255.0).unsqueeze(0)
        if min(x.shape[-2:]) < self.size:
            x = _resize_short(x, self.size)
        x = x[..., top : top + side, left : left + side]
        if side != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=True)
        if flip:
            x = x.flip(-1)
        return x[0].clamp_(0.0, 1.0)

    def crops(self, batch: int, generator: torch.Generator, part: slice = slice(None)) -> torch.Tensor:
        """``batch`` random crops from randomly chosen images: (batch, 3, size, size).

        ``part``: only these items of the batch are cut (a training rank's share, see
        :mod:`dynast_cli.train.ddp`); the random draws are those of the whole batch, so the items
        do not depend on how the batch is split."""
        idx = torch.randint(0, len(self.images), (batch,), generator=generator).tolist()
        boxes = [self._crop_box(self.images[i], generator) for i in idx]
        return torch.stack([self._cut(self.images[i], box) for i, box in list(zip(idx, boxes))[part]])

    def center_crops(self, count: int) -> torch.Tensor:
        """Fixed, evenly spread centre crops (for sample grids): (count, 3, size, size)."""
        out = []
        for i in np.linspace(0, len(self.images) - 1, count).round().astype(int):
            x = _resize_short(self.images[i].float().div(255.0).unsqueeze(0), self.size)
            h, w = x.shape[-2:]
            top, left = (h - self.size) // 2, (w - self.size) // 2
            out.append(x[0, :, top : top + self.size, left : left + self.size].clamp(0.0, 1.0))
        return torch.stack(out)
