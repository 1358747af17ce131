"""Edge-to-face grid for the README: KaoKore faces redrawn from their own edges in another face's look.

    python docs/make_face_grid.py [--faces ../shared/data/kaokore] [--weights weights/dynast_face.safetensors]
                                  [--size N] [--out docs/images/face_grid.png]

Rows: a few KaoKore faces of different classes (fixed names); columns: the face's Canny edges (channel 0
of the 15-channel input), the exemplar (another face of the same class), the generator's output.
``--size`` defaults to the resolution the weights were trained at (their config's ``crop_size``).
KaoKore is CC BY-SA 4.0 (ROIS-DS CODH): see docs/images/ATTRIBUTION.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dynast_cli.io.images import load_image, save_image
from dynast_cli.pipelines.face import face_from_edges, face_input, load_face_generator
from dynast_cli.ops import image_grid

ROOT = Path(__file__).resolve().parents[1]
#: (face, exemplar) pairs: same class, different faces.
PAIRS = (
    ("female-noble--00000095.jpg", "female-noble--00000106.jpg"),
    ("male-noble--00000000.jpg", "male-noble--00000002.jpg"),
    ("male-warrior--00000035.jpg", "male-warrior--00000044.jpg"),
    ("male-commoner--00000043.jpg", "male-commoner--00000265.jpg"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "data" / "kaokore")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--size", type=int, default=0, help="model input size (0: the weights' crop size)")
    parser.add_argument("--cell", type=int, default=160)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "face_grid.png")
    args = parser.parse_args()

    generator = load_face_generator(args.weights, torch.device("cpu"))
    side = args.size or generator.config.crop_size
    rows = []
    for face, exemplar in PAIRS:
        query = face_input(args.faces / face, size=(side, side))
        reference = face_input(args.faces / exemplar, size=(side, side))
        photo = load_image(args.faces / exemplar)
        output = face_from_edges(generator, photo, query, reference)
        rows.append([1 - query[0].expand(3, -1, -1), photo, output])  # edges drawn black on white
    print(save_image(image_grid(rows, cell=args.cell), args.out))


if __name__ == "__main__":
    main()
