"""MediaPipe paths: pose keypoints from a photo (``dynast pose``) and face-mesh edges (``dynast face --edges
mediapipe``). The geometry tests run everywhere; those that run MediaPipe skip without the extra."""

from __future__ import annotations

import builtins
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import dynast_cli.cli  # noqa: F401  (registers the subcommands)
from dynast_cli.cli.app import app
from dynast_cli.errors import InputError
from dynast_cli.io import mediapipe_landmarks
from dynast_cli.io.keypoints import (
    MEDIAPIPE_TO_18,
    keypoints_from_mediapipe,
    load_keypoints,
)
from dynast_cli.pipelines import face as face_pipeline
from dynast_cli.pipelines.face_mesh import (
    FACE_MESH_CONTOURS,
    contour_segments,
    draw_face_contours,
    face_oval_mask,
)

HINT = r"pip install 'dynast-cli\[mediapipe\]'"


def _synthetic_pose(visibility: float = 1.0) -> np.ndarray:
    """33 landmarks ``(x / W, y / H, visibility)``, each at a distinct place inside the frame."""
    i = np.arange(33, dtype=np.float64)
    return np.stack([(i + 1) / 40, 0.9 - i / 40, np.full(33, visibility)], axis=1)


def test_pose_landmarks_map_to_openpose_18():
    landmarks = _synthetic_pose()
    kps = keypoints_from_mediapipe(landmarks, (200, 100))
    assert kps.frame_size == (200, 100) and kps.present.all()
    for k, index in enumerate(MEDIAPIPE_TO_18):
        expected = landmarks[[11, 12], :2].mean(axis=0) if index is None else landmarks[index, :2]
        np.testing.assert_allclose(kps.points[k], expected * (100, 200))
    # OpenPose order: nose, neck, r-shoulder (MediaPipe 12), ..., l-ear (MediaPipe 7)
    np.testing.assert_allclose(kps.points[2], landmarks[12, :2] * (100, 200))
    np.testing.assert_allclose(kps.points[17], landmarks[7, :2] * (100, 200))


def test_pose_landmarks_hidden_or_outside_are_missing():
    landmarks = _synthetic_pose()
    landmarks[12, 2] = 0.2  # right shoulder hidden: it and the neck are missing
    landmarks[0, :2] = (1.2, 0.5)  # nose outside the frame
    landmarks[16, :2] = (0.5, -0.01)  # right wrist above it
    kps = keypoints_from_mediapipe(landmarks, (64, 64))
    assert sorted(np.flatnonzero(~kps.present)) == [0, 1, 2, 4]
    assert (kps.points[~kps.present] == -1).all()


def test_margin_retry_maps_landmarks_back(monkeypatch):
    rgb = np.zeros((40, 80, 3), np.uint8)
    seen = []

    def detect(image):
        seen.append(image.shape[:2])
        if len(seen) == 1:
            return None
        h, w = image.shape[:2]
        m = (w - 80) // 2
        return np.array([[(m + 10) / w, (m + 30) / h, 0.9]])  # pixel (10, 30) of the photo

    found = mediapipe_landmarks._with_margin_retry(rgb, detect)
    assert seen == [(40, 80), (80, 120)]  # margin 0.25 * 80 = 20 on every side
    np.testing.assert_allclose(found, [[10 / 80, 30 / 40, 0.9]])
    assert mediapipe_landmarks._with_margin_retry(rgb, lambda image: None) is None


# --- face-mesh contours --------------------------------------------------------------------------------


def test_contours_use_distinct_mesh_landmarks():
    for part, chains in FACE_MESH_CONTOURS.items():
        for chain, closed in chains:
            assert len(set(chain)) == len(chain) and max(chain) < 468, part
    assert contour_segments("l_brow") >= {(276, 283), (296, 336)} and (285, 336) in contour_segments("l_brow")


def _landmarks_with(chain: tuple[int, ...], points: list[tuple[float, float]]) -> np.ndarray:
    """468 landmarks all on the pixel (2, 2) of a 32x32 frame except ``chain``'s, at ``points``."""
    landmarks = np.full((468, 2), 2.5 / 32)
    landmarks[list(chain)] = np.asarray(points) / 32
    return landmarks


def test_contours_drawn_as_one_pixel_polylines():
    (chain, _), = FACE_MESH_CONTOURS["r_eye"]
    n = len(chain)
    # the eye's landmarks on the pixel centres of a 21x11 rectangle's outline (x 5..25, y 10..20)
    corners = [(5, 10), (25, 10), (25, 20), (5, 20)]
    points = [corners[min(4 * i // n, 3)] for i in range(n)]
    edges = draw_face_contours(_landmarks_with(chain, [(x + 0.5, y + 0.5) for x, y in points]), (32, 32))
    expected = np.zeros((32, 32), bool)
    expected[10, 5:26] = expected[20, 5:26] = expected[10:21, 5] = expected[10:21, 25] = True
    expected[2, 2] = True  # every other landmark sits there
    assert np.array_equal(edges, expected)


def test_contours_scale_with_the_output_size():
    landmarks = np.full((468, 2), 0.5)
    (chain, _), = FACE_MESH_CONTOURS["face_oval"]
    angles = np.linspace(0, 2 * np.pi, len(chain), endpoint=False)
    landmarks[list(chain)] = np.stack([0.5 + 0.4 * np.cos(angles), 0.5 + 0.3 * np.sin(angles)], axis=1)
    edges = draw_face_contours(landmarks, (50, 100))
    ys, xs = np.nonzero(edges)
    assert abs(xs.min() - 10) <= 1 and abs(xs.max() - 89) <= 1 and abs(ys.min() - 10) <= 1 and abs(ys.max() - 39) <= 1
    inside = face_oval_mask(landmarks, (50, 100))
    assert inside[edges].all() and inside[25, 50] and not inside[25, 5] and not inside[5, 50]
    assert abs(inside.sum() - np.pi * 40 * 15) < 0.05 * np.pi * 40 * 15  # the ellipse's area
    with pytest.raises(ValueError, match="468"):
        draw_face_contours(np.zeros((33, 3)), (32, 32))


def _photo(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def fake_mesh(monkeypatch):
    """MediaPipe replaced by a face mesh: an ellipse of face-oval landmarks (the rest in the middle)."""
    landmarks = np.full((468, 2), 0.5)
    (chain, _), = FACE_MESH_CONTOURS["face_oval"]
    angles = np.linspace(0, 2 * np.pi, len(chain), endpoint=False)
    landmarks[list(chain)] = np.stack([0.5 + 0.3 * np.cos(angles), 0.5 + 0.4 * np.sin(angles)], axis=1)
    found = {"landmarks": landmarks}
    monkeypatch.setattr(mediapipe_landmarks, "face_mesh_landmarks", lambda rgb, path: found["landmarks"])
    return found


def _mesh_and_canny(photo: Path, landmarks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """What --edges mediapipe should give: the part outlines, and Canny outside the face oval."""
    background = face_pipeline.edges_from_photo(face_pipeline.load_image(photo), "canny", size)
    return draw_face_contours(landmarks, size) | (background & ~face_oval_mask(landmarks, size))


def test_mediapipe_edges_feed_the_15_channel_builder(tmp_path, fake_mesh):
    photo = _photo(tmp_path / "face.png")
    query = face_pipeline.face_input(photo, "mediapipe", size=(64, 64))
    edges = _mesh_and_canny(photo, fake_mesh["landmarks"], (64, 64))
    assert torch.equal(query, face_pipeline.build_face_input(edges)) and query.shape == (15, 64, 64)
    assert (query[1:14] == 1).all() and (query[14] == 0).all()
    contours = draw_face_contours(fake_mesh["landmarks"], (64, 64))
    inside = face_oval_mask(fake_mesh["landmarks"], (64, 64))
    assert np.array_equal(edges & inside, contours) and (edges & ~inside).sum() > 50  # noise photo: Canny outside


def test_mediapipe_without_a_face_names_the_photo(tmp_path, fake_mesh):
    fake_mesh["landmarks"] = None
    photo = _photo(tmp_path / "face.png")
    with pytest.raises(InputError, match=r"face.png: no face found by MediaPipe"):
        face_pipeline.face_input(photo, "mediapipe")


class _Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, query, ref_image, ref_semantics):
        return ref_image * self.scale


def test_run_face_with_mediapipe_edges(tmp_path, fake_mesh):
    written = face_pipeline.run_face(_photo(tmp_path / "a.png"), _photo(tmp_path / "b.png", 1), tmp_path / "out.png",
                                     method="mediapipe", save_edges=tmp_path / "edges.png", generator=_Generator())
    assert written == [tmp_path / "edges.png", tmp_path / "out.png"]
    edges = np.asarray(Image.open(tmp_path / "edges.png").convert("L")) > 127
    assert np.array_equal(edges, _mesh_and_canny(tmp_path / "b.png", fake_mesh["landmarks"], (256, 213)))  # aspect kept


@pytest.fixture
def no_mediapipe(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "mediapipe" or name.startswith("mediapipe."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_without_mediapipe_face_and_pose_say_how_to_install(tmp_path, no_mediapipe, monkeypatch):
    photo = _photo(tmp_path / "face.png")
    with pytest.raises(InputError, match=rf"face.png: face edges from MediaPipe .*{HINT}"):
        face_pipeline.face_input(photo, "mediapipe")
    with pytest.raises(InputError, match=rf"face.png: finding keypoints in a photo needs MediaPipe.*{HINT}"):
        load_keypoints(photo)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["face", "face.png", "face.png", "--edges", "mediapipe"])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "pip install 'dynast-cli[mediapipe]'" in lines[0], result.output


def test_without_mediapipe_a_folder_of_pose_photos_is_refused_at_once(tmp_path, no_mediapipe):
    # a setup problem, not each photo's: exit 2 before any frame, not a batch of identical failures
    from dynast_cli.pipelines import pose as pose_pipeline

    _photo(tmp_path / "ref.png")
    rng = np.random.default_rng(0)  # the reference's own keypoints, so only the target photos need MediaPipe
    np.savetxt(tmp_path / "ref_candidate.txt", np.stack([rng.uniform(2, 40, 18), rng.uniform(2, 40, 18),
                                                         np.ones(18), np.arange(18)], axis=1))
    (tmp_path / "ref_subset.txt").write_text(" ".join([str(i) for i in range(18)] + ["30", "18"]))
    (tmp_path / "poses").mkdir()
    _photo(tmp_path / "poses" / "a.png", seed=1)
    _photo(tmp_path / "poses" / "b.png", seed=2)
    calls = []
    with pytest.raises(InputError, match=rf"a.png: finding keypoints in a photo needs MediaPipe.*{HINT}"):
        pose_pipeline.run_pose(tmp_path / "ref.png", tmp_path / "poses", tmp_path / "out",
                               reference_pose=None, generator=calls)
    assert not (tmp_path / "out").exists()


def test_installed_but_broken_mediapipe_is_told_apart(tmp_path, no_mediapipe, monkeypatch):
    monkeypatch.setattr(mediapipe_landmarks.importlib.util, "find_spec", lambda name: object())
    with pytest.raises(InputError, match=rf"installed but does not import .*numpy<2.*{HINT}"):
        mediapipe_landmarks.import_mediapipe(tmp_path / "x.png")


# --- the real MediaPipe (optional extra) ---------------------------------------------------------------


def test_contours_follow_mediapipe_connections():
    mp = pytest.importorskip("mediapipe")
    mesh = mp.solutions.face_mesh
    theirs = {
        "face_oval": mesh.FACEMESH_FACE_OVAL, "l_brow": mesh.FACEMESH_LEFT_EYEBROW,
        "r_brow": mesh.FACEMESH_RIGHT_EYEBROW, "l_eye": mesh.FACEMESH_LEFT_EYE, "r_eye": mesh.FACEMESH_RIGHT_EYE,
        "nose": mesh.FACEMESH_NOSE, "lips": mesh.FACEMESH_LIPS,
    }
    assert set(theirs) == set(FACE_MESH_CONTOURS)
    for part, connections in theirs.items():
        expected = {(min(a, b), max(a, b)) for a, b in connections}
        ours = contour_segments(part)
        assert ours >= expected, part
        assert len(ours - expected) == (2 if part.endswith("brow") else 0), part  # closed eyebrow outlines


def test_pose_from_deepfashion_photos_matches_their_keypoints(shared_data):
    pytest.importorskip("mediapipe")
    from test_pose import deepfashion_pairs

    pairs = deepfashion_pairs(shared_data)
    assert len(pairs) >= 4
    errors = []
    for image, candidate in pairs[:4]:
        found, truth = load_keypoints(image), load_keypoints(candidate)
        assert found.frame_size == truth.frame_size
        both = found.present & truth.present
        assert both.sum() >= 8, image
        errors.append(np.hypot(*(found.points[both] - truth.points[both]).T))
    errors = np.concatenate(errors)
    assert np.mean(errors) < 8 and np.median(errors) < 5  # pixels of 256x256 photos (measured 4.1 / 3.1 on all 8)


def test_pose_with_photos_as_reference_and_target(shared_data, tmp_path):
    pytest.importorskip("mediapipe")
    from test_pose import deepfashion_pairs

    from dynast_cli.pipelines.pose import run_pose

    (ref, _), (target, _) = deepfashion_pairs(shared_data)[:2]
    shutil.copy(ref, tmp_path / "ref.jpg")  # no keypoint file beside it: MediaPipe finds them
    written = run_pose(tmp_path / "ref.jpg", target, tmp_path / "out.png", save_pose=tmp_path / "pose.png",
                       generator=_Generator())
    assert written == [tmp_path / "pose.png", tmp_path / "out.png"]
    assert np.asarray(Image.open(tmp_path / "pose.png")).max() > 0


def test_no_person_and_no_face_found(tmp_path):
    pytest.importorskip("mediapipe")
    Image.new("RGB", (64, 64), (255, 255, 255)).save(tmp_path / "blank.png")
    with pytest.raises(InputError, match=r"blank.png: no person found by MediaPipe"):
        load_keypoints(tmp_path / "blank.png")
    with pytest.raises(InputError, match=r"blank.png: no face found by MediaPipe"):
        face_pipeline.face_input(tmp_path / "blank.png", "mediapipe")


def test_face_mesh_edges_of_celebahq_photos(shared_data):
    pytest.importorskip("mediapipe")
    photos = sorted((shared_data / "face" / "celebahqedge" / "CelebA-HQ-img").glob("*.jpg"))[:2]
    assert photos
    for photo in photos:
        query = face_pipeline.face_input(photo, "mediapipe")
        assert query.shape == (15, 256, 256)
        landmarks = mediapipe_landmarks.face_mesh_landmarks(face_pipeline.to_uint8(face_pipeline.load_image(photo)), photo)
        contours = draw_face_contours(landmarks, (256, 256))
        inside = face_oval_mask(landmarks, (256, 256))
        assert np.array_equal(query[0].numpy().astype(bool) & inside, contours)
        ys, xs = np.nonzero(contours)  # a face in the middle of a CelebA-HQ crop
        assert 64 < xs.mean() < 192 and 64 < ys.mean() < 192 and 0.01 < contours.mean() < 0.1
