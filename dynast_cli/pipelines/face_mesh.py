"""Face edges drawn from the MediaPipe face mesh (``dynast face --edges mediapipe``).

The 468-landmark mesh gives the outline of each face part; drawn as 1-pixel polylines they make an edge
image (bool ``(H, W)``) that takes the place of the Canny or HED edges in
:func:`dynast_cli.pipelines.face.build_face_input`. As in the official recipe (part boundaries, plus
Canny edges outside the parts), the face pipeline adds the photo's Canny edges outside the face oval
(hair, headwear, clothes): the part outlines alone leave the generator nothing to draw around the face.
Parts, as landmark index chains (each consecutive pair is one of MediaPipe's ``FACEMESH_*`` connections,
plus the two segments that close each eyebrow):

* face oval (closed), both eyebrows (closed outlines), both eyes (closed);
* nose: the bridge and middle line (open) and the outline of the nose tip and wings (closed);
* lips: outer and inner outlines (closed).

Only the geometry lives here (no MediaPipe needed); :func:`mesh_edges` runs the detector
(:func:`dynast_cli.io.mediapipe_landmarks.face_mesh_landmarks`).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import torch

from dynast_cli.errors import InputError
from dynast_cli.io.images import to_uint8

# (landmark chain, closed) per part. "left"/"right" are the person's (MediaPipe's LEFT_* is image right).
FACE_MESH_CONTOURS: Mapping[str, tuple[tuple[tuple[int, ...], bool], ...]] = {
    "face_oval": ((
        (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
         176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109), True),),
    "l_brow": (((276, 283, 282, 295, 285, 336, 296, 334, 293, 300), True),),
    "r_brow": (((46, 53, 52, 65, 55, 107, 66, 105, 63, 70), True),),
    "l_eye": (((263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466), True),),
    "r_eye": (((33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246), True),),
    "nose": (
        ((168, 6, 197, 195, 5, 4, 1, 19, 94, 2), False),
        ((2, 97, 98, 64, 48, 115, 220, 45, 4, 275, 440, 344, 278, 294, 327, 326), True),
    ),
    "lips": (
        ((61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185), True),
        ((78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191), True),
    ),
}
#: Fixed-point bits of the polyline vertices (sub-pixel placement, as cv2.polylines' ``shift``).
_SHIFT = 4


def contour_segments(part: str) -> set[tuple[int, int]]:
    """The undirected landmark pairs ``(low, high)`` drawn for ``part`` (for comparison with MediaPipe's)."""
    pairs = set()
    for chain, closed in FACE_MESH_CONTOURS[part]:
        ends = list(chain) + ([chain[0]] if closed else [])
        pairs |= {(min(a, b), max(a, b)) for a, b in pairwise(ends)}
    return pairs


def draw_face_contours(landmarks: np.ndarray, size: tuple[int, int], thickness: int = 1) -> np.ndarray:
    """bool ``(H, W)`` edges at ``size``: the part outlines of face-mesh ``landmarks`` ``(N >= 468, 2)``
    given as ``(x / W, y / H)`` of the photo (the photo is stretched to ``size``, as for Canny)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 2 or landmarks.shape[0] < 468 or landmarks.shape[1] < 2:
        raise ValueError(f"expected (468, 2) face-mesh landmarks, got {landmarks.shape}")
    h, w = size
    pixels = np.round((landmarks[:, :2] * (w, h) - 0.5) * (1 << _SHIFT)).astype(np.int32)
    canvas = np.zeros((h, w), np.uint8)
    for chains in FACE_MESH_CONTOURS.values():
        for chain, closed in chains:
            cv2.polylines(canvas, [pixels[list(chain)]], closed, 255, thickness, cv2.LINE_8, _SHIFT)
    return canvas > 0


def face_oval_mask(landmarks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """bool ``(H, W)``: inside the face oval (its outline included) of ``landmarks`` (as
    :func:`draw_face_contours`)."""
    h, w = size
    (chain, _), = FACE_MESH_CONTOURS["face_oval"]
    vertices = np.round((np.asarray(landmarks)[list(chain), :2] * (w, h) - 0.5) * (1 << _SHIFT)).astype(np.int32)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [vertices], 1, cv2.LINE_8, _SHIFT)
    cv2.polylines(mask, [vertices], True, 1, 1, cv2.LINE_8, _SHIFT)
    return mask > 0


def mesh_edges(
    photo: torch.Tensor, size: tuple[int, int], path: str | Path | None = None, background: np.ndarray | None = None
) -> np.ndarray:
    """bool ``(H, W)`` edges of a face photo ``(3, h, w)`` in ``[0, 1]`` (``path`` names it in errors):
    MediaPipe face mesh on the photo at its own size, part outlines drawn at ``size``, plus the
    ``background`` edges (bool ``(H, W)``, e.g. Canny) outside the face oval."""
    from dynast_cli.io.mediapipe_landmarks import face_mesh_landmarks

    landmarks = face_mesh_landmarks(to_uint8(photo), path or "photo")
    if landmarks is None:
        raise InputError("no face found by MediaPipe (try --edges canny or hed)", path)
    edges = draw_face_contours(landmarks, size)
    if background is not None:
        edges |= background & ~face_oval_mask(landmarks, size)
    return edges
