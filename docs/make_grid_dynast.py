"""Side-by-side grid: content, style, AdaAttN*, DynaST matching (both parameter-free, universal decoder).

    python docs/make_grid_dynast.py [--decoder weights/decoder_vgg16.safetensors] [--out docs/images/dynast_vs_adaattn.png]

Rows: every (content, style) pair of the bundled examples (examples/content*.jpg x examples/style*.jpg).
Each tile is ``--tile`` pixels on its long side; contents are stylised at ``--size`` and shrunk to the tile.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from dynast_cli.io.images import load_image, save_image
from dynast_cli.ops import fit_size, resize
from dynast_cli.pipelines.style import stylize
from dynast_cli.styles import build_method

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
METHODS = ("adaattn", "dynast")


def tile(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) -> (3, size, size): shrunk to ``size`` on the long side, centred on white."""
    image = resize(image[None], fit_size(*image.shape[-2:], size=size))[0]
    h, w = image.shape[-2:]
    top, left = (size - h) // 2, (size - w) // 2
    return F.pad(image, (left, size - w - left, top, size - h - top), value=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoder", default=None, help="universal decoder safetensors (default: the installed one)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "dynast_vs_adaattn.png"))
    parser.add_argument("--size", type=int, default=512, help="long side the contents are stylised at")
    parser.add_argument("--tile", type=int, default=224)
    args = parser.parse_args()

    methods = {name: build_method(name, weights=args.decoder) for name in METHODS}
    contents = sorted(EXAMPLES.glob("content*.jpg"))
    styles = [load_image(p) for p in sorted(EXAMPLES.glob("style*.jpg"))]
    rows = []
    with torch.inference_mode():
        states = {name: [m.prepare_style(resize(s[None], fit_size(*s.shape[-2:], max_size=512))) for s in styles]
                  for name, m in methods.items()}
        for path in contents:
            content = load_image(path)
            content = resize(content[None], fit_size(*content.shape[-2:], size=args.size))[0]
            for j, style in enumerate(styles):
                outs = [stylize(m, content, [states[name][j]]) for name, m in methods.items()]
                rows.append(torch.cat([tile(x, args.tile) for x in (content, style, *outs)], dim=2))
    save_image(torch.cat(rows, dim=1), Path(args.out))
    print(f"wrote {args.out}: rows {[p.name for p in contents]} x {len(styles)} styles; columns content, style, {', '.join(METHODS)}")


if __name__ == "__main__":
    main()
