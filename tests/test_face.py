"""Edge-to-face inputs (the official 15-channel CelebA-HQ edge recipe), Canny, the pipeline and the CLI."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import dynast_cli.cli  # noqa: F401  (registers the subcommands)
from dynast_cli.cli.app import app
from dynast_cli.errors import InputError
from dynast_cli.pipelines import face as face_pipeline
from dynast_cli.pipelines.face import build_face_input, canny, edges_from_image, face_from_edges, face_input


def official_face_input(root: str, name: str, load_size: int = 256) -> np.ndarray:
    """The official celebahqedge get_label_tensor at test time, step by step (its skimage Canny replaced by
    ours: scikit-image is not a dependency)."""
    inner_parts = ['skin', 'l_brow', 'r_brow', 'l_eye', 'r_eye', 'l_ear', 'r_ear', 'nose', 'u_lip', 'mouth',
                   'l_lip', 'eye_g', 'hair']
    path = os.path.join(root, 'CelebAMask-HQ-mask-anno', str(int(name) // 2000), name.zfill(5) + '_{}.png')
    img = Image.open(os.path.join(root, 'CelebA-HQ-img', name + '.jpg')).resize((load_size, load_size), Image.BILINEAR)

    def get_edges(edge, t):
        edge[:, 1:] = edge[:, 1:] | (t[:, 1:] != t[:, :-1])
        edge[:, :-1] = edge[:, :-1] | (t[:, 1:] != t[:, :-1])
        edge[1:, :] = edge[1:, :] | (t[1:, :] != t[:-1, :])
        edge[:-1, :] = edge[:-1, :] | (t[1:, :] != t[:-1, :])
        return edge

    inner_label = np.ones(img.size, dtype=np.uint8)
    edges = np.zeros(img.size, dtype=np.uint8)
    dists = []
    for part in inner_parts:
        edge = np.zeros(img.size, dtype=np.uint8)
        if os.path.exists(path.format(part)):
            part_label = np.array(Image.open(path.format(part)).convert('L').resize((load_size, load_size), Image.NEAREST))
            inner_label[part_label == 255] = 1 if part == 'hair' else 0
            edges = get_edges(edges, part_label)
            edge = get_edges(edge, part_label)
        im_dist = np.clip(cv2.distanceTransform(255 - edge * 255, cv2.DIST_L1, 3) / 3, 0, 255).astype(np.uint8)
        dists.append(np.asarray(im_dist, np.float32) / 255)
    canny_edges = canny(np.array(img.convert('L'))) * inner_label
    edges_all = edges + canny_edges
    edges_all[edges_all > 1] = 1
    edges[edges > 1] = 1
    return np.stack([(edges_all * 255).astype(np.float32) / 255, *dists, (edges * 255).astype(np.float32) / 255])


def test_face_inputs_match_the_official_recipe(shared_data):
    root = shared_data / "face" / "celebahqedge"
    names = sorted(p.stem for p in (root / "CelebA-HQ-img").glob("*.jpg"))
    assert len(names) == 8
    for name in names[:3]:  # 1024-pixel photos: three keep the test fast
        ours = face_input(root / "CelebA-HQ-img" / f"{name}.jpg")
        assert ours.shape == (15, 256, 256)
        np.testing.assert_array_equal(ours.numpy(), official_face_input(str(root), name), err_msg=name)
        assert ours[14].sum() > 0 and ours[0].sum() > ours[14].sum()  # parts found, plus background edges


def test_canny_finds_thin_edges_on_a_square_and_none_on_flat_areas():
    image = np.zeros((40, 40), np.uint8)
    image[10:30, 10:30] = 200
    edges = canny(image)
    assert not edges[:6].any() and not edges[15:25, 15:25].any()
    rows, cols = np.nonzero(edges)
    assert rows.min() >= 8 and rows.max() <= 31 and cols.min() >= 8 and cols.max() <= 31
    assert 60 <= edges.sum() <= 100  # one pixel thick: about the 4 * 20 perimeter
    assert all(side.sum() >= 15 for side in (edges[8:12, 10:30], edges[28:32, 10:30], edges[10:30, 8:12], edges[10:30, 28:32]))
    assert not canny(np.full((20, 20), 90, np.uint8)).any()
    assert not canny((image * 0.05).astype(np.uint8)).any()  # below the low threshold


def test_edges_without_parts():
    edges = np.zeros((16, 16), bool)
    edges[4, 2:10] = True
    x = build_face_input(edges)
    assert x.shape == (15, 16, 16)
    assert torch.equal(x[0], torch.from_numpy(edges.astype(np.float32)))
    assert torch.all(x[1:14] == 1) and torch.all(x[14] == 0)


def test_parts_hide_background_edges_except_hair():
    edges = np.ones((12, 12), bool)
    skin = np.zeros((12, 12), bool)
    skin[2:8, 2:8] = True
    hair = np.zeros((12, 12), bool)
    hair[4:6, 4:6] = True
    x = build_face_input(edges, {"skin": skin, "hair": hair, "cloth": ~skin})
    assert x[0, 3, 3] == 0  # inside the skin, away from its boundary: no background edge
    assert x[0, 4, 4] == 1 and x[0, 10, 10] == 1  # hair and the background keep theirs
    assert x[1, 1, 2] == 0 and x[1].max() > 0  # skin distance map: 0 on its boundary, growing away from it
    assert torch.all(x[2] == 1)  # l_brow is absent


def test_edge_images_of_either_polarity(tmp_path):
    lines = np.zeros((32, 32), np.uint8)
    lines[8, 4:28] = 255
    lines[4:28, 20] = 255
    Image.fromarray(lines).save(tmp_path / "white.png")
    Image.fromarray(255 - lines).save(tmp_path / "black.png")
    white = edges_from_image(tmp_path / "white.png", (32, 32))
    assert np.array_equal(white, lines > 0)
    assert np.array_equal(edges_from_image(tmp_path / "black.png", (32, 32)), white)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "blank.png")
    with pytest.raises(InputError, match=r"blank.png: the edge image is blank"):
        edges_from_image(tmp_path / "blank.png")


class RecordingGenerator(nn.Module):
    """Stand-in with the DynastGenerator signature; returns the reference image."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls = []

    def forward(self, query, ref_image, ref_semantics):
        self.calls.append((query, ref_image, ref_semantics))
        return ref_image * self.scale


def test_face_from_edges_feeds_the_generator():
    gen = RecordingGenerator()
    exemplar = torch.rand(3, 40, 40)
    query, ref = torch.rand(15, 32, 32), torch.rand(15, 32, 32)
    out = face_from_edges(gen, exemplar, query, ref)
    (q, image, sem), = gen.calls
    assert torch.equal(q[0], query) and torch.equal(sem[0], ref)
    assert image.shape == (1, 3, 32, 32) and image.min() >= -1 and image.max() <= 1
    torch.testing.assert_close(out, (image[0] + 1) / 2)


def _photo(path, seed):
    rng = np.random.default_rng(seed)
    img = np.full((48, 48, 3), 30, np.uint8)
    cv2.circle(img, (24, 24), 14, tuple(int(v) for v in rng.integers(100, 255, 3)), -1)
    Image.fromarray(img).save(path)
    return path


def test_run_face_writes_output_and_edges(tmp_path):
    gen = RecordingGenerator()
    written = face_pipeline.run_face(_photo(tmp_path / "a.png", 0), _photo(tmp_path / "b.png", 1), tmp_path / "out.png",
                                     save_edges=tmp_path / "edges.png", generator=gen)
    assert written == [tmp_path / "edges.png", tmp_path / "out.png"]
    assert Image.open(tmp_path / "out.png").size == (256, 256)
    assert np.asarray(Image.open(tmp_path / "edges.png")).max() == 255


def test_cli_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DYNAST_WEIGHTS", str(tmp_path / "no_weights"))  # as if no face weights were installed
    _photo(tmp_path / "a.png", 0)
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, ["face", *args])
        return result.exit_code, [ln for ln in result.output.splitlines() if ln.strip()]

    assert run("missing.png", "a.png") == (2, ["error: missing.png: no such file"])
    assert run("a.png", "a.png", "--edges", "sobel") == (1, ["error: unknown --edges 'sobel' (use one of canny, hed, mediapipe, image)"])
    code, lines = run("a.png", "a.png", "-o", "out.png")
    assert code == 3 and len(lines) == 1 and "no edge-to-face weights" in lines[0]
    assert not (tmp_path / "out.png").exists()
