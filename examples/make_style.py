"""Paint the example style images procedurally (no third-party artwork, so no licence question).

    python examples/make_style.py

Thousands of brush strokes follow a swirling flow field; each stroke takes its colour from a
palette picked by a smooth noise field, then a dark rim and a light core give it a painted
relief. Deterministic (fixed seeds). Writes style.jpg and style2.jpg next to this script.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

JPEG_QUALITY = 90


@dataclass(frozen=True)
class Recipe:
    """One painting: size, colours (RGB 0..255), flow and brush parameters."""

    width: int
    height: int
    palette: tuple[tuple[int, int, int], ...]
    swirls: int  # number of vortices in the flow field
    strokes: int
    length: tuple[int, int]  # steps per stroke (min, max)
    thickness: tuple[int, int]  # brush width in pixels (min, max)
    seed: int


RECIPES = {
    # night blues and golds in long swirling strokes
    "style.jpg": Recipe(
        512, 384,
        ((16, 34, 89), (33, 76, 152), (70, 130, 200), (120, 180, 220), (236, 200, 60), (250, 230, 140), (20, 60, 50)),
        swirls=5, strokes=7000, length=(8, 26), thickness=(3, 7), seed=7,
    ),
    # warm reds, oranges and greens in short thick dabs
    "style2.jpg": Recipe(
        512, 384,
        ((160, 30, 25), (220, 90, 30), (245, 170, 60), (250, 225, 160), (60, 110, 60), (30, 60, 80), (120, 40, 90)),
        swirls=3, strokes=5000, length=(3, 9), thickness=(6, 12), seed=11,
    ),
}


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """(h, w) float noise in [0, 1], smooth at the scale of ``cells`` cells across."""
    coarse = rng.random((cells, max(2, round(cells * w / h)))).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    field -= field.min()
    return field / max(float(field.max()), 1e-6)


def flow_angles(rng: np.random.Generator, h: int, w: int, swirls: int) -> np.ndarray:
    """(h, w) stroke direction in radians: vortices around random centres plus a gentle wave."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    vx = np.ones((h, w), np.float32) * 0.3
    vy = 0.3 * np.sin(xx / w * 2 * np.pi * 1.5).astype(np.float32)
    for _ in range(swirls):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        radius = rng.uniform(0.1, 0.3) * w
        spin = rng.choice([-1.0, 1.0])
        dx, dy = xx - cx, yy - cy
        falloff = np.exp(-(dx**2 + dy**2) / (2 * radius**2))
        vx += spin * -dy / radius * falloff * 2
        vy += spin * dx / radius * falloff * 2
    return np.arctan2(vy, vx)


def paint(recipe: Recipe) -> np.ndarray:
    """The painting as an (H, W, 3) uint8 RGB array."""
    rng = np.random.default_rng(recipe.seed)
    h, w = recipe.height, recipe.width
    palette = np.array(recipe.palette, np.float32)
    region = smooth_noise(rng, h, w, cells=5)
    angles = flow_angles(rng, h, w, recipe.swirls)
    base = palette[np.clip((region * len(palette)).astype(int), 0, len(palette) - 1)]
    canvas = cv2.GaussianBlur(base, (0, 0), 12).astype(np.uint8)
    for _ in range(recipe.strokes):
        x, y = rng.uniform(0, w - 1), rng.uniform(0, h - 1)
        index = int(region[int(y), int(x)] * len(palette) + rng.normal(0, 0.7))
        colour = palette[np.clip(index, 0, len(palette) - 1)] + rng.normal(0, 12, 3)
        points = [(x, y)]
        for _ in range(rng.integers(*recipe.length)):
            a = angles[int(np.clip(y, 0, h - 1)), int(np.clip(x, 0, w - 1))]
            x, y = x + 2.5 * np.cos(a), y + 2.5 * np.sin(a)
            points.append((x, y))
        line = np.round(np.array(points)).astype(np.int32).reshape(-1, 1, 2)
        width = int(rng.integers(*recipe.thickness))
        rim = tuple(float(c) for c in np.clip(colour * 0.7, 0, 255))
        core = tuple(float(c) for c in np.clip(colour, 0, 255))
        cv2.polylines(canvas, [line], False, rim, width + 2, cv2.LINE_AA)
        cv2.polylines(canvas, [line], False, core, width, cv2.LINE_AA)
    grain = rng.normal(0, 6, (h, w, 1)).astype(np.float32)
    return np.clip(canvas.astype(np.float32) + grain, 0, 255).astype(np.uint8)


def main() -> None:
    here = Path(__file__).resolve().parent
    for name, recipe in RECIPES.items():
        Image.fromarray(paint(recipe)).save(here / name, quality=JPEG_QUALITY, optimize=True)
        print(f"{name}: {recipe.width}x{recipe.height}")


if __name__ == "__main__":
    main()
