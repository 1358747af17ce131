"""Pose transfer (DynaST, DeepFashion): keypoints -> 20-channel pose maps -> generator -> image.

The pose map is the official DeepFashion input of CoCosNet/DynaST, reproduced step for step:

1. on a black canvas of the keypoints' frame size, each detected point is a filled circle of radius 4
   in its colour; then each of the first 17 limbs of the limb sequence whose two ends are detected is
   an ellipse (half-length = half the limb's length, half-width 4) blended in with weights 0.4 canvas /
   0.6 painted canvas. OpenCV takes the colour triples as BGR; the canvas is then read as RGB.
2. channels 0-2: that canvas resized to the output size with nearest-neighbour, in ``[0, 1]``;
3. channels 3-19: per limb, the L1 distance (3x3 mask) to the limb's ellipse, divided by 3, clipped to
   255, truncated to uint8, resized bilinearly (Pillow) and divided by 255 (a missing limb is all 1.0).

The reference image is resized bicubically (Pillow) to the model size and normalised to ``[-1, 1]``.

Any aspect ratio (:class:`Placement`): each frame (reference and target alike) is fitted into the
256x256 model canvas, its long side resized to 256 and the short side centred: the image is resized
to that fitted size and padded with white (the DeepFashion background; the official 256x256 frames
hold 176-pixel-wide people centred on white), the keypoints are moved by the same scale and offset
(:meth:`Placement.keypoints`) and the pose map is drawn on the canvas itself, so limbs and circles
keep their official thickness at the model scale whatever the photo's resolution (for a 256x256
frame, or 256 x 176 padded by 40, this is exactly the official map). The output is the target
frame's fitted area cropped out of the model output: the target's aspect ratio with its long side
at 256 px (e.g. a 300x200 target gives 256x171); it is not resized back to the target's own size.
Frames whose short side would fall under :data:`MIN_SIDE` pixels on the canvas (aspect ratios beyond
8:1) and images under :data:`MIN_SIDE` pixels are refused (:func:`check_frame`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from itertools import compress
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from dynast_cli.errors import DynastError, InputError, OutputError, WeightsError
from dynast_cli.io.atomic import atomic_output
from dynast_cli.io.images import (
    IMAGE_SUFFIXES,
    check_image_size,
    check_output_path,
    load_image,
    natural_key,
    save_image,
    to_uint8,
)
from dynast_cli.io.keypoints import NUM_KEYPOINTS, Keypoints, load_keypoints, mirror_folder
from dynast_cli.io.outputs import check_distinct, check_output
from dynast_cli.memory import prepare_generator
from dynast_cli.pipelines.batch import BatchReport, batch_error
from dynast_cli.runtime import resolve_device

# Limbs as 1-based point pairs, in the official order; only the first 17 are drawn.
LIMB_SEQ = ((2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12),
            (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18))
# Official colour triples, one per point (circles) and per limb; OpenCV draws them as BGR.
COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
          (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
          (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
STICK_WIDTH = 4
JOINT_RADIUS = 4
POSE_CHANNELS = 3 + len(LIMB_SEQ)  # 20
MODEL_SIZE = (256, 256)
#: Smallest image side, and smallest side of a frame fitted into the model canvas (pixels): 4 of the
#: generator's 8-pixel attention cells (its coarsest scale is 1/8); on the 256-pixel canvas this allows
#: aspect ratios up to 8:1. Smaller inputs are refused rather than turned into a few-pixel output.
MIN_SIDE = 32
WEIGHTS_NAME = "dynast_deepfashion.safetensors"
OFFICIAL_CHECKPOINT_URL = "https://drive.google.com/file/d/1UJ9xsQBBWZEXOz-jizerR4Qjo7n1kYmy/view"


def draw_skeleton(kps: Keypoints) -> tuple[np.ndarray, np.ndarray]:
    """The official drawing at the keypoints' frame size.

    Returns the skeleton uint8 ``(h, w, 3)`` RGB and the limb masks uint8 ``(17, h, w)`` (255 inside the
    limb's ellipse; all 0 for a limb with a missing end).
    """
    h, w = kps.frame_size
    canvas = np.zeros((h, w, 3), np.uint8)  # BGR, as OpenCV sees it
    for k in range(NUM_KEYPOINTS):
        if kps.present[k]:
            x, y = kps.points[k]
            cv2.circle(canvas, (int(x), int(y)), JOINT_RADIUS, COLORS[k], thickness=-1)
    limbs = np.zeros((len(LIMB_SEQ), h, w), np.uint8)
    for i, (a, b) in enumerate(LIMB_SEQ):
        if not (kps.present[a - 1] and kps.present[b - 1]):
            continue
        polygon = _limb_polygon(kps.points[a - 1], kps.points[b - 1])
        painted = canvas.copy()
        cv2.fillConvexPoly(painted, polygon, COLORS[i])
        canvas = cv2.addWeighted(canvas, 0.4, painted, 0.6, 0)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(mask, polygon, 255)
        limbs[i] = mask
    return np.ascontiguousarray(canvas[:, :, ::-1]), limbs


def _limb_polygon(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The official limb ellipse between two ``(x, y)`` points as an OpenCV polygon (1-degree steps)."""
    (x0, y0), (x1, y1) = start, end
    length = math.hypot(x0 - x1, y0 - y1)
    angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
    center = (int((x0 + x1) / 2), int((y0 + y1) / 2))
    return cv2.ellipse2Poly(center, (int(length / 2), STICK_WIDTH), int(angle), 0, 360, 1)


def limb_distance(mask: np.ndarray) -> np.ndarray:
    """uint8 ``(h, w)``: L1 distance to the mask's pixels / 3, clipped to 255 (255 everywhere if empty)."""
    dist = cv2.distanceTransform(255 - mask, cv2.DIST_L1, 3)
    return np.clip(dist / 3, 0, 255).astype(np.uint8)


def resize_channel(channel: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """uint8 ``(h, w)`` or ``(h, w, 3)`` -> float32 at ``size`` ``(H, W)`` in ``[0, 1]``, with Pillow."""
    resized = Image.fromarray(channel).resize((size[1], size[0]), resample=resample)
    return np.asarray(resized, dtype=np.float32) / 255.0


def render_pose_map(kps: Keypoints, size: tuple[int, int] = MODEL_SIZE) -> torch.Tensor:
    """The official 20-channel pose map ``(20, H, W)`` float32 in ``[0, 1]`` at ``size`` ``(H, W)``.

    Channels 0-2: RGB skeleton; 3-19: limb distance maps (see the module docstring).
    """
    skeleton, limbs = draw_skeleton(kps)
    channels = [resize_channel(skeleton, size, Image.NEAREST).transpose(2, 0, 1)]
    channels += [resize_channel(limb_distance(mask), size, Image.BILINEAR)[None] for mask in limbs]
    return torch.from_numpy(np.concatenate(channels))


def save_pose_png(pose_map: torch.Tensor, path: str | Path) -> Path:
    """Write the skeleton channels of a ``(20, H, W)`` pose map as an RGB image (atomically)."""
    return save_image(pose_map[:3], path)


def square_frame(kps: Keypoints) -> tuple[Keypoints, tuple[int, int]]:
    """Centre the keypoints' frame in a square -> (moved keypoints, ``(top, left)`` padding).

    (The training data's step, drawn at the frame's resolution; inference uses :class:`Placement`.)"""
    h, w = kps.frame_size
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    return kps.shifted(left, top, (side, side)), (top, left)


def pad_to_square(image: torch.Tensor, top: int, left: int) -> torch.Tensor:
    """Pad ``(3, h, w)`` with white to a square, with ``top``/``left`` rows/columns before it."""
    h, w = image.shape[-2:]
    side = max(h, w)
    return nn.functional.pad(image, (left, side - w - left, top, side - h - top), value=1.0)


def prepare_reference(image: torch.Tensor, size: tuple[int, int] = MODEL_SIZE) -> torch.Tensor:
    """``(3, h, w)`` in ``[0, 1]`` -> ``(3, H, W)`` in ``[-1, 1]``: 8-bit Pillow bicubic resize, as officially."""
    return resize_bicubic(image, size) * 2 - 1


def resize_bicubic(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(3, h, w)`` in ``[0, 1]`` -> ``(3, H, W)`` in ``[0, 1]``: 8-bit Pillow bicubic resize (same size: a copy)."""
    resized = Image.fromarray(to_uint8(image)).resize((size[1], size[0]), resample=Image.BICUBIC)
    return torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)


@dataclass(frozen=True)
class Placement:
    """Where a frame of ``frame`` ``(h, w)`` lands in a model canvas of ``canvas`` ``(H, W)``: resized to
    ``fitted`` ``(fh, fw)`` (aspect ratio kept, long side filling the canvas), ``offset`` ``(top, left)``."""

    frame: tuple[int, int]
    canvas: tuple[int, int]
    fitted: tuple[int, int]
    offset: tuple[int, int]

    @classmethod
    def fit(cls, frame: tuple[int, int], canvas: tuple[int, int] = MODEL_SIZE) -> "Placement":
        """The largest aspect-preserving fit of ``frame`` in ``canvas``, centred (extra pixel after)."""
        (h, w), (ch, cw) = frame, canvas
        scale = min(ch / h, cw / w)
        fh, fw = min(ch, max(1, round(h * scale))), min(cw, max(1, round(w * scale)))
        return cls((int(h), int(w)), (ch, cw), (fh, fw), ((ch - fh) // 2, (cw - fw) // 2))

    def keypoints(self, kps: Keypoints) -> Keypoints:
        """``kps`` (in this frame's pixels) in canvas pixels: scaled as the image is resized and moved by the
        offset, ``x' = x * fw / w + left`` (the drawing's convention: pixel ``i`` spans ``[i, i + 1)``, which
        the resize maps onto ``[i * fw / w, (i + 1) * fw / w)``); missing points stay missing."""
        (h, w), (fh, fw), (top, left) = self.frame, self.fitted, self.offset
        points = kps.points.copy()
        present = kps.present
        points[present] = points[present] * (fw / w, fh / h) + (left, top)
        return Keypoints(points, self.canvas)

    def pad(self, fitted: torch.Tensor, value: float = 0.0, mode: str = "constant") -> torch.Tensor:
        """``(C, fh, fw)`` -> ``(C, H, W)``: the fitted content at the offset, padded with ``value``
        (``mode`` 'constant') or by repeating the border (``mode`` 'replicate')."""
        (ch, cw), (fh, fw), (top, left) = self.canvas, self.fitted, self.offset
        if tuple(fitted.shape[-2:]) != (fh, fw):
            raise ValueError(f"expected a {fh}x{fw} fitted map, got {tuple(fitted.shape[-2:])}")
        pads = (left, cw - fw - left, top, ch - fh - top)
        if mode == "constant":
            return nn.functional.pad(fitted, pads, value=value)
        return nn.functional.pad(fitted[None], pads, mode=mode)[0]

    def image(self, image: torch.Tensor, value: float = 1.0, mode: str = "constant") -> torch.Tensor:
        """An image ``(3, h, w)`` in ``[0, 1]`` (any size: it is resized to the fitted size, 8-bit Pillow
        bicubic) on the canvas ``(3, H, W)`` in ``[0, 1]``, padded as :meth:`pad`."""
        return self.pad(resize_bicubic(image, self.fitted), value, mode)

    def crop(self, canvas: torch.Tensor) -> torch.Tensor:
        """``(..., H, W)`` -> the frame's fitted area ``(..., fh, fw)``."""
        (fh, fw), (top, left) = self.fitted, self.offset
        return canvas[..., top:top + fh, left:left + fw]


def check_frame(path: str | Path, frame: tuple[int, int], canvas: tuple[int, int] = MODEL_SIZE,
                keypoints: bool = False) -> None:
    """Refuse an image (or, with ``keypoints``, a keypoint file's frame) under :data:`MIN_SIDE` pixels, or
    one whose short side fitted into ``canvas`` would be (:class:`InputError` naming ``path``)."""
    fitted = Placement.fit(frame, canvas).fitted
    check_image_size(
        path, frame, MIN_SIDE, fitted, f"fitting it into the model's {canvas[1]}x{canvas[0]} input",
        f" (an aspect ratio of at most {max(canvas) // MIN_SIDE}:1)" if min(frame) >= MIN_SIDE else "",
        frame=keypoints,
    )


class PoseTransfer:
    """One reference (image + keypoints) rendered once, posed as many times as asked.

    ``generator``: ``forward(query (B,20,H,W), ref_image (B,3,H,W) in [-1,1], ref_semantics (B,20,H,W))
    -> (B,3,H,W) in [-1,1]`` (:class:`dynast_cli.models.dynast.DynastGenerator`). Frames of any aspect
    ratio are placed on the ``size`` canvas (see the module docstring); the reference image is resized
    to its keypoints' fitted frame (image and keypoint frame differ when the keypoints came at another scale).
    """

    def __init__(
        self,
        generator: nn.Module,
        reference_image: torch.Tensor,
        reference_kps: Keypoints,
        size: tuple[int, int] = MODEL_SIZE,
    ):
        self.generator = generator
        self.size = size
        self.device = next(generator.parameters(), torch.empty(0)).device
        place = Placement.fit(reference_kps.frame_size, size)
        self.ref_image = (place.image(reference_image, value=1.0) * 2 - 1)[None].to(self.device)
        self.ref_map = render_pose_map(place.keypoints(reference_kps), size)[None].to(self.device)

    def query(self, target_kps: Keypoints) -> tuple[torch.Tensor, Placement]:
        """The target's pose map on the canvas ``(20, H, W)`` and its placement."""
        place = Placement.fit(target_kps.frame_size, self.size)
        return render_pose_map(place.keypoints(target_kps), self.size), place

    @torch.inference_mode()
    def __call__(self, target_kps: Keypoints) -> torch.Tensor:
        """The reference in the target pose: ``(3, fh, fw)`` in ``[0, 1]``, the model output cropped to
        the target frame's fitted area (``(H, W)`` for a square frame)."""
        query, place = self.query(target_kps)
        out = self.generator(query=query[None].to(self.device), ref_image=self.ref_image, ref_semantics=self.ref_map)
        return place.crop(((out[0].float() + 1) / 2).clamp(0, 1).cpu())


def pose_transfer(
    generator: nn.Module,
    reference_image: torch.Tensor,
    reference_kps: Keypoints,
    target_kps: Keypoints,
    size: tuple[int, int] = MODEL_SIZE,
) -> torch.Tensor:
    """``reference_image`` ``(3, h, w)`` in ``[0, 1]`` re-posed to ``target_kps`` -> ``(3, H, W)`` in ``[0, 1]``."""
    return PoseTransfer(generator, reference_image, reference_kps, size)(target_kps)


def pose_sequence(
    generator: nn.Module,
    reference_image: torch.Tensor,
    reference_kps: Keypoints,
    targets: Iterable[Keypoints],
    size: tuple[int, int] = MODEL_SIZE,
) -> Iterator[torch.Tensor]:
    """One output ``(3, H, W)`` per target pose; the reference is prepared once."""
    transfer = PoseTransfer(generator, reference_image, reference_kps, size)
    for kps in targets:
        yield transfer(kps)


def default_weights_path() -> Path | None:
    """``weights/dynast_deepfashion.safetensors`` (a user's converted official checkpoint) in the working
    folder or the weights folder (``$DYNAST_WEIGHTS`` or the repository's), if present."""
    from dynast_cli.weights.registry import weights_dir

    for folder in (Path("weights"), weights_dir()):
        if (folder / WEIGHTS_NAME).is_file():
            return folder / WEIGHTS_NAME
    return None


def missing_weights_message() -> str:
    """How to get and convert the official DeepFashion checkpoint, in one line."""
    return (
        f"no pose-transfer weights (weights/{WEIGHTS_NAME}): download DynaST's DeepFashion latest_net_G.pth "
        f"from {OFFICIAL_CHECKPOINT_URL} (the official repo's link), then run "
        f"`dynast convert dynast latest_net_G.pth -o weights/{WEIGHTS_NAME}`, or pass --weights FILE"
    )


def load_pose_generator(weights: str | Path | None, device: torch.device) -> nn.Module:
    """The DynaST DeepFashion generator from ``weights`` or the default file, in eval mode (a model for
    another task is refused before its tensors are read: :func:`check_task`)."""
    path = Path(weights) if weights else default_weights_path()
    if path is None:
        raise WeightsError(missing_weights_message())
    check_task(path, POSE_CHANNELS)
    from dynast_cli.weights.build import build_model

    return build_model(path, "dynast", device, context="convert the official latest_net_G.pth with `dynast convert dynast`")


#: The task of a DynaST model with this many input (semantic) channels, and the command that runs it
#: (15: :data:`dynast_cli.pipelines.face.FACE_CHANNELS`).
TASKS = {POSE_CHANNELS: ("pose", "pose"), 15: ("edge-to-face", "face")}


def task_mismatch(channels: int, wanted: int) -> str:
    """``is an edge-to-face model (15 input channels); pose needs a 20-channel pose model`` (no path)."""
    kind = TASKS.get(channels, ("DynaST",))[0]
    article = "an" if kind[0] in "aeiou" else "a"
    wanted_kind, command = TASKS[wanted]
    return (f"is {article} {kind} model ({channels} input channels); "
            f"{command} needs a {wanted}-channel {wanted_kind} model")


def check_task(path: str | Path, channels: int) -> None:
    """Refuse a DynaST weights file made for another task (its config's ``semantic_nc`` is not
    ``channels``) with a :class:`WeightsError` naming it, from the file's metadata alone. Anything
    else wrong with the file (not DynaST, a bad config) is left to the loader's messages
    (:func:`~dynast_cli.weights.build.build_model`)."""
    from dynast_cli.models.dynast import ARCHITECTURE, DynastConfig
    from dynast_cli.weights.io import read_metadata

    meta = read_metadata(path)
    if meta.get("architecture") != ARCHITECTURE:
        return
    try:
        found = DynastConfig.from_dict(json.loads(meta.get("config") or "{}")).semantic_nc
    except (ValueError, TypeError):
        return
    if found != channels:
        raise WeightsError(task_mismatch(found, channels), path)


def check_generator_task(generator: nn.Module, channels: int) -> None:
    """The same check for a generator given as an object (library use); stand-ins without a config pass."""
    found = getattr(getattr(generator, "config", None), "semantic_nc", channels)
    if found != channels:
        raise WeightsError(f"the generator {task_mismatch(found, channels)}")


# --- files in, files out (what `dynast pose` runs) ----------------------------------------------------

VIDEO_SUFFIXES = {".mp4": "mp4v", ".avi": "MJPG"}
KEYPOINT_ENDINGS = ("_candidate.txt", ".json")


def list_pose_files(folder: Path) -> list[Path]:
    """Pose sources in a folder, natural order: OpenPose JSON, ``_candidate.txt`` (its ``_subset.txt``
    is implied) and photos."""
    files = [
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".")
        and (p.name.endswith(KEYPOINT_ENDINGS) or p.suffix.lower() in IMAGE_SUFFIXES)
    ]
    if not files:
        raise InputError("no pose files in the folder (OpenPose .json, *_candidate.txt or photos)", folder)
    return sorted(files, key=natural_key)


def find_reference_pose(reference: Path) -> Path:
    """``<stem>_candidate.txt`` or ``<stem>_keypoints.json`` beside the reference (or in the DeepFashion
    ``img/`` -> ``pose/`` mirror folder), else the photo itself (MediaPipe)."""
    for folder in (reference.parent, mirror_folder(reference.parent, "img", "pose")):
        for name in (f"{reference.stem}_candidate.txt", f"{reference.stem}_keypoints.json"):
            if (folder / name).is_file():
                return folder / name
    return reference


def run_pose(
    reference: str | Path,
    target_pose: str | Path,
    output: str | Path | None = None,
    *,
    weights: str | Path | None = None,
    reference_pose: str | Path | None = None,
    save_pose: str | Path | None = None,
    device: str = "auto",
    fps: float = 25.0,
    overwrite: bool = False,
    generator: nn.Module | None = None,
    max_memory: int | None = None,
    compile: bool = False,
    notify=None,
) -> list[Path]:
    """Re-pose the person of ``reference`` to ``target_pose`` (a keypoint file, a photo, or a folder
    of them: a sequence) and write the result(s); returns the written paths.

    ``output``: an image file; for a sequence a folder of frames or a ``.mp4``/``.avi`` video
    (default ``<reference>_to_<target>.png`` / ``<reference>_to_<target>/``); each output has its target
    frame's aspect ratio, long side 256 px (see the module docstring). ``save_pose``: the target pose
    map(s) given to the model as PNG, cropped as the output (a folder for a sequence). Images under
    :data:`MIN_SIDE` px, frames beyond 8:1 and weights of another task are refused before any output.
    A folder of poses written as a folder of frames goes on past a pose file that cannot be used (no
    person, a bad file, MediaPipe failing on a photo) and past a frame that cannot be written: the other
    frames are written (each with its pose map; a failed target leaves neither), then
    :class:`~dynast_cli.errors.BatchError` (exit 5) names each failed file (``.written`` lists the files
    written). Written as one video, any bad pose file refuses the job before any output (a video with a
    frame missing is not the sequence asked for).
    ``generator`` replaces loading ``weights``. ``max_memory`` (bytes) / ``compile``: see
    :func:`dynast_cli.memory.prepare_generator`.
    """
    reference, target_pose = Path(reference), Path(target_pose)
    if not target_pose.exists():
        raise InputError("no such file or folder", target_pose)
    targets = list_pose_files(target_pose) if target_pose.is_dir() else [target_pose]
    sequence = target_pose.is_dir()
    output = Path(output) if output else Path(f"{reference.stem}_to_{target_pose.stem}{'' if sequence else '.png'}")
    frame_paths = _plan_outputs(output, targets, sequence, overwrite)
    pose_paths = _plan_pose_outputs(save_pose, targets, sequence, overwrite)
    frame_outputs = [(p, str(t)) for p, t in zip(frame_paths, targets)] if frame_paths else [(output, "the video")]
    check_distinct([*frame_outputs, *[(p, f"--save-pose of {t}") for p, t in zip(pose_paths, targets)]],
                   [reference, *targets, *([reference_pose] if reference_pose else [])])

    image = load_image(reference)
    check_frame(reference, tuple(image.shape[-2:]))
    ref_source = Path(reference_pose) if reference_pose else find_reference_pose(reference)
    ref_kps = load_keypoints(ref_source, default_frame_size=tuple(image.shape[-2:]))
    check_frame(ref_source, ref_kps.frame_size, keypoints=ref_source.suffix.lower() not in IMAGE_SUFFIXES)
    as_frames = sequence and bool(frame_paths)
    if as_frames and any(t.suffix.lower() in IMAGE_SUFFIXES for t in targets):
        # a missing MediaPipe is the setup's problem, not each photo's: refused at once (exit 2)
        from dynast_cli.io.mediapipe_landmarks import import_mediapipe

        import_mediapipe(next(t for t in targets if t.suffix.lower() in IMAGE_SUFFIXES))
    target_kps: list[Keypoints | None] = []
    failed: list[tuple[Path, str]] = []
    for path in targets:
        try:
            kps = load_keypoints(path, default_frame_size=ref_kps.frame_size)
            check_frame(path, kps.frame_size, keypoints=path.suffix.lower() not in IMAGE_SUFFIXES)
        except DynastError as exc:
            if not as_frames:  # one target, or one video of them all: nothing is written
                raise
            kps = None
            failed.append((path, str(exc)))
        target_kps.append(kps)
    report = BatchReport(failed=failed, planned=len(targets))
    keep = [kps is not None for kps in target_kps]
    if failed:  # a folder of frames goes on past a bad pose file; its frame (and pose map) is not written
        frame_paths, pose_paths = list(compress(frame_paths, keep)), list(compress(pose_paths, keep))
        target_kps = list(compress(target_kps, keep))
        if not target_kps:
            raise batch_error(report)
    if generator is None:
        generator = load_pose_generator(weights, resolve_device(device))
    check_generator_task(generator, POSE_CHANNELS)
    generator = prepare_generator(generator, MODEL_SIZE, max_memory, compile, notify)

    transfer = PoseTransfer(generator, image, ref_kps)

    def save_pose_map(kps: Keypoints, path: Path) -> Path:
        query, place = transfer.query(kps)
        return save_pose_png(place.crop(query), path)  # what the model is given, as the output is cropped

    written = []
    if output.suffix.lower() in VIDEO_SUFFIXES:
        written += [save_pose_map(kps, path) for kps, path in zip(target_kps, pose_paths)]
        written.append(write_video((transfer(kps) for kps in target_kps), output, fps))
        return written
    for i, (kps, target) in enumerate(zip(target_kps, compress(targets, keep))):
        mine: list[Path] = []  # this target's files: none is left if one of them fails
        try:  # a frame that cannot be written is that target's failure, as in a folder of styled images
            frame = transfer(kps)
            if pose_paths:
                mine.append(save_pose_map(kps, pose_paths[i]))
            mine.append(save_image(frame, frame_paths[i]))
        except DynastError as exc:
            for path in mine:
                path.unlink(missing_ok=True)
            if not as_frames:
                raise
            failed.append((target, str(exc)))
            continue
        written += mine
    if failed:
        failed.sort(key=lambda item: targets.index(item[0]))  # in the folder's order
        report.written = written
        raise batch_error(report)
    return written


def _plan_outputs(output: Path, targets: list[Path], sequence: bool, overwrite: bool) -> list[Path]:
    """Checked output image paths, one per target (empty for a video)."""
    if not sequence:
        return [check_output_path(output, overwrite)]
    if output.suffix.lower() in VIDEO_SUFFIXES:
        check_output(output, overwrite)  # exists, a folder in the way, its folder not writable
        return []
    if output.suffix:
        raise OutputError("a sequence of poses needs a folder or a .mp4/.avi video as output", output)
    return [check_output_path(output / f"{_pose_stem(t)}.png", overwrite) for t in targets]


def _plan_pose_outputs(save_pose: str | Path | None, targets: list[Path], sequence: bool, overwrite: bool) -> list[Path]:
    """Checked pose-map PNG paths (``save_pose`` is a file, or a folder for a sequence)."""
    if save_pose is None:
        return []
    save_pose = Path(save_pose)
    if not sequence:
        return [check_output_path(save_pose, overwrite)]
    return [check_output_path(save_pose / f"{_pose_stem(t)}.png", overwrite) for t in targets]


def _pose_stem(path: Path) -> str:
    """``frame3_candidate.txt`` / ``frame3_keypoints.json`` / ``frame3.jpg`` -> ``frame3``."""
    for ending in ("_candidate.txt", "_keypoints.json", ".json"):
        if path.name.endswith(ending):
            return path.name[: -len(ending)]
    return path.stem


def write_video(frames: Iterable[torch.Tensor], path: Path, fps: float) -> Path:
    """Write ``(3, H, W)`` frames in ``[0, 1]`` to an .mp4 (mp4v) or .avi (MJPG) atomically; every frame
    is resized to the first one's size."""
    # atomic_output creates the folder (checked before any work), gives the usual permissions and removes
    # the temporary on failure; the temporary ends in the video's suffix, which OpenCV picks the format by
    with atomic_output(path, suffix=f".part{path.suffix}") as tmp:
        writer, size = None, None
        try:
            for frame in frames:
                bgr = np.ascontiguousarray(to_uint8(frame)[:, :, ::-1])
                if writer is None:
                    size = (bgr.shape[1], bgr.shape[0])
                    fourcc = cv2.VideoWriter_fourcc(*VIDEO_SUFFIXES[path.suffix.lower()])
                    writer = cv2.VideoWriter(str(tmp), fourcc, fps, size)
                    if not writer.isOpened():
                        raise OutputError("OpenCV cannot write this video format here", path)
                if (bgr.shape[1], bgr.shape[0]) != size:
                    bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
                writer.write(bgr)
        finally:
            if writer is not None:
                writer.release()  # before atomic_output moves the file into place
    return path
