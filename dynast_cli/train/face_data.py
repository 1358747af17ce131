"""Edge-to-face training pairs from a folder of face crops (KaoKore: ``<class>--<id>.jpg``).

Each sample is (query, exemplar, target):

* ``query``: the official 15-channel edge-to-face input built from the face's OWN Canny edges
  (:func:`dynast_cli.pipelines.face.edges_from_photo` + :func:`~dynast_cli.pipelines.face.build_face_input`).
  KaoKore has no part masks, so channels 1..14 follow the pipeline's edges-only convention (absent
  parts: all-1.0 distance maps, no part boundaries), exactly what ``dynast face`` feeds the model;
* ``exemplar``: ANOTHER face of the same class (the file-name prefix before ``--``; any other face
  when the folder has no classes or the class has one face) with its own 15-channel input;
* ``target``: the face itself.

Faces are read, resized and edge-detected lazily on first use and cached (uint8 image + bool edges),
so a run starts at once and pays for Canny once per face. Every draw takes a
:class:`torch.Generator`, so batches are reproducible and a resumed run sees the batches it would
have seen. Random horizontal flips (image and edges together) augment both faces.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from dynast_cli.errors import InputError
from dynast_cli.io.images import list_images, load_image
from dynast_cli.pipelines.face import build_face_input, edges_from_photo
from dynast_cli.train.data import spread_subset

CLASS_SEPARATOR = "--"


def face_class(path: Path) -> str:
    """The class of ``<class>--<id>.jpg`` ('' when the name has no class prefix)."""
    return path.stem.split(CLASS_SEPARATOR)[0] if CLASS_SEPARATOR in path.stem else ""


class FaceBatch(NamedTuple):
    """One batch; images in [-1, 1] as the generator expects."""

    query: torch.Tensor  # (B, 15, S, S) the target's edges
    ref_image: torch.Tensor  # (B, 3, S, S) the exemplar
    ref_semantics: torch.Tensor  # (B, 15, S, S) the exemplar's edges
    target: torch.Tensor  # (B, 3, S, S)

    def to(self, device: torch.device) -> "FaceBatch":
        return FaceBatch(*(t.to(device) for t in self))


class FacePairs:
    """(edges, exemplar, face) triples from the images directly inside ``folder``, at ``size`` x ``size``."""

    def __init__(self, folder: str | Path, size: int = 128, max_faces: int | None = None):
        self.folder = Path(folder)
        self.size = size
        self.paths = spread_subset(list_images(self.folder), max_faces)
        if len(self.paths) < 2:
            raise InputError("needs at least two face images", self.folder)
        by_class: dict[str, list[int]] = defaultdict(list)
        for i, path in enumerate(self.paths):
            by_class[face_class(path)].append(i)
        self.classes = dict(by_class)
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def summary(self) -> list[dict[str, object]]:
        """What the pairs come from (recorded in the weights manifest)."""
        return [{"folder": self.folder.name, "images": len(self.paths),
                 "classes": {name: len(idx) for name, idx in sorted(self.classes.items())},
                 "pairs": "own Canny edges -> the face; exemplar: another face of the same class"}]

    def face(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Face ``index`` as (uint8 image (3, S, S), bool edges (S, S)), cached."""
        if index not in self._cache:
            photo = load_image(self.paths[index])
            edges = torch.from_numpy(edges_from_photo(photo, "canny", (self.size, self.size)))
            image = F.interpolate(photo[None], size=(self.size, self.size), mode="bilinear",
                                  align_corners=False, antialias=True)[0]
            self._cache[index] = ((image.clamp(0, 1) * 255).round().to(torch.uint8), edges)
        return self._cache[index]

    def sample(self, index: int, flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(image (3, S, S) in [-1, 1], 15-channel input (15, S, S)) of face ``index``, optionally mirrored."""
        image, edges = self.face(index)
        if flip:
            image, edges = image.flip(-1), edges.flip(-1)
        return image.float() / 127.5 - 1.0, build_face_input(np.ascontiguousarray(edges.numpy()))

    def exemplar_for(self, index: int, generator: torch.Generator) -> int:
        """A random other face of the same class (of any class when the class has no other face)."""
        same = self.classes[face_class(self.paths[index])]
        pool = same if len(same) > 1 else range(len(self.paths))
        while True:
            choice = pool[int(torch.randint(0, len(pool), (1,), generator=generator))]
            if choice != index:
                return choice

    def batch(self, size: int, generator: torch.Generator, part: slice = slice(None)) -> FaceBatch:
        """``size`` random (target, exemplar) pairs; only the ``part`` of them is loaded (a training
        rank's share, drawn from the whole batch's random stream)."""
        picks = []
        for _ in range(size):
            index = int(torch.randint(0, len(self.paths), (1,), generator=generator))
            other = self.exemplar_for(index, generator)
            flips = torch.rand((2,), generator=generator) < 0.5
            picks.append((index, other, bool(flips[0]), bool(flips[1])))
        return stack_pairs([(self.sample(i, fi), self.sample(j, fj)) for i, j, fi, fj in picks[part]])

    def fixed_batch(self, count: int) -> FaceBatch:
        """Deterministic pairs for sample grids: evenly spread faces, each with a fixed (seeded) exemplar."""
        generator = torch.Generator().manual_seed(0)
        picks = np.linspace(0, len(self.paths) - 1, count).round().astype(int)
        pairs = [(int(i), self.exemplar_for(int(i), generator)) for i in picks]
        return stack_pairs([(self.sample(i, False), self.sample(j, False)) for i, j in pairs])


Sample = tuple[torch.Tensor, torch.Tensor]  # (image (3, S, S) in [-1, 1], input (C, S, S))


def stack_pairs(items: list[tuple[Sample, Sample]]) -> FaceBatch:
    """[((target image, target input), (exemplar image, exemplar input)), ...] -> a :class:`FaceBatch`."""
    return FaceBatch(
        query=torch.stack([target[1] for target, _ in items]),
        ref_image=torch.stack([ref[0] for _, ref in items]),
        ref_semantics=torch.stack([ref[1] for _, ref in items]),
        target=torch.stack([target[0] for target, _ in items]),
    )
