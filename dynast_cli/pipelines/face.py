"""Edge-to-face (DynaST, CelebA-HQ edges): edges -> 15-channel input -> generator -> face.

The input follows the official CoCosNet/DynaST ``celebahqedge`` recipe, at the model size:

* channel 0: all edges: the boundaries of every inner face part, plus Canny edges of the photo
  (``skimage.feature.canny`` defaults: sigma 1, thresholds 0.1/0.2) outside the face parts (hair counts
  as outside);
* channels 1-13: per inner part (skin, l_brow, r_brow, l_eye, r_eye, l_ear, r_ear, nose, u_lip, mouth,
  l_lip, eye_g, hair), the L1 distance to that part's boundary / 3, clipped to 255, / 255 (a missing part
  is all 1.0);
* channel 14: the part boundaries alone.

A part boundary marks both pixels of every horizontally or vertically adjacent pair whose labels differ.
Part masks come from CelebAMask-HQ annotations (:func:`face_input_from_parts`). Without part masks
(an edge image, or edges found in a photo with Canny, HED or the MediaPipe face mesh's part outlines
plus Canny outside the face, :mod:`dynast_cli.pipelines.face_mesh`), channel 0 holds those edges,
channels 1-13 are 1.0 and channel 14 is 0, as for a face without annotated parts.

Any aspect ratio (``dynast face``, :func:`fitted_face_input`): each image is fitted into the 256x256
model canvas (:class:`dynast_cli.pipelines.pose.Placement`: long side 256, centred); its edges (and
part masks) are found at that fitted size and padded with "no edge" (so the padding has no edges and
its distance maps are measured to the real boundaries), the exemplar photo is padded by repeating
its border. The output is the edge input's fitted area cropped out of the model output: the edge
image's aspect ratio with its long side at 256 px (e.g. 300x200 gives 256x171), not resized back.
Square inputs (CelebA-HQ) get exactly the official input. Images under
:data:`~dynast_cli.pipelines.pose.MIN_SIDE` pixels, or beyond 8:1, are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from dynast_cli.errors import InputError, UsageError, WeightsError
from dynast_cli.io.images import load_image, read_image_array, read_image_size, to_uint8
from dynast_cli.pipelines.pose import (
    Placement,
    check_frame,
    check_generator_task,
    check_task,
    limb_distance,
    prepare_reference,
)

INNER_PARTS = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "l_ear", "r_ear", "nose", "u_lip", "mouth",
               "l_lip", "eye_g", "hair")
FACE_CHANNELS = 2 + len(INNER_PARTS)  # 15
MODEL_SIZE = (256, 256)
EDGE_SOURCES = ("canny", "hed", "mediapipe", "image")
WEIGHTS_NAME = "dynast_face.safetensors"
HED_THRESHOLD = 0.5


# --- Canny as scikit-image computes it ----------------------------------------------------------------


def _correlate1d(x: np.ndarray, kernel: np.ndarray, axis: int, mode: str) -> np.ndarray:
    """scipy.ndimage.correlate1d for an odd kernel; ``mode``: 'constant' (0) or 'symmetric' (ndimage 'reflect')."""
    r = len(kernel) // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (r, r)
    padded = np.pad(x, pad, mode=mode)
    n = x.shape[axis]
    return sum(k * np.take(padded, np.arange(i, i + n), axis=axis) for i, k in enumerate(kernel))


def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    """scipy.ndimage.gaussian_filter(x, sigma, mode='constant', truncate=4)."""
    radius = int(4.0 * sigma + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * t**2 / sigma**2)
    kernel /= kernel.sum()
    return _correlate1d(_correlate1d(x, kernel, 0, "constant"), kernel, 1, "constant")


def _sobel(x: np.ndarray, axis: int) -> np.ndarray:
    """scipy.ndimage.sobel(x, axis) (mode 'reflect')."""
    derivative = _correlate1d(x, np.array([-1.0, 0.0, 1.0]), axis, "symmetric")
    return _correlate1d(derivative, np.array([1.0, 2.0, 1.0]), 1 - axis, "symmetric")


def _shift(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[y, x] = x[y + dy, x + dx]`` (wrapping; only used away from the border)."""
    return np.roll(x, (-dy, -dx), axis=(0, 1))


# Non-maximum suppression sectors of scikit-image, in its order (later sectors win on ties):
# (gradient signs (i >= 0, j >= 0) or the opposite, |i| >= |j|?, neighbours "+" (c1, c2), "-" (c1, c2)).
_SECTORS = (
    (True, True, ((1, 0), (1, 1)), ((-1, 0), (-1, -1))),
    (True, False, ((0, 1), (1, 1)), ((0, -1), (-1, -1))),
    (False, False, ((0, 1), (-1, 1)), ((0, -1), (1, -1))),
    (False, True, ((-1, 0), (-1, 1)), ((1, 0), (1, -1))),
)


def canny(gray: np.ndarray, sigma: float = 1.0, low: float = 0.1, high: float = 0.2) -> np.ndarray:
    """``skimage.feature.canny`` of a uint8 ``(H, W)`` image with its defaults -> bool ``(H, W)`` edges.

    Gaussian smoothing with zero padding compensated by the smoothed mask, Sobel gradients, bilinear
    non-maximum suppression away from the 1-pixel border, hysteresis with 8-connectivity.
    """
    image = gray.astype(np.float64) / 255.0
    smoothed = _gaussian(image, sigma) / (_gaussian(np.ones_like(image), sigma) + np.finfo(np.float64).eps)
    isobel, jsobel = _sobel(smoothed, 0), _sobel(smoothed, 1)
    magnitude = np.hypot(isobel, jsobel)
    inner = np.zeros(gray.shape, bool)
    inner[1:-1, 1:-1] = True
    inner &= magnitude > 0
    ai, aj = np.abs(isobel), np.abs(jsobel)
    maxima = np.zeros(gray.shape, bool)
    for same_sign, i_major, plus, minus in _SECTORS:
        signs = ((isobel >= 0) & (jsobel >= 0)) | ((isobel <= 0) & (jsobel <= 0)) if same_sign else \
            ((isobel <= 0) & (jsobel >= 0)) | ((isobel >= 0) & (jsobel <= 0))
        pts = inner & signs & ((ai >= aj) if i_major else (ai <= aj))
        w = np.divide(aj, ai, out=np.zeros_like(ai), where=pts) if i_major else \
            np.divide(ai, aj, out=np.zeros_like(ai), where=pts)
        ok = np.ones(gray.shape, bool)
        for (c1, c2) in (plus, minus):
            ok &= _shift(magnitude, *c2) * w + _shift(magnitude, *c1) * (1 - w) <= magnitude
        maxima[pts] = ok[pts]
    low_mask = maxima & (magnitude >= low)
    high_mask = low_mask & (magnitude >= high)
    count, labels = cv2.connectedComponents(low_mask.astype(np.uint8), connectivity=8)
    good = np.zeros(count, bool)
    good[np.unique(labels[high_mask])] = True
    good[0] = False
    return good[labels]


# --- the 15-channel input -----------------------------------------------------------------------------


def part_boundary(mask: np.ndarray) -> np.ndarray:
    """bool ``(H, W)``: both pixels of each horizontal/vertical neighbour pair where ``mask`` changes."""
    edge = np.zeros(mask.shape, bool)
    dx = mask[:, 1:] != mask[:, :-1]
    dy = mask[1:, :] != mask[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    return edge


def build_face_input(background_edges: np.ndarray, parts: Mapping[str, np.ndarray] | None = None) -> torch.Tensor:
    """The official 15-channel input ``(15, H, W)`` float32 in ``[0, 1]`` (see the module docstring).

    ``background_edges``: bool ``(H, W)``; ``parts``: bool ``(H, W)`` masks keyed by :data:`INNER_PARTS`
    names (others are ignored; absent parts get all-1.0 distance maps).
    """
    parts = parts or {}
    outside = np.ones(background_edges.shape, bool)  # where background edges count: not a face part
    boundaries = np.zeros(background_edges.shape, bool)
    distances = []
    for name in INNER_PARTS:
        edge = np.zeros(background_edges.shape, bool)
        if name in parts:
            outside[parts[name]] = name == "hair"
            edge = part_boundary(parts[name])
            boundaries |= edge
        distances.append(limb_distance(edge.astype(np.uint8) * 255).astype(np.float32) / 255.0)
    all_edges = boundaries | (background_edges & outside)
    stacked = [all_edges.astype(np.float32), *distances, boundaries.astype(np.float32)]
    return torch.from_numpy(np.stack(stacked))


def _gray_at(photo: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``(3, h, w)`` in ``[0, 1]`` -> uint8 grey ``(H, W)``: 8-bit Pillow bilinear resize, then 'L', as officially."""
    return np.asarray(Image.fromarray(to_uint8(photo)).resize((size[1], size[0]), Image.BILINEAR).convert("L"))


def face_input_from_parts(
    photo: torch.Tensor, part_masks: Mapping[str, str | Path], size: tuple[int, int] = MODEL_SIZE
) -> torch.Tensor:
    """The official input of a CelebA-HQ photo ``(3, h, w)`` and its CelebAMask-HQ part mask files
    (``{part name: png}``; white = the part), each resized with nearest-neighbour to ``size``."""
    parts = {name: _part_mask(path, size) for name, path in part_masks.items() if name in INNER_PARTS}
    return build_face_input(canny(_gray_at(photo, size)), parts)


def celebamask_parts(image_path: str | Path) -> dict[str, Path]:
    """The CelebAMask-HQ part masks of ``<root>/CelebA-HQ-img/<n>.jpg``:
    ``<root>/CelebAMask-HQ-mask-anno/<n // 2000>/<n:05d>_<part>.png`` (those that exist)."""
    path = Path(image_path)
    if not path.stem.isdigit():
        return {}
    folder = path.parent.parent / "CelebAMask-HQ-mask-anno" / str(int(path.stem) // 2000)
    found = {name: folder / f"{int(path.stem):05d}_{name}.png" for name in INNER_PARTS}
    return {name: p for name, p in found.items() if p.is_file()}


def edges_from_image(path: str | Path, size: tuple[int, int] = MODEL_SIZE) -> np.ndarray:
    """bool ``(H, W)`` edges of an edge drawing: white-on-black or black-on-white (the majority of pixels
    is taken as the background), resized with nearest-neighbour and thresholded at half grey."""
    return _edges_from_drawing(read_image_array(path), path, size)


def _edges_from_drawing(rgb: np.ndarray, path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """:func:`edges_from_image` of the drawing ``rgb`` float ``(h, w, 3)`` read from ``path``."""
    gray = rgb.mean(axis=2)
    edges = gray > 0.5
    if edges.mean() > 0.5:  # black lines on white paper
        edges = ~edges
    if not edges.any():
        raise InputError("the edge image is blank", path)
    resized = Image.fromarray(edges.astype(np.uint8) * 255).resize((size[1], size[0]), Image.NEAREST)
    return np.asarray(resized) > 127


def edges_from_photo(
    photo: torch.Tensor, method: str = "canny", size: tuple[int, int] = MODEL_SIZE, hed: nn.Module | None = None,
    path: str | Path | None = None,
) -> np.ndarray:
    """bool ``(H, W)`` edges of a face photo ``(3, h, w)``: Canny (no weights), HED (``hed``, thresholded)
    or the MediaPipe face mesh's part outlines with Canny outside the face (``path`` names the photo in errors)."""
    if method == "mediapipe":
        from dynast_cli.pipelines.face_mesh import mesh_edges

        return mesh_edges(photo, size, path, background=canny(_gray_at(photo, size)))
    if method == "canny":
        return canny(_gray_at(photo, size))
    if method == "hed":
        if hed is None:
            from dynast_cli.weights.build import load_hed

            hed = load_hed()
        resized = prepare_reference(photo, size)[None] * 0.5 + 0.5
        device = next(hed.parameters()).device
        with torch.inference_mode():
            prob = hed(resized.to(device))[0, 0].cpu().numpy()
        return prob >= HED_THRESHOLD
    raise UsageError(f"unknown --edges '{method}' (use one of {', '.join(EDGE_SOURCES)})")


def face_input(
    source: str | Path, method: str = "canny", size: tuple[int, int] = MODEL_SIZE, hed: nn.Module | None = None
) -> torch.Tensor:
    """The 15-channel input ``(15, H, W)`` for a face photo or an edge image (``method='image'``).

    A CelebA-HQ photo with its CelebAMask-HQ annotations in the official layout gets the exact official
    input (Canny); otherwise the edges alone (see the module docstring).
    """
    if method == "image":
        return build_face_input(edges_from_image(source, size))
    photo = load_image(source)
    parts = celebamask_parts(source)
    if parts and method == "canny":
        return face_input_from_parts(photo, parts, size)
    return build_face_input(edges_from_photo(photo, method, size, hed, path=source))


def fitted_face_input(
    source: str | Path, method: str = "canny", size: tuple[int, int] = MODEL_SIZE, hed: nn.Module | None = None
) -> tuple[torch.Tensor, Placement]:
    """:func:`face_input` with the aspect ratio kept: ``source`` fitted into the ``size`` canvas (see the
    module docstring) -> (the 15-channel input ``(15, H, W)``, its placement). Images under ``MIN_SIDE``
    px or beyond 8:1 raise InputError."""
    if method == "image":
        drawing = read_image_array(source)
        place = Placement.fit(drawing.shape[:2], size)
        check_frame(source, drawing.shape[:2], size)
        edges, parts = _edges_from_drawing(drawing, source, place.fitted), {}
    else:
        photo = load_image(source)
        place = Placement.fit(tuple(photo.shape[-2:]), size)
        check_frame(source, tuple(photo.shape[-2:]), size)
        part_files = celebamask_parts(source) if method == "canny" else {}
        parts = {name: _part_mask(path, place.fitted) for name, path in part_files.items() if name in INNER_PARTS}
        if parts:  # the official CelebA-HQ input: Canny with the annotated parts
            edges = canny(_gray_at(photo, place.fitted))
        else:
            edges = edges_from_photo(photo, method, place.fitted, hed, path=source)

    def pad(mask: np.ndarray) -> np.ndarray:
        return place.pad(torch.from_numpy(mask)[None]).numpy()[0]  # False: no edge, not the part

    return build_face_input(pad(edges), {name: pad(mask) for name, mask in parts.items()}), place


def _part_mask(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """bool ``(H, W)``: a CelebAMask-HQ part mask file (white = the part), nearest-neighbour resized to ``size``."""
    mask = Image.fromarray(to_uint8(load_image(path))).convert("L").resize((size[1], size[0]), Image.NEAREST)
    return np.asarray(mask) == 255


def face_from_edges(
    generator: nn.Module,
    exemplar: torch.Tensor,
    edges_input: torch.Tensor,
    exemplar_input: torch.Tensor,
) -> torch.Tensor:
    """A face with the structure of ``edges_input`` ``(15, H, W)`` and the look of ``exemplar`` ``(3, h, w)``
    in ``[0, 1]`` (``exemplar_input``: its own 15-channel input) -> ``(3, H, W)`` in ``[0, 1]``.

    ``generator``: ``forward(query (B,15,H,W), ref_image (B,3,H,W) in [-1,1], ref_semantics (B,15,H,W))``.
    """
    size = tuple(edges_input.shape[-2:])
    device = next(generator.parameters(), torch.empty(0)).device
    with torch.inference_mode():
        out = generator(
            query=edges_input[None].to(device),
            ref_image=prepare_reference(exemplar, size)[None].to(device),
            ref_semantics=exemplar_input[None].to(device),
        )
    return ((out[0].float() + 1) / 2).clamp(0, 1).cpu()


def load_face_generator(weights: str | Path | None, device: torch.device) -> nn.Module:
    """The edge-to-face generator from ``weights`` or the manifest's ``dynast_face`` entry (the
    project's trained weights; ``$DYNAST_WEIGHTS`` moves the folder), in eval mode."""
    from dynast_cli.weights.registry import default_weights

    path = Path(weights) if weights else default_weights("face")  # manifest entry, sha256-verified
    if path is None:
        raise WeightsError(
            f"no edge-to-face weights (weights/{WEIGHTS_NAME}): DynaST published no CelebA-HQ checkpoint; "
            "train one with `dynast train face`, or pass --weights FILE"
        )
    check_task(path, FACE_CHANNELS)  # a pose model is refused before its tensors are read
    from dynast_cli.weights.build import build_model

    return build_model(path, "dynast", device, context="edge-to-face weights come from `dynast train face`")


def run_face(
    exemplar: str | Path,
    edges: str | Path,
    output: str | Path | None = None,
    *,
    method: str = "canny",
    weights: str | Path | None = None,
    save_edges: str | Path | None = None,
    device: str = "auto",
    overwrite: bool = False,
    generator: nn.Module | None = None,
    max_memory: int | None = None,
    compile: bool = False,
    notify=None,
) -> list[Path]:
    """Draw the face of ``edges`` (a photo whose edges are found with ``method``, or an edge image with
    ``method='image'``) in the look of ``exemplar``; write it (default ``<edges>_as_<exemplar>.png``).

    Any aspect ratio: the output has the ``edges`` image's aspect ratio with its long side at 256 px
    (see the module docstring; ``save_edges`` is cropped alike). Images under ``MIN_SIDE`` px or beyond
    8:1 and pose weights are refused before any output is written.
    ``max_memory`` (bytes) / ``compile``: see :func:`dynast_cli.memory.prepare_generator`."""
    from dynast_cli.io.images import check_output_path, save_image
    from dynast_cli.io.outputs import check_distinct
    from dynast_cli.memory import prepare_generator
    from dynast_cli.runtime import resolve_device

    if method not in EDGE_SOURCES:
        raise UsageError(f"unknown --edges '{method}' (use one of {', '.join(EDGE_SOURCES)})")
    exemplar, edges = Path(exemplar), Path(edges)
    output = check_output_path(output or f"{edges.stem}_as_{exemplar.stem}.png", overwrite)
    if save_edges is not None:
        save_edges = check_output_path(save_edges, overwrite)
    check_distinct([(output, "the face"), *([(save_edges, "--save-edges")] if save_edges is not None else [])],
                   [exemplar, edges])
    photo = load_image(exemplar)
    check_frame(exemplar, tuple(photo.shape[-2:]), MODEL_SIZE)
    edges_hw = read_image_size(edges)  # None: unreadable, reported by fitted_face_input below
    if edges_hw is not None:
        check_frame(edges, edges_hw, MODEL_SIZE)  # before HED is fetched or MediaPipe runs
    hed = None
    if "hed" == method:
        from dynast_cli.weights.build import load_hed

        hed = load_hed(device=resolve_device(device))
    query, place = fitted_face_input(edges, method, hed=hed)
    reference, exemplar_place = fitted_face_input(exemplar, "canny" if method == "image" else method, hed=hed)
    exemplar_canvas = exemplar_place.image(photo, mode="replicate")
    if generator is None:
        generator = load_face_generator(weights, resolve_device(device))
    check_generator_task(generator, FACE_CHANNELS)
    generator = prepare_generator(generator, MODEL_SIZE, max_memory, compile, notify)
    written = []
    if save_edges is not None:
        written.append(save_image(place.crop(query[0]).expand(3, -1, -1), save_edges))
    written.append(save_image(place.crop(face_from_edges(generator, exemplar_canvas, query, reference)), output))
    return written
