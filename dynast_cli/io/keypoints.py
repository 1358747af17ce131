"""OpenPose-18 body keypoints from files and photos.

Three sources, one result (:class:`Keypoints`):

* an OpenPose JSON file (``people[i].pose_keypoints_2d``, COCO-18 or BODY_25; BODY_25 is mapped to 18);
* the DeepFashion ``<name>_candidate.txt`` + ``<name>_subset.txt`` pair of the official CoCosNet/DynaST
  data (either file may be named; its partner is found beside it);
* a person photo, through MediaPipe pose (optional extra: ``pip install 'dynast-cli[mediapipe]'``).

Points are in OpenPose-18 order (nose, neck, r-shoulder, r-elbow, r-wrist, l-shoulder, l-elbow,
l-wrist, r-hip, r-knee, r-ankle, l-hip, l-knee, l-ankle, r-eye, l-eye, r-ear, l-ear), ``(x, y)`` in
pixels of the image they were detected on. A missing point is the row ``(-1, -1)``, the official
subset convention (index -1 = not detected).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dynast_cli.errors import InputError
from dynast_cli.io.images import IMAGE_SUFFIXES, read_image_array

NUM_KEYPOINTS = 18
MISSING = -1.0

# BODY_25 index of each OpenPose-18 point (BODY_25 adds mid-hip at 8 and six foot points at 19..24).
BODY25_TO_18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
# MediaPipe pose landmark index of each OpenPose-18 point; None = the neck, the mean of both shoulders.
MEDIAPIPE_TO_18 = (0, None, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)
MEDIAPIPE_MIN_VISIBILITY = 0.5


@dataclass(frozen=True)
class Keypoints:
    """One person's OpenPose-18 keypoints.

    ``points``: float64 ``(18, 2)`` of ``(x, y)`` pixels, ``(-1, -1)`` rows for missing points.
    ``frame_size``: ``(H, W)`` of the image the coordinates refer to.
    """

    points: np.ndarray
    frame_size: tuple[int, int]

    @property
    def present(self) -> np.ndarray:
        """``(18,)`` bool: which points were detected."""
        return self.points[:, 0] >= 0

    def shifted(self, dx: float, dy: float, frame_size: tuple[int, int]) -> "Keypoints":
        """The same points moved by ``(dx, dy)`` into a frame of ``frame_size`` (missing stay missing)."""
        points = self.points.copy()
        points[self.present] += (dx, dy)
        return Keypoints(points, frame_size)


def load_keypoints(path: str | Path, default_frame_size: tuple[int, int] | None = None) -> Keypoints:
    """Keypoints from an OpenPose JSON, a ``_candidate.txt``/``_subset.txt`` file or a photo.

    The frame size of a keypoint file is that of the image found beside it (same name, or the
    DeepFashion ``pose/`` -> ``img/`` mirror), else ``default_frame_size``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path)
    if path.is_dir():
        raise InputError("is a folder, expected a keypoint file or a photo", path)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return detect_keypoints(path)
    if suffix == ".json":
        points = read_openpose_json(path)
    elif path.name.endswith(("_candidate.txt", "_subset.txt")):
        points = read_candidate_subset(path)
    else:
        raise InputError(
            "unknown keypoint format (expected OpenPose .json, *_candidate.txt/*_subset.txt or a photo)", path
        )
    frame = _frame_size(path, default_frame_size)
    points = np.where(np.isfinite(points).all(axis=1, keepdims=True), points, MISSING)  # NaN / inf: not detected
    h, w = frame
    inside = (points[:, 0] >= 0) & (points[:, 0] < w) & (points[:, 1] >= 0) & (points[:, 1] < h)
    if not inside.any():  # the pose map would be blank: a picture of nobody
        raise InputError(f"no person found (no keypoint inside its {w}x{h} frame)", path)
    return Keypoints(points, frame)


def read_openpose_json(path: str | Path) -> np.ndarray:
    """``(18, 2)`` points of the person with the most detected points in an OpenPose JSON file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path) from None
    people = data.get("people") if isinstance(data, dict) else None
    if not isinstance(people, list):
        raise InputError("not an OpenPose file (no 'people' list)", path)
    best, best_count = None, 0
    for i, person in enumerate(people):
        flat = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
        try:
            values = np.asarray(flat, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"people[{i}].pose_keypoints_2d is not a list of numbers", path) from None
        if values.ndim != 1 or values.size not in (18 * 3, 25 * 3):
            raise InputError(
                f"people[{i}].pose_keypoints_2d has {values.size} numbers, expected 54 (COCO-18) or 75 (BODY_25)",
                path,
            )
        triples = values.reshape(-1, 3)
        if len(triples) == 25:
            triples = triples[list(BODY25_TO_18)]
        points = np.where(triples[:, 2:3] > 0, triples[:, :2], MISSING)
        count = int((triples[:, 2] > 0).sum())
        if count > best_count:
            best, best_count = points, count
    if best is None:
        raise InputError("no person found", path)
    return best


def partner_paths(path: str | Path) -> tuple[Path, Path]:
    """``(candidate, subset)`` paths of a DeepFashion keypoint pair, given either file."""
    path = Path(path)
    stem = path.name[: -len("_candidate.txt")] if path.name.endswith("_candidate.txt") else path.name[: -len("_subset.txt")]
    return path.with_name(f"{stem}_candidate.txt"), path.with_name(f"{stem}_subset.txt")


def read_candidate_subset(path: str | Path) -> np.ndarray:
    """``(18, 2)`` points from a DeepFashion ``_candidate.txt`` + ``_subset.txt`` pair.

    ``candidate``: one row ``x y score id`` per detected point. ``subset``: per person 18 candidate
    indices (-1 = missing) then the total score and the point count (20 numbers). With several
    people, the one with the most points is used.
    """
    candidate_path, subset_path = partner_paths(path)
    for p in (candidate_path, subset_path):
        if not p.is_file():
            raise InputError("no such file (a _candidate.txt and its _subset.txt must sit together)", p)
    candidate = _read_number_rows(candidate_path, 4)
    people = _read_number_rows(subset_path, NUM_KEYPOINTS + 2, finite=True)  # candidate indices: no nan/inf
    if len(people) == 0:
        raise InputError("no person found", subset_path)
    person = people[int(np.argmax(people[:, -1]))]
    points = np.full((NUM_KEYPOINTS, 2), MISSING)
    for k, index in enumerate(person[:NUM_KEYPOINTS]):
        if index == -1:
            continue
        if index != int(index) or not 0 <= index < len(candidate):
            raise InputError(
                f"keypoint {k} refers to candidate {index:g}, but {candidate_path.name} has {len(candidate)} rows",
                subset_path,
            )
        points[k] = candidate[int(index), :2]
    return points


def _read_number_rows(path: Path, width: int, finite: bool = False) -> np.ndarray:
    """A whitespace-separated text table of ``width`` numbers a line -> ``(rows, width)``; with ``finite``,
    nan/inf are refused (a candidate's nan position is a keypoint not detected, but a subset's nan index
    points nowhere)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError("not a text file", path) from None
    rows = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != width:
            raise InputError(f"line {number}: expected {width} numbers, found {len(fields)}", path)
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise InputError(f"line {number}: not a number", path) from None
        if finite and not all(np.isfinite(values)):
            raise InputError(f"line {number}: holds a value that is not a finite number", path)
        rows.append(values)
    return np.asarray(rows, dtype=np.float64).reshape(-1, width)


def _frame_size(path: Path, default: tuple[int, int] | None) -> tuple[int, int]:
    """``(H, W)`` of the image a keypoint file refers to (see :func:`load_keypoints`)."""
    stem = path.name
    for ending in ("_candidate.txt", "_subset.txt", "_keypoints.json", ".json"):
        if stem.endswith(ending):
            stem = stem[: -len(ending)]
            break
    for folder in (path.parent, mirror_folder(path.parent, "pose", "img")):
        for suffix in (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG"):
            image = folder / f"{stem}{suffix}"
            if image.is_file():
                from PIL import Image, UnidentifiedImageError

                try:
                    with Image.open(image) as img:
                        return img.height, img.width
                except (UnidentifiedImageError, OSError) as exc:
                    reason = "not an image" if isinstance(exc, UnidentifiedImageError) else (exc.strerror or str(exc))
                    raise InputError(f"cannot read the image these keypoints refer to ({reason})", image) from None
    if default is None:
        raise InputError(
            f"cannot tell the size of the image these keypoints refer to (put {stem}.jpg beside it)", path
        )
    return default


def mirror_folder(folder: Path, src: str, dst: str) -> Path:
    """DeepFashion layout: ``<root>/img/...`` and ``<root>/pose/...`` mirror each other; the last
    ``src`` component of ``folder`` replaced by ``dst`` (``folder`` itself without one)."""
    parts = folder.parts
    if src not in parts:
        return folder
    i = len(parts) - 1 - parts[::-1].index(src)
    return Path(*parts[:i], dst, *parts[i + 1:])


def detect_keypoints(image: str | Path) -> Keypoints:
    """OpenPose-18 keypoints of the person in a photo, with MediaPipe pose (``model_complexity=1``)."""
    from dynast_cli.io.mediapipe_landmarks import pose_landmarks

    path = Path(image)
    rgb = (read_image_array(path) * 255).round().astype(np.uint8)
    landmarks = pose_landmarks(rgb, path)
    if landmarks is None:
        raise InputError("no person found by MediaPipe (pass a keypoint file instead)", path)
    return keypoints_from_mediapipe(landmarks, rgb.shape[:2])


def keypoints_from_mediapipe(landmarks: np.ndarray, frame_size: tuple[int, int]) -> Keypoints:
    """MediaPipe's 33 pose landmarks ``(33, 3)`` ``(x / W, y / H, visibility)`` -> OpenPose-18
    :class:`Keypoints` in pixels of a ``frame_size`` ``(H, W)`` frame (:data:`MEDIAPIPE_TO_18`; the neck is
    the mean of both shoulders). A point is missing when its visibility (the lower of both shoulders'
    for the neck) is under :data:`MEDIAPIPE_MIN_VISIBILITY` or it falls outside the frame."""
    h, w = frame_size
    xyv = np.asarray(landmarks, dtype=np.float64) * (w, h, 1)
    points = np.full((NUM_KEYPOINTS, 2), MISSING)
    for k, index in enumerate(MEDIAPIPE_TO_18):
        rows = xyv[[11, 12]] if index is None else xyv[[index]]
        x, y = rows[:, :2].mean(axis=0)
        if rows[:, 2].min() >= MEDIAPIPE_MIN_VISIBILITY and 0 <= x < w and 0 <= y < h:
            points[k] = (x, y)
    return Keypoints(points, (h, w))
