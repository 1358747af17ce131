"""MediaPipe landmarks of a photo (optional extra ``pip install 'dynast-cli[mediapipe]'``).

Two detectors of the PyPI ``mediapipe`` wheel, both bundled (no download at run time):

* pose (``model_complexity=1``): 33 body landmarks -> :func:`pose_landmarks`;
* face mesh: 468 face landmarks -> :func:`face_mesh_landmarks`.

Both return landmarks normalised to the photo (``x / W``, ``y / H``), or ``None`` when nothing is found.
When nothing is found in the photo as given, the detector is tried once more on the photo with a
margin (its border pixels repeated) around it: tight crops (a DeepFashion person touching the frame, a
face filling it) are often missed otherwise. MediaPipe's start-up chatter on stderr is silenced.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from dynast_cli.errors import InputError
from dynast_cli.runtime import silenced_stderr

MEDIAPIPE_HINT = "pip install 'dynast-cli[mediapipe]'"
#: Margin of the second try, as a fraction of the photo's longer side on every side.
RETRY_MARGIN = 0.25
NUM_FACE_LANDMARKS = 468


def import_mediapipe(path: str | Path, need: str = "finding keypoints in a photo"):
    """The ``mediapipe`` module, or an :class:`InputError` on ``path`` saying how to install it."""
    try:
        with _quiet_stderr():
            import mediapipe
    except ImportError as exc:
        if importlib.util.find_spec("mediapipe") is None:
            raise InputError(f"{need} needs MediaPipe: {MEDIAPIPE_HINT}", path) from None
        raise InputError(
            f"{need} needs MediaPipe, which is installed but does not import ({exc}); reinstall the extra "
            f"(it needs numpy<2): {MEDIAPIPE_HINT}", path
        ) from None
    return mediapipe


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """MediaPipe's C++ start-up chatter silenced, unless ``$DYNAST_MEDIAPIPE_LOG`` is set."""
    if os.environ.get("DYNAST_MEDIAPIPE_LOG"):
        yield
        return
    with silenced_stderr():
        yield


def _with_margin_retry(
    rgb: np.ndarray, detect: Callable[[np.ndarray], np.ndarray | None]
) -> np.ndarray | None:
    """``detect(rgb)`` -> ``(N, >=2)`` normalised landmarks or None; on None, again with a margin, mapped back."""
    found = detect(rgb)
    if found is not None:
        return found
    h, w = rgb.shape[:2]
    m = max(1, round(RETRY_MARGIN * max(h, w)))
    padded = cv2.copyMakeBorder(rgb, m, m, m, m, cv2.BORDER_REPLICATE)
    found = detect(padded)
    if found is None:
        return None
    found = found.copy()
    found[:, 0] = (found[:, 0] * (w + 2 * m) - m) / w
    found[:, 1] = (found[:, 1] * (h + 2 * m) - m) / h
    return found


def _process(solution, image: np.ndarray, path: str | Path):
    """``solution.process(image)``, then the solution closed. MediaPipe's own failure on this photo (its graph
    raises RuntimeError or ValueError, and closing the failed graph raises it again) becomes an
    :class:`InputError` naming it, so that a batch goes on past it as past any bad file."""
    try:
        result = solution.process(np.ascontiguousarray(image))
    except (RuntimeError, ValueError) as exc:
        with contextlib.suppress(RuntimeError, ValueError):
            solution.close()
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]  # its graph errors span lines
        raise InputError(f"MediaPipe failed on this photo ({reason})", path) from exc
    solution.close()
    return result


def pose_landmarks(rgb: np.ndarray, path: str | Path) -> np.ndarray | None:
    """``(33, 3)`` float64 ``(x / W, y / H, visibility)`` of the person in ``rgb`` (uint8 ``(H, W, 3)``),
    or ``None`` without one. ``path`` names the photo in errors."""
    mp_pose = import_mediapipe(path).solutions.pose

    def detect(image: np.ndarray) -> np.ndarray | None:
        with _quiet_stderr():
            result = _process(mp_pose.Pose(static_image_mode=True, model_complexity=1), image, path)
        if result.pose_landmarks is None:
            return None
        return np.asarray([(lm.x, lm.y, lm.visibility) for lm in result.pose_landmarks.landmark], np.float64)

    return _with_margin_retry(rgb, detect)


def face_mesh_landmarks(rgb: np.ndarray, path: str | Path) -> np.ndarray | None:
    """``(468, 2)`` float64 ``(x / W, y / H)`` face-mesh landmarks of the face MediaPipe finds first in
    ``rgb`` (uint8 ``(H, W, 3)``), or ``None`` without one."""
    mp_mesh = import_mediapipe(path, "face edges from MediaPipe (--edges mediapipe)").solutions.face_mesh

    def detect(image: np.ndarray) -> np.ndarray | None:
        with _quiet_stderr():
            result = _process(mp_mesh.FaceMesh(static_image_mode=True, max_num_faces=1), image, path)
        if not result.multi_face_landmarks:
            return None
        landmarks = result.multi_face_landmarks[0].landmark
        return np.asarray([(lm.x, lm.y) for lm in landmarks][:NUM_FACE_LANDMARKS], np.float64)

    return _with_margin_retry(rgb, detect)
