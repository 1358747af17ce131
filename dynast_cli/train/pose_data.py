"""Pose-transfer training pairs in the official DeepFashion layout (CoCosNet / DynaST).

A pair list holds ``target,reference[,...]`` image paths per line, relative to an image root (the
official lists use Windows separators and start with ``img\\``). Each image's OpenPose-18 keypoints
are ``<poses>/<path without the leading img/>`` with ``_candidate.txt`` (+ ``_subset.txt``) or
``.json`` in place of the image suffix. Images and keypoints go through the inference pipeline's
own steps (:mod:`dynast_cli.pipelines.pose`: square frame, white padding, 8-bit bicubic resize,
20-channel pose map), so training sees what ``dynast pose`` feeds the model.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import torch

from dynast_cli.errors import InputError
from dynast_cli.io.images import load_image
from dynast_cli.io.keypoints import load_keypoints
from dynast_cli.pipelines.pose import pad_to_square, prepare_reference, render_pose_map, square_frame
from dynast_cli.train.face_data import FaceBatch, stack_pairs

KEYPOINT_SUFFIXES = ("_candidate.txt", ".json")


def read_pair_list(path: str | Path) -> list[list[str]]:
    """Lines of ``a,b[,...]`` (at least two paths; blank lines skipped), separators normalised to ``/``."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such pair list", path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError("not a text file (a pair list: lines of 'target,reference')", path) from None
    groups = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        items = [item.strip().replace("\\", "/") for item in line.split(",") if item.strip()]
        if len(items) < 2:
            raise InputError(f"line {number} needs 'target,reference'", path)
        groups.append(items)
    if not groups:
        raise InputError("the pair list is empty", path)
    return groups


def keypoint_file(poses: Path, image: str) -> Path:
    """The keypoint file of ``image`` (a pair-list path) under ``poses``; InputError when none exists."""
    rel = PurePosixPath(image)
    if rel.parts and rel.parts[0] == "img":
        rel = PurePosixPath(*rel.parts[1:])
    stem = poses / rel.parent / rel.stem
    for suffix in KEYPOINT_SUFFIXES:
        candidate = stem.with_name(stem.name + suffix)
        if candidate.is_file():
            return candidate
    raise InputError(f"no keypoints ({' or '.join(KEYPOINT_SUFFIXES)}) for {image}", poses)


class PosePairs:
    """(pose map, reference, target) triples: the first image of a line is the target, a random later
    one its reference. Images are prepared once and cached."""

    def __init__(self, pairs: str | Path, images: str | Path, poses: str | Path, size: int = 256):
        self.pairs_file = Path(pairs)
        self.images, self.poses = Path(images), Path(poses)
        self.size = size
        self.groups = read_pair_list(self.pairs_file)
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def summary(self) -> list[dict[str, object]]:
        """What the pairs come from (recorded in the weights manifest)."""
        return [{"pairs": self.pairs_file.name, "lines": len(self.groups), "images": self.images.name}]

    def person(self, image: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(RGB (3, S, S) in [-1, 1], pose map (20, S, S)) of a pair-list image path, cached."""
        if image not in self._cache:
            photo = load_image(self.images / image)
            kps = load_keypoints(keypoint_file(self.poses, image), default_frame_size=tuple(photo.shape[-2:]))
            square, (top, left) = square_frame(kps)
            size = (self.size, self.size)
            rgb = prepare_reference(pad_to_square(photo, top, left), size)
            self._cache[image] = (rgb, render_pose_map(square, size))
        return self._cache[image]

    def _batch(self, picks: list[tuple[str, str]]) -> FaceBatch:
        return stack_pairs([(self.person(target), self.person(ref)) for target, ref in picks])

    def batch(self, size: int, generator: torch.Generator, part: slice = slice(None)) -> FaceBatch:
        """``size`` random (target, reference) pairs; only the ``part`` of them is loaded (a training
        rank's share, drawn from the whole batch's random stream)."""
        picks = []
        for _ in range(size):
            group = self.groups[int(torch.randint(0, len(self.groups), (1,), generator=generator))]
            ref = group[1 + int(torch.randint(0, len(group) - 1, (1,), generator=generator))]
            picks.append((group[0], ref))
        return self._batch(picks[part])

    def fixed_batch(self, count: int) -> FaceBatch:
        """The first ``count`` lines' (target, first reference) pairs, cycling when there are fewer."""
        return self._batch([(self.groups[i % len(self.groups)][0], self.groups[i % len(self.groups)][1])
                            for i in range(count)])
