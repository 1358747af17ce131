"""Edge sources compared for the README: Canny, HED and MediaPipe face-mesh edges of the same faces, and the
face the generator draws from each (what `dynast face --edges canny|hed|mediapipe` gives).

    python docs/make_face_edges.py [--faces ../shared/data/kaokore] [--weights weights/dynast_face.safetensors]
                                   [--size N] [--out docs/images/face_edges.png]

Needs the MediaPipe extra (``pip install -e ".[mediapipe]"``) and the HED weights (`dynast fetch hed`).
Rows: three KaoKore faces in which MediaPipe finds a face (it misses more than half of these illustrated
faces); columns: the face, the exemplar (another face of the same class), the Canny, HED and MediaPipe
edges (channel 0 of the 15-channel input, black on white), then the generator's output for each.
``--size`` defaults to the resolution the weights were trained at (their config's ``crop_size``).
KaoKore is CC BY-SA 4.0 (ROIS-DS CODH): see docs/images/ATTRIBUTION.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dynast_cli.io.images import load_image, save_image
from dynast_cli.weights.build import load_hed
from dynast_cli.pipelines.face import face_from_edges, face_input, load_face_generator
from dynast_cli.ops import image_grid

ROOT = Path(__file__).resolve().parents[1]
#: (face, exemplar) pairs: same class, different faces, both found by MediaPipe.
PAIRS = (
    ("female-noble--00000095.jpg", "female-noble--00000101.jpg"),
    ("male-noble--00000000.jpg", "male-noble--00000002.jpg"),
    ("male-warrior--00000046.jpg", "male-warrior--00000044.jpg"),
)
METHODS = ("canny", "hed", "mediapipe")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "data" / "kaokore")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--size", type=int, default=0, help="model input size (0: the weights' crop size)")
    parser.add_argument("--cell", type=int, default=128)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "face_edges.png")
    args = parser.parse_args()

    torch.set_num_threads(1)
    generator = load_face_generator(args.weights, torch.device("cpu"))
    hed = load_hed(device=torch.device("cpu"))
    side = args.size or generator.config.crop_size
    rows = []
    for face, exemplar in PAIRS:
        photo = load_image(args.faces / exemplar)
        edges, outputs = [], []
        for method in METHODS:
            query = face_input(args.faces / face, method, size=(side, side), hed=hed)
            reference = face_input(args.faces / exemplar, method, size=(side, side), hed=hed)
            edges.append(1 - query[0].expand(3, -1, -1))  # edges drawn black on white
            outputs.append(face_from_edges(generator, photo, query, reference))
        rows.append([load_image(args.faces / face), photo, *edges, *outputs])
    print(save_image(image_grid(rows, cell=args.cell), args.out))


if __name__ == "__main__":
    main()
