"""Input sizes and aspect ratios (issue #14, items 5 and 8): minimum sizes with one-line errors, aspect
ratio kept by `dynast face` and `dynast pose` (fit, pad, crop back), weights of the other DynaST task."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from stand_ins import RecordingGenerator
from typer.testing import CliRunner

import dynast_cli.cli  # noqa: F401  (registers the subcommands)
from dynast_cli.cli.app import app
from dynast_cli.errors import InputError, WeightsError
from dynast_cli.io.keypoints import Keypoints
from dynast_cli.models.dynast import DynastConfig
from dynast_cli.pipelines import face as face_pipeline
from dynast_cli.pipelines import pose as pose_pipeline
from dynast_cli.pipelines.pose import MIN_SIDE, Placement, PoseTransfer, render_pose_map
from dynast_cli.weights.io import save_weights

runner = CliRunner()


def invoke(*args: str) -> tuple[int, list[str], list[str]]:
    """(exit code, non-blank output lines, warning messages) of a `dynast` command."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, [ln for ln in result.output.splitlines() if ln.strip()], [str(w.message) for w in caught]


def _save(path, h: int, w: int, value: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), value, np.uint8)
    img[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = rng.integers(0, 255, 3, dtype=np.uint8)
    Image.fromarray(img).save(path)
    return path


# --- the placement: fit, keypoints, pad, crop -----------------------------------------------------------


def test_placement_fits_the_long_side_and_centres_the_short_one():
    place = Placement.fit((200, 300), (256, 256))  # 300 wide, 200 high
    assert place.fitted == (171, 256) and place.offset == (42, 0)
    assert Placement.fit((256, 176), (256, 256)).offset == (0, 40)  # DeepFashion: 40 white columns each side
    assert Placement.fit((1000, 1000)).fitted == (256, 256) and Placement.fit((1000, 1000)).offset == (0, 0)


def test_keypoint_transform_matches_the_image_placement():
    # identity for a frame at the model size; +40 columns for the official 176-wide frames
    kps = Keypoints(np.array([[10.0, 20.0]] + [[-1.0, -1.0]] * 17), (256, 176))
    np.testing.assert_allclose(Placement.fit((256, 176)).keypoints(kps).points[0], (50.0, 20.0))
    assert (Placement.fit((256, 176)).keypoints(kps).points[1:] == -1).all()  # missing stay missing
    # scale and offset: the frame's corners map to the fitted area's corners (pixel i spans [i, i + 1))
    place = Placement.fit((100, 400), (256, 256))  # 400 wide, 100 high -> 256 x 64 at rows 96..159
    assert place.fitted == (64, 256) and place.offset == (96, 0)
    corners = Keypoints(np.array([[0.0, 0.0], [400.0, 100.0], [200.0, 50.0]] + [[-1.0, -1.0]] * 15), (100, 400))
    moved = place.keypoints(corners).points
    np.testing.assert_allclose(moved[:3], [(0.0, 96.0), (256.0, 160.0), (128.0, 128.0)])
    assert moved.shape == (18, 2) and place.keypoints(corners).frame_size == (256, 256)


def test_a_pose_on_a_non_square_image_lands_on_the_same_spot_as_the_image():
    # A dark square around a keypoint in a 300x120 photo: on the canvas, the keypoint is still inside it.
    image = torch.ones(3, 120, 300)
    image[:, 50:70, 200:220] = 0.0
    points = np.full((18, 2), -1.0)
    points[0] = (210.0, 60.0)  # centre of the dark square (pixel i spans [i, i + 1))
    place = Placement.fit((120, 300), (256, 256))
    canvas = place.image(image)
    x, y = place.keypoints(Keypoints(points, (120, 300))).points[0]
    assert canvas[:, int(y), int(x)].max() < 0.1
    pose_map = render_pose_map(place.keypoints(Keypoints(points, (120, 300))), (256, 256))
    ys, xs = np.nonzero(pose_map[:3].amax(0).numpy())  # the drawn circle, around pixel (int(x), int(y))
    assert abs(xs.mean() - int(x)) < 0.5 and abs(ys.mean() - int(y)) < 0.5
    dark = np.nonzero((canvas.amax(0) < 0.5).numpy())
    assert abs(dark[1].mean() + 0.5 - x) < 1 and abs(dark[0].mean() + 0.5 - y) < 1


def test_pad_and_crop_round_trip():
    place = Placement.fit((30, 60), (64, 64))
    x = torch.rand(2, *place.fitted)
    padded = place.pad(x, value=0.0)
    assert padded.shape == (2, 64, 64) and torch.equal(place.crop(padded), x)
    assert padded[:, : place.offset[0]].eq(0).all()
    replicated = place.pad(x, mode="replicate")
    assert torch.equal(replicated[:, 0], x[:, 0]) and torch.equal(replicated[:, -1], x[:, -1])


# --- pose: aspect kept, sizes refused, face weights refused ---------------------------------------------


def test_pose_transfer_of_a_non_square_target_keeps_its_aspect():
    gen = RecordingGenerator()
    ref = torch.zeros(3, 200, 300)  # black person on a 300x200 (W x H) photo
    rng = np.random.default_rng(0)
    kps = Keypoints(np.stack([rng.uniform(20, 280, 18), rng.uniform(20, 180, 18)], 1), (200, 300))
    out = PoseTransfer(gen, ref, kps)(kps)
    assert out.shape == (3, 171, 256)  # 300x200 -> 256x171: the same aspect ratio
    assert out.max() < 0.05  # the crop holds the photo, none of the white padding
    query = gen.calls[0]["query"][0]
    assert torch.all(query[:3, :42] == 0) and torch.all(query[:3, 42 + 171:] == 0)  # nothing drawn in the padding
    assert torch.all(gen.calls[0]["ref_image"][0, :, :42] == 1)  # white padding


@pytest.fixture
def pose_files(tmp_path, monkeypatch):
    """ref.png (300x200) + keypoints, a target keypoint file; `dynast pose` runs a recording stand-in."""
    monkeypatch.chdir(tmp_path)
    _save(tmp_path / "ref.png", 200, 300)
    subset = " ".join([str(i) for i in range(18)] + ["30", "18"])
    for name, seed in (("ref", 0), ("target", 1)):
        rng = np.random.default_rng(seed)
        rows = np.stack([rng.uniform(2, 298, 18), rng.uniform(2, 198, 18), np.ones(18), np.arange(18)], axis=1)
        np.savetxt(tmp_path / f"{name}_candidate.txt", rows)
        (tmp_path / f"{name}_subset.txt").write_text(subset)
    gen = RecordingGenerator()
    monkeypatch.setattr(pose_pipeline, "load_pose_generator", lambda weights, device: gen)
    return tmp_path


def test_cli_pose_output_keeps_the_target_aspect(pose_files):
    code, lines, _ = invoke("pose", "ref.png", "target_candidate.txt", "-o", "out.png", "--save-pose", "pose.png")
    assert code == 0, lines
    assert Image.open("out.png").size == (256, 171) and Image.open("pose.png").size == (256, 171)


@pytest.mark.parametrize("h, w, message", [
    (1, 1, "ref.png: is 1x1; the smallest side must be at least 32 px"),
    (20, 300, "ref.png: is 300x20; the smallest side must be at least 32 px"),
    (100, 10000, "ref.png: is 10000x100, which fitting it into the model's 256x256 input makes 256x3; "
                 "the smallest side must be at least 32 px (an aspect ratio of at most 8:1)"),
])
def test_cli_pose_refuses_tiny_or_extreme_references(pose_files, h, w, message):
    _save(pose_files / "ref.png", h, w)
    (pose_files / "ref_candidate.txt").unlink()  # the reference's frame is the photo's: see the target's below
    (pose_files / "ref_subset.txt").unlink()
    code, lines, caught = invoke("pose", "ref.png", "target_candidate.txt", "--reference-pose", "target_candidate.txt",
                                 "-o", "out.png")
    assert code == 2 and lines == [f"error: {message}"]
    assert not (pose_files / "out.png").exists() and not any("var()" in m for m in caught)


def test_cli_pose_refuses_an_extreme_keypoint_frame(pose_files):
    _save(pose_files / "target.png", 1000, 50)  # the image beside the keypoints gives their frame
    code, lines, _ = invoke("pose", "ref.png", "target_candidate.txt", "-o", "out.png")
    assert code == 2 and lines == ["error: target_candidate.txt: has a 50x1000 frame, which fitting it into the "
                                   "model's 256x256 input makes 13x256; the smallest side must be at least 32 px "
                                   "(an aspect ratio of at most 8:1)"]
    assert not (pose_files / "out.png").exists()


def _dynast_file(path, semantic_nc: int):
    """A safetensors file with a DynaST config for ``semantic_nc`` channels (a placeholder tensor: the task
    check reads the metadata alone)."""
    config = DynastConfig(semantic_nc=semantic_nc)
    save_weights({"placeholder": torch.zeros(1)}, path, {"architecture": "dynast", "config": config.to_json()})
    return path


def test_cli_pose_refuses_face_weights_and_face_refuses_pose_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _save(tmp_path / "ref.png", 64, 48)
    _save(tmp_path / "face.png", 48, 48)
    rows = np.stack([np.linspace(2, 46, 18), np.linspace(2, 62, 18), np.ones(18), np.arange(18)], axis=1)
    np.savetxt(tmp_path / "ref_candidate.txt", rows)
    (tmp_path / "ref_subset.txt").write_text(" ".join([str(i) for i in range(18)] + ["30", "18"]))
    _dynast_file(tmp_path / "faces.safetensors", 15)
    _dynast_file(tmp_path / "poses.safetensors", 20)
    code, lines, _ = invoke("pose", "ref.png", "ref_candidate.txt", "-o", "out.png", "--weights", "faces.safetensors",
                            "--device", "cpu")
    assert code == 3 and lines == ["error: faces.safetensors: is an edge-to-face model (15 input channels); "
                                   "pose needs a 20-channel pose model"]
    code, lines, _ = invoke("face", "face.png", "face.png", "-o", "out.png", "--weights", "poses.safetensors",
                            "--device", "cpu")
    assert code == 3 and lines == ["error: poses.safetensors: is a pose model (20 input channels); "
                                   "face needs a 15-channel edge-to-face model"]
    assert not (tmp_path / "out.png").exists()


def test_task_check_on_a_real_small_model_and_on_generator_objects(tmp_path):
    from dynast_cli.models.dynast import DynastGenerator

    config = DynastConfig(ngf=4, max_multi=2, n_layers=1, top_k=3, pos_dim=4, prune_dim=4, semantic_nc=15, crop_size=32)
    gen = DynastGenerator(config)
    path = tmp_path / "small_face.safetensors"
    save_weights({k: v.clone() for k, v in gen.state_dict().items()}, path,
                 {"architecture": "dynast", "config": config.to_json()})
    with pytest.raises(WeightsError, match=r"small_face.safetensors: is an edge-to-face model \(15 input channels\)"):
        pose_pipeline.load_pose_generator(path, torch.device("cpu"))
    assert face_pipeline.load_face_generator(path, torch.device("cpu")).config.semantic_nc == 15
    with pytest.raises(WeightsError, match=r"^the generator is an edge-to-face model"):
        pose_pipeline.check_generator_task(gen, 20)
    pose_pipeline.check_generator_task(RecordingGenerator(), 20)  # a stand-in without a config passes


# --- face: aspect kept, sizes refused ------------------------------------------------------------------


def test_fitted_face_input_of_a_square_photo_is_the_official_one(tmp_path, shared_data):
    path = _save(tmp_path / "sq.png", 300, 300)
    fitted, place = face_pipeline.fitted_face_input(path)
    assert place.offset == (0, 0) and torch.equal(fitted, face_pipeline.face_input(path))
    photo = sorted((shared_data / "face" / "celebahqedge" / "CelebA-HQ-img").glob("*.jpg"))[0]  # with part masks
    fitted, place = face_pipeline.fitted_face_input(photo)
    assert fitted[14].sum() > 0 and torch.equal(fitted, face_pipeline.face_input(photo))


def test_cli_face_end_to_end_with_a_tiny_dynast_keeps_the_aspect(tmp_path, monkeypatch):
    from dynast_cli.models.dynast import DynastGenerator

    config = DynastConfig(ngf=4, max_multi=2, n_layers=1, top_k=2, pos_dim=2, prune_dim=2, semantic_nc=15)
    save_weights({k: v.clone() for k, v in DynastGenerator(config).state_dict().items()}, tmp_path / "tiny.safetensors",
                 {"architecture": "dynast", "config": config.to_json()})
    monkeypatch.chdir(tmp_path)
    _save(tmp_path / "exemplar.png", 64, 64, seed=4)
    _save(tmp_path / "edges.png", 300, 200, value=30, seed=5)  # 200 wide, 300 high
    code, lines, caught = invoke("face", "exemplar.png", "edges.png", "-o", "out.png", "--weights", "tiny.safetensors",
                                 "--device", "cpu")
    assert code == 0, lines
    assert Image.open(tmp_path / "out.png").size == (171, 256) and not any("var()" in m for m in caught)


def test_run_face_keeps_the_edge_image_aspect(tmp_path):
    gen = RecordingGenerator()
    exemplar = _save(tmp_path / "exemplar.png", 100, 60, seed=1)  # portrait exemplar
    edges = _save(tmp_path / "edges.png", 200, 300, value=30, seed=2)  # landscape structure
    written = face_pipeline.run_face(exemplar, edges, tmp_path / "out.png", save_edges=tmp_path / "e.png",
                                     generator=gen)
    assert written == [tmp_path / "e.png", tmp_path / "out.png"]
    assert Image.open(tmp_path / "out.png").size == (256, 171) and Image.open(tmp_path / "e.png").size == (256, 171)
    (call,) = gen.calls
    query, ref_image = call["query"][0], call["ref_image"][0]
    assert query.shape == (15, 256, 256)
    assert query[0, :42].sum() == 0 and query[0, 42:213].sum() > 0  # no edges in the padding
    ex = Placement.fit((100, 60))  # 154 wide, centred: 51 columns of padding on the left
    assert ex.fitted == (256, 154) and ex.offset == (0, 51)
    assert torch.equal(ref_image[:, :, 0], ref_image[:, :, 51])  # the exemplar's border repeated
    edges_only = face_pipeline.run_face(exemplar, edges, tmp_path / "o2.png", generator=gen, method="image")
    assert Image.open(edges_only[0]).size == (256, 171)


@pytest.mark.parametrize("exemplar_hw, edges_hw, bad, message", [
    ((8, 8), (64, 64), "exemplar.png", "is 8x8; the smallest side must be at least 32 px"),
    ((64, 64), (1000, 50), "edges.png", "is 50x1000, which fitting it into the model's 256x256 input makes 13x256; "
                                        "the smallest side must be at least 32 px (an aspect ratio of at most 8:1)"),
])
def test_cli_face_refuses_tiny_or_extreme_images(tmp_path, monkeypatch, exemplar_hw, edges_hw, bad, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(face_pipeline, "load_face_generator", lambda weights, device: RecordingGenerator())
    _save(tmp_path / "exemplar.png", *exemplar_hw)
    _save(tmp_path / "edges.png", *edges_hw, value=30, seed=3)
    for source in ("canny", "image"):
        code, lines, _ = invoke("face", "exemplar.png", "edges.png", "-o", "out.png", "--edges", source)
        assert code == 2 and lines == [f"error: {bad}: {message}"]
        assert not (tmp_path / "out.png").exists()


# --- style: the minimum size ---------------------------------------------------------------------------


@pytest.mark.parametrize("content_hw, style_hw, extra, message", [
    ((64, 64), (1, 1), (), "s.png: is 1x1; the smallest side must be at least 17 px"),
    ((16, 16), (64, 64), (), "c.png: is 16x16; the smallest side must be at least 17 px"),
    ((64, 128), (64, 64), ("--max-size", "20"), "c.png: is 128x64, which --max-size 20 makes 20x10; "
                                                  "the smallest side must be at least 17 px"),
    ((40, 200), (64, 64), ("--size", "60"), "c.png: is 200x40, which --size 60 makes 60x12; "
                                             "the smallest side must be at least 17 px"),
    ((64, 64), (20, 1000), (), "s.png: is 1000x20, which --style-size 512 makes 512x10; "
                               "the smallest side must be at least 17 px"),
])
def test_cli_style_refuses_tiny_images_without_torch_warnings(stand_ins, tmp_path, content_hw, style_hw, extra,
                                                              message):
    _save(tmp_path / "c.png", *content_hw)
    _save(tmp_path / "s.png", *style_hw, seed=1)
    out = tmp_path / "out.png"
    code, lines, caught = invoke("style", tmp_path / "c.png", tmp_path / "s.png", "-o", out, "-m", "adain", *extra)
    assert code == 2 and lines == [f"error: {tmp_path / message}"]
    assert not out.exists() and not any("degrees of freedom" in m for m in caught)


def test_style_at_the_minimum_size_runs_without_warnings(stand_ins, tmp_path):
    _save(tmp_path / "c.png", 17, 40)
    _save(tmp_path / "s.png", 17, 17, seed=1)
    code, lines, caught = invoke("style", tmp_path / "c.png", tmp_path / "s.png", "-o", tmp_path / "out.png",
                                 "-m", "adain")
    assert code == 0, lines
    assert Image.open(tmp_path / "out.png").size == (40, 17) and not any("degrees of freedom" in m for m in caught)


def test_style_folder_reports_a_tiny_file_and_writes_the_others(stand_ins, tmp_path):
    from dynast_cli.errors import BatchError
    from dynast_cli.pipelines.style import StyleOptions, run_style

    (tmp_path / "in").mkdir()
    _save(tmp_path / "in" / "ok.png", 32, 32)
    _save(tmp_path / "in" / "tiny.png", 4, 4)
    with pytest.raises(BatchError) as info:
        run_style(tmp_path / "in", [_save(tmp_path / "s.png", 32, 32)], tmp_path / "o",
                  StyleOptions(method="adain", device="cpu"))
    assert info.value.report.written == [tmp_path / "o" / "ok.png"]
    (path, message), = info.value.report.failed
    assert path.name == "tiny.png" and message.endswith("tiny.png: is 4x4; the smallest side must be at least 17 px")


def test_min_side_constants():
    assert MIN_SIDE == 32 and 256 // MIN_SIDE == 8
    with pytest.raises(InputError, match=r"x.png: has a 10x40 frame; the smallest side must be at least 32 px"):
        pose_pipeline.check_frame("x.png", (40, 10), keypoints=True)
