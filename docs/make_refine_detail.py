"""docs/images/style_refine_detail.jpg: 1:1 crops showing what ``--refine`` adds to the default.

    python docs/make_refine_detail.py [--out docs/images/style_refine_detail.jpg]

For each bundled content with the first bundled style, at 512 px: ``adain``, ``dynast --refine 0`` (the
feed-forward matching alone), ``dynast`` (the default: 10 refinement steps) and ``dynast --refine 20``,
each cropped to the same 224 px square at full resolution (a grid thumbnail hides the texture).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dynast_cli.io.images import load_image, save_image
from dynast_cli.ops import fit_size, resize
from dynast_cli.pipelines.style import prepare_styles, stylize
from dynast_cli.styles import build_method
from dynast_cli.styles.refine import with_refinement
from dynast_cli.ops import image_grid

ROOT = Path(__file__).resolve().parents[1]
#: (content, top-left corner (y, x) of the crop at 512 px)
CROPS = (("content.jpg", (40, 60)), ("content2.jpg", (0, 120)))
COLUMNS = (("adain", 0), ("dynast", 0), ("dynast", 10), ("dynast", 20))
SIDE = 224


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/images/style_refine_detail.jpg")
    args = parser.parse_args()
    torch.set_num_threads(2)
    device = torch.device("cpu")
    style = load_image(ROOT / "examples/style.jpg")
    rows = []
    for name, (y, x) in CROPS:
        image = load_image(ROOT / "examples" / name)
        content = resize(image[None], fit_size(*image.shape[-2:], max_size=512))
        row = [content[0, :, y:y + SIDE, x:x + SIDE]]
        for method, steps in COLUMNS:
            styler = with_refinement(build_method(method, device=device), steps, device)
            states = prepare_styles(styler, [style], 512, device)
            out = stylize(styler, content, states)
            row.append(out[0, :, y:y + SIDE, x:x + SIDE])
        rows.append(row)
    save_image(image_grid(rows, cell=SIDE), args.out)
    print(f"wrote {args.out} (columns: content, adain, dynast --refine 0, dynast, dynast --refine 20)")


if __name__ == "__main__":
    main()
