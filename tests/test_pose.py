"""Pose inputs and the pose pipeline: keypoint parsing, the official 20-channel pose map, transfer, CLI."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from stand_ins import RecordingGenerator

from dynast_cli.errors import BatchError, InputError, OutputError
from dynast_cli.io.keypoints import BODY25_TO_18, Keypoints, load_keypoints, read_candidate_subset
from dynast_cli.pipelines.pose import (
    PoseTransfer,
    pose_transfer,
    prepare_reference,
    render_pose_map,
    save_pose_png,
)


def deepfashion_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(image, candidate.txt) of every DeepFashion fixture."""
    pairs = []
    for cand in sorted((root / "pose" / "DeepFashion" / "pose").rglob("*_candidate.txt")):
        image = Path(str(cand).replace("/pose/WOMEN", "/img/WOMEN").replace("_candidate.txt", ".jpg"))
        pairs.append((image, cand))
    return pairs


def official_pose_map(image_path: Path, label_path: str, load_size: int = 256) -> np.ndarray:
    """The official DeepFashion get_label_tensor recipe, step by step, at test time (no crop, no flip)."""
    candidate = np.loadtxt(label_path.format("candidate"))
    subset = np.loadtxt(label_path.format("subset"))
    limb_seq = [[2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11], [2, 12], [12, 13],
                [13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18], [3, 17], [6, 18]]
    colors = [[255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0], [0, 255, 0],
              [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255], [85, 0, 255],
              [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85]]
    canvas = np.zeros_like(cv2.imread(str(image_path)))
    for i in range(18):
        index = int(subset[i])
        if index == -1:
            continue
        x, y = candidate[index][0:2]
        cv2.circle(canvas, (int(x), int(y)), 4, colors[i], thickness=-1)
    joints = []
    for i in range(17):
        index = subset[np.array(limb_seq[i]) - 1]
        cur_canvas = canvas.copy()
        if -1 in index:
            joints.append(np.zeros_like(cur_canvas[:, :, 0]))
            continue
        ys = candidate[index.astype(int), 0]
        xs = candidate[index.astype(int), 1]
        length = ((xs[0] - xs[1]) ** 2 + (ys[0] - ys[1]) ** 2) ** 0.5
        angle = math.degrees(math.atan2(xs[0] - xs[1], ys[0] - ys[1]))
        polygon = cv2.ellipse2Poly((int(np.mean(ys)), int(np.mean(xs))), (int(length / 2), 4), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(cur_canvas, polygon, colors[i])
        canvas = cv2.addWeighted(canvas, 0.4, cur_canvas, 0.6, 0)
        joint = np.zeros_like(cur_canvas[:, :, 0])
        cv2.fillConvexPoly(joint, polygon, 255)
        joints.append(cv2.addWeighted(joint, 0.4, joint, 0.6, 0))
    pose = Image.fromarray(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)).resize((load_size, load_size), Image.NEAREST)
    out = [np.asarray(pose, np.float32).transpose(2, 0, 1) / 255]
    for joint in joints:
        dist = np.clip(cv2.distanceTransform(255 - joint, cv2.DIST_L1, 3) / 3, 0, 255).astype(np.uint8)
        dist = Image.fromarray(dist).resize((load_size, load_size), Image.BILINEAR)
        out.append(np.asarray(dist, np.float32)[None] / 255)
    return np.concatenate(out)


# --- the official pose map on the DeepFashion fixtures -------------------------------------------------


def test_pose_maps_match_the_official_recipe(shared_data):
    pairs = deepfashion_pairs(shared_data)
    assert len(pairs) == 8
    for image, cand in pairs:
        kps = load_keypoints(cand)
        assert kps.frame_size == (256, 256)  # found through the pose/ -> img/ mirror
        ours = render_pose_map(kps, (256, 256))
        label = str(cand).replace("_candidate.txt", "_{}.txt")
        expected = official_pose_map(image, label)
        assert ours.shape == (20, 256, 256) and ours.dtype == torch.float32
        np.testing.assert_array_equal(ours.numpy(), expected, err_msg=str(cand))


def test_pose_map_from_a_non_square_frame_matches_the_official_resize(shared_data, tmp_path):
    # The official code draws at the image's own size and stretches to 256x256: check it on a 176-wide frame.
    image, cand = deepfashion_pairs(shared_data)[0]
    frame = tmp_path / "img" / "a.jpg"
    frame.parent.mkdir()
    cv2.imwrite(str(frame), cv2.imread(str(image))[:, 40:216])
    pose_dir = tmp_path / "pose"
    pose_dir.mkdir()
    rows = np.loadtxt(cand)
    rows[:, 0] -= 40
    np.savetxt(pose_dir / "a_candidate.txt", rows)
    (pose_dir / "a_subset.txt").write_text(Path(str(cand).replace("_candidate", "_subset")).read_text())
    kps = load_keypoints(pose_dir / "a_subset.txt")  # either file of the pair
    assert kps.frame_size == (256, 176)
    expected = official_pose_map(frame, str(pose_dir / "a_{}.txt"))
    np.testing.assert_array_equal(render_pose_map(kps, (256, 256)).numpy(), expected)


def test_missing_limbs_are_all_ones_and_present_limbs_are_zero_on_the_limb():
    points = np.full((18, 2), -1.0)
    points[1] = (50, 30)  # neck
    points[2] = (30, 32)  # right shoulder: limb 0 (neck - r-shoulder) exists, nothing else
    pose = render_pose_map(Keypoints(points, (100, 80)), (64, 64))
    assert pose.shape == (20, 64, 64)
    assert torch.all(pose[4:] == 1.0)
    assert pose[3].min() == 0.0 and pose[3].max() < 1.0
    assert pose[:3].amax() > 0  # circles and the limb are drawn


def test_empty_pose_is_black_skeleton_and_unit_distances():
    pose = render_pose_map(Keypoints(np.full((18, 2), -1.0), (40, 30)), (32, 32))
    assert torch.all(pose[:3] == 0) and torch.all(pose[3:] == 1)


def test_save_pose_png_writes_the_skeleton(tmp_path):
    points = np.full((18, 2), -1.0)
    points[0] = (10, 10)
    pose = render_pose_map(Keypoints(points, (32, 32)), (32, 32))
    out = save_pose_png(pose, tmp_path / "pose.png")
    arr = np.asarray(Image.open(out))
    # point 0 is drawn with (255, 0, 0) read as BGR by OpenCV: blue in RGB
    assert arr.shape == (32, 32, 3) and tuple(arr[10, 10]) == (0, 0, 255)


# --- keypoint files ---------------------------------------------------------------------------------


def test_openpose_json_coco18_and_body25(tmp_path):
    rng = np.random.default_rng(1)
    body25 = np.concatenate([rng.uniform(5, 90, (25, 2)), np.ones((25, 1))], axis=1)
    body25[3, 2] = 0  # r-elbow not detected
    other = np.zeros((25, 3))
    other[0] = (1, 1, 0.9)  # a second person with a single point
    path = tmp_path / "frame_keypoints.json"
    path.write_text(json.dumps({"people": [{"pose_keypoints_2d": other.ravel().tolist()},
                                           {"pose_keypoints_2d": body25.ravel().tolist()}]}))
    kps = load_keypoints(path, default_frame_size=(100, 100))
    assert kps.frame_size == (100, 100)
    expected = body25[list(BODY25_TO_18), :2].copy()
    expected[3] = -1
    np.testing.assert_allclose(kps.points, expected)
    assert kps.present.sum() == 17

    coco = np.concatenate([rng.uniform(5, 90, (18, 2)), np.ones((18, 1))], axis=1)
    path.write_text(json.dumps({"people": [{"pose_keypoints_2d": coco.ravel().tolist()}]}))
    Image.new("RGB", (70, 90)).save(tmp_path / "frame.png")  # the image beside gives the frame size
    kps = load_keypoints(path)
    assert kps.frame_size == (90, 70)
    np.testing.assert_allclose(kps.points, coco[:, :2])


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "frame.json: not valid JSON"),
        ('{"people": []}', "frame.json: no person found"),
        ('{"version": 1.3}', "frame.json: not an OpenPose file"),
        ('{"people": [{"pose_keypoints_2d": [1, 2, 3]}]}', "frame.json: people[0].pose_keypoints_2d has 3 numbers"),
    ],
)
def test_bad_json_messages(tmp_path, content, message):
    path = tmp_path / "frame.json"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        load_keypoints(path, default_frame_size=(10, 10))
    assert str(info.value).startswith(str(tmp_path / message))
    assert "\n" not in str(info.value)


def _write_pair(folder: Path, candidate: str, subset: str) -> Path:
    (folder / "x_candidate.txt").write_text(candidate)
    (folder / "x_subset.txt").write_text(subset)
    return folder / "x_candidate.txt"


def test_candidate_subset_parsing(tmp_path):
    subset = " ".join(["1", "0"] + ["-1"] * 16 + ["3.5", "2"])
    path = _write_pair(tmp_path, "10 20 0.9 0\n30 40 0.8 1\n", subset)
    points = read_candidate_subset(path)
    assert points[0].tolist() == [30, 40] and points[1].tolist() == [10, 20]
    assert np.all(points[2:] == -1)


@pytest.mark.parametrize(
    "candidate, subset, message",
    [
        ("10 20 0.9\n", "0 " + "-1 " * 17 + "1 1", "x_candidate.txt: line 1: expected 4 numbers, found 3"),
        ("10 20 0.9 0\n1 2 x 1\n", "0 " + "-1 " * 17 + "1 1", "x_candidate.txt: line 2: not a number"),
        ("10 20 0.9 0\n", "0 -1 1", "x_subset.txt: line 1: expected 20 numbers, found 3"),
        ("10 20 0.9 0\n", "5 " + "-1 " * 17 + "1 1", "x_subset.txt: keypoint 0 refers to candidate 5, but"),
        ("10 20 0.9 0\n", "", "x_subset.txt: no person found"),
        # a nan/inf index crashed with "ValueError: cannot convert float NaN to integer" (exit 70)
        ("10 20 0.9 0\n", "nan " + "-1 " * 17 + "1 1", "x_subset.txt: line 1: holds a value that is not a finite number"),
        ("10 20 0.9 0\n", "0 " + "-1 " * 17 + "inf 1", "x_subset.txt: line 1: holds a value that is not a finite number"),
    ],
)
def test_bad_candidate_subset_messages(tmp_path, candidate, subset, message):
    path = _write_pair(tmp_path, candidate, subset)
    with pytest.raises(InputError) as info:
        load_keypoints(path, default_frame_size=(10, 10))
    assert str(info.value).startswith(str(tmp_path / message)), str(info.value)


@pytest.mark.parametrize("xy", ["nan nan", "-5 -5", "1e9 -1e9", "inf 3"])
def test_keypoints_all_outside_the_frame_or_not_numbers_are_no_person(tmp_path, xy):
    """They drew a blank pose map and the tool still wrote a picture (exit 0); one bad point among good
    ones is only a keypoint not detected."""
    subset = " ".join(["0", "1"] + ["-1"] * 16 + ["2", "2"])
    path = _write_pair(tmp_path, f"{xy} 0.9 0\n{xy} 0.9 1\n", subset)
    with pytest.raises(InputError) as info:
        load_keypoints(path, default_frame_size=(40, 30))
    assert str(info.value) == f"{tmp_path / 'x_candidate.txt'}: no person found (no keypoint inside its 30x40 frame)"
    path = _write_pair(tmp_path, f"{xy} 0.9 0\n10 20 0.9 1\n", subset)
    kps = load_keypoints(path, default_frame_size=(40, 30))
    assert kps.points[1].tolist() == [10, 20] and kps.points[0].tolist() == ([-1, -1] if "n" in xy else
                                                                            [float(v) for v in xy.split()])


def test_an_unreadable_image_beside_the_keypoints_is_named(tmp_path):
    """The frame size comes from the image beside the keypoint file; a corrupt one ended in exit 70
    ("UnidentifiedImageError: cannot identify image file")."""
    path = _write_pair(tmp_path, "10 20 0.9 0\n", "0 " + "-1 " * 17 + "1 1")
    (tmp_path / "x.jpg").write_bytes(b"junk")
    with pytest.raises(InputError) as info:
        load_keypoints(path)
    assert str(info.value) == f"{tmp_path / 'x.jpg'}: cannot read the image these keypoints refer to (not an image)"


def test_a_pair_list_that_is_not_text_is_named(tmp_path):
    """A binary --pairs file crashed with UnicodeDecodeError (exit 70)."""
    from dynast_cli.train.pose_data import read_pair_list

    path = tmp_path / "pairs.txt"
    path.write_bytes(b"\xff\xfe\x00a,b\n")
    with pytest.raises(InputError, match=r"pairs.txt: not a text file"):
        read_pair_list(path)


def test_missing_partner_and_unknown_frame(tmp_path):
    (tmp_path / "x_candidate.txt").write_text("10 20 0.9 0\n")
    with pytest.raises(InputError, match=r"x_subset.txt: no such file"):
        load_keypoints(tmp_path / "x_candidate.txt", default_frame_size=(10, 10))
    (tmp_path / "x_subset.txt").write_text("0 " + "-1 " * 17 + "1 1")
    with pytest.raises(InputError, match=r"cannot tell the size of the image"):
        load_keypoints(tmp_path / "x_candidate.txt")
    with pytest.raises(InputError, match=r"unknown keypoint format"):
        (tmp_path / "pose.csv").write_text("1,2")
        load_keypoints(tmp_path / "pose.csv")


def test_photo_without_mediapipe_says_how_to_install(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mediapipe(name, *args, **kwargs):
        if name == "mediapipe":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mediapipe)
    Image.new("RGB", (20, 20)).save(tmp_path / "person.jpg")
    with pytest.raises(InputError, match=r"person.jpg: .*pip install 'dynast-cli\[mediapipe\]'"):
        load_keypoints(tmp_path / "person.jpg")


# --- the transfer itself ----------------------------------------------------------------------------


def _kps(frame: tuple[int, int], seed: int) -> Keypoints:
    rng = np.random.default_rng(seed)
    h, w = frame
    return Keypoints(np.stack([rng.uniform(0, w, 18), rng.uniform(0, h, 18)], axis=1), frame)


def test_pose_transfer_feeds_the_generator_the_official_inputs():
    # Frames at the model size (the official 256x256 DeepFashion case): exactly the official maps.
    gen = RecordingGenerator()
    ref = torch.rand(3, 64, 64)  # the image is resized to its keypoints' frame
    ref_kps, target_kps = _kps((32, 32), 0), _kps((32, 32), 1)
    out = pose_transfer(gen, ref, ref_kps, target_kps, size=(32, 32))
    (call,) = gen.calls
    assert torch.equal(call["query"][0], render_pose_map(target_kps, (32, 32)))
    assert torch.equal(call["ref_semantics"][0], render_pose_map(ref_kps, (32, 32)))
    assert torch.equal(call["ref_image"][0], prepare_reference(ref, (32, 32)))
    assert call["ref_image"].min() >= -1 and call["ref_image"].max() <= 1
    assert out.shape == (3, 32, 32)
    torch.testing.assert_close(out, (call["ref_image"][0] + 1) / 2)


def test_larger_frames_are_drawn_at_the_model_scale():
    # A 64x64 frame for a 32x32 model: the keypoints are scaled (x * 32 / 64) and drawn on the
    # canvas itself, so limbs keep their official thickness at the model scale.
    gen = RecordingGenerator()
    target_kps = _kps((64, 64), 1)
    pose_transfer(gen, torch.rand(3, 64, 64), _kps((64, 64), 0), target_kps, size=(32, 32))
    scaled = Keypoints(target_kps.points / 2, (32, 32))
    assert torch.equal(gen.calls[0]["query"][0], render_pose_map(scaled, (32, 32)))


def test_non_square_frames_are_padded_white_and_cropped_back():
    gen = RecordingGenerator()
    ref = torch.zeros(3, 64, 44)  # black person, 64x44 frame
    transfer = PoseTransfer(gen, ref, _kps((64, 44), 0), size=(32, 32))
    out = transfer(_kps((64, 44), 1))
    padded = gen.calls[0]["ref_image"][0]
    assert torch.all(padded[:, :, :4] == 1) and torch.all(padded[:, :, -4:] == 1)  # white side bands
    assert padded[:, :, 6:-6].max() < -0.9
    assert out.shape == (3, 32, 22)
    assert out[:, :, 1:-1].max() < 0.1  # the crop keeps the (black) frame, not the white padding


# --- files in, files out, and the CLI ---------------------------------------------------------------

from typer.testing import CliRunner  # noqa: E402

import dynast_cli.cli  # noqa: E402,F401  (registers the subcommands)
from dynast_cli.cli.app import app  # noqa: E402
from dynast_cli.pipelines import pose as pose_pipeline  # noqa: E402


@pytest.fixture
def pose_files(tmp_path):
    """A 64x48 reference photo with its _candidate/_subset pair and a folder of three target poses."""
    Image.fromarray(np.full((64, 48, 3), 200, np.uint8)).save(tmp_path / "ref.png")
    subset = " ".join([str(i) for i in range(18)] + ["30", "18"])
    for name, seed in [("ref", 0), ("poses/f1", 1), ("poses/f2", 2), ("poses/f10", 3)]:
        rng = np.random.default_rng(seed)
        rows = np.stack([rng.uniform(2, 46, 18), rng.uniform(2, 62, 18), np.ones(18), np.arange(18)], axis=1)
        (tmp_path / name).parent.mkdir(exist_ok=True)
        np.savetxt(tmp_path / f"{name}_candidate.txt", rows)
        (tmp_path / f"{name}_subset.txt").write_text(subset)
    return tmp_path


def test_run_pose_sequence_to_frames_video_and_pose_pngs(pose_files):
    gen = RecordingGenerator()
    written = pose_pipeline.run_pose(
        pose_files / "ref.png", pose_files / "poses", pose_files / "out", save_pose=pose_files / "maps", generator=gen
    )
    names = [p.relative_to(pose_files).as_posix() for p in written]
    assert names == ["maps/f1.png", "out/f1.png", "maps/f2.png", "out/f2.png", "maps/f10.png", "out/f10.png"]
    assert len(gen.calls) == 3
    assert Image.open(pose_files / "out" / "f1.png").size == (192, 256)  # the 3:4 frame at the 256 model scale
    video = pose_pipeline.run_pose(pose_files / "ref.png", pose_files / "poses", pose_files / "out.avi", generator=gen)
    cap = cv2.VideoCapture(str(video[0]))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert count == 3


def _break_f2(pose_files):
    (pose_files / "poses" / "f2_candidate.txt").write_text("1 2 3 4\n5 6 7\n")


def test_a_folder_of_frames_goes_on_past_a_bad_pose_file(pose_files):
    _break_f2(pose_files)
    gen = RecordingGenerator()
    with pytest.raises(BatchError) as info:
        pose_pipeline.run_pose(pose_files / "ref.png", pose_files / "poses", pose_files / "out",
                               save_pose=pose_files / "maps", generator=gen)
    message = str(info.value)
    assert message.startswith("1 of 3 file(s) failed: ") and "f2_candidate.txt: line 2: expected 4 numbers" in message
    assert "\n" not in message and info.value.exit_code == 5
    names = [p.relative_to(pose_files).as_posix() for p in info.value.written]
    assert names == ["maps/f1.png", "out/f1.png", "maps/f10.png", "out/f10.png"]
    assert sorted(p.name for p in (pose_files / "out").iterdir()) == ["f1.png", "f10.png"]
    assert sorted(p.name for p in (pose_files / "maps").iterdir()) == ["f1.png", "f10.png"]
    assert len(gen.calls) == 2


def test_a_frame_that_cannot_be_written_is_that_target_s_failure(pose_files, monkeypatch):
    _break_f2(pose_files)
    save = pose_pipeline.save_image

    def failing_save(image, path):
        if path.parent.name == "out" and path.name == "f1.png":
            raise OutputError("cannot write (No space left on device)", path)
        return save(image, path)

    monkeypatch.setattr(pose_pipeline, "save_image", failing_save)
    with pytest.raises(BatchError) as info:
        pose_pipeline.run_pose(pose_files / "ref.png", pose_files / "poses", pose_files / "out",
                               save_pose=pose_files / "maps", generator=RecordingGenerator())
    message = str(info.value)
    assert message.startswith("2 of 3 file(s) failed: ")
    # in the folder's order: f1's write error first, then f2's bad pose file
    assert message.index("out/f1.png: cannot write") < message.index("f2_candidate.txt: line 2")
    assert [p.relative_to(pose_files).as_posix() for p in info.value.written] == ["maps/f10.png", "out/f10.png"]
    assert sorted(p.name for p in (pose_files / "maps").iterdir()) == ["f10.png"]  # f1's map is not left


def test_a_video_of_poses_is_refused_whole_for_a_bad_pose_file(pose_files):
    _break_f2(pose_files)
    gen = RecordingGenerator()
    with pytest.raises(InputError, match="f2_candidate.txt: line 2"):
        pose_pipeline.run_pose(pose_files / "ref.png", pose_files / "poses", pose_files / "out.avi", generator=gen)
    assert not gen.calls and not (pose_files / "out.avi").exists()


def test_a_folder_of_only_bad_pose_files_writes_nothing(pose_files):
    for name in ("f1", "f2", "f10"):
        (pose_files / "poses" / f"{name}_candidate.txt").write_text("x y\n")
    with pytest.raises(BatchError, match="^3 of 3 file"):
        pose_pipeline.run_pose(pose_files / "ref.png", pose_files / "poses", pose_files / "out",
                               generator=RecordingGenerator())
    assert not (pose_files / "out").exists()


def test_cli_lists_the_frames_written_then_names_the_bad_pose_file(pose_files, monkeypatch):
    _break_f2(pose_files)
    monkeypatch.chdir(pose_files)
    monkeypatch.setattr(pose_pipeline, "load_pose_generator", lambda weights, device: RecordingGenerator())
    monkeypatch.setattr(pose_pipeline, "check_generator_task", lambda generator, channels: None)
    monkeypatch.setattr(pose_pipeline, "prepare_generator", lambda generator, *args: generator)
    result = CliRunner().invoke(app, ["pose", "ref.png", "poses", "-o", "out"])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 5
    assert lines == ["wrote out/f1.png", "wrote out/f10.png",
                     "error: 1 of 3 file(s) failed: poses/f2_candidate.txt: line 2: expected 4 numbers, found 3"]


def test_cli_errors_are_one_line_with_exit_codes(pose_files, monkeypatch):
    monkeypatch.chdir(pose_files)
    monkeypatch.setattr(pose_pipeline, "default_weights_path", lambda: None)  # whatever weights/ holds
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, ["pose", *map(str, args)])
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        return result.exit_code, lines

    code, lines = run("missing.png", "poses")
    assert code == 2 and lines == ["error: missing.png: no such file"]
    code, lines = run("ref.png", "nowhere")
    assert code == 2 and lines == ["error: nowhere: no such file or folder"]
    (pose_files / "bad_candidate.txt").write_text("1 2 3 4\n5 6 7\n")
    (pose_files / "bad_subset.txt").write_text("0 " + "-1 " * 17 + "1 1")
    code, lines = run("ref.png", "bad_candidate.txt")
    assert code == 2 and lines == ["error: bad_candidate.txt: line 2: expected 4 numbers, found 3"]
    code, lines = run("ref.png", "poses/f1_candidate.txt")
    assert code == 3 and len(lines) == 1
    assert "latest_net_G.pth" in lines[0]
    assert "dynast convert dynast latest_net_G.pth -o weights/dynast_deepfashion.safetensors" in lines[0]
    (pose_files / "taken.png").write_bytes(b"x")
    code, lines = run("ref.png", "poses/f1_candidate.txt", "-o", "taken.png")
    assert code == 4 and lines == ["error: taken.png: already exists (pass --overwrite to replace it)"]


def test_default_weights_are_found_in_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "dynast_deepfashion.safetensors").write_bytes(b"")
    assert pose_pipeline.default_weights_path() == Path("weights/dynast_deepfashion.safetensors")


@pytest.mark.slow  # a 256x256 DynaST forward: ~30 s on a shared 2-core CPU
def test_cli_end_to_end_with_a_tiny_dynast_generator(pose_files, monkeypatch):
    dynast = pytest.importorskip("dynast_cli.models.dynast", reason="models/dynast.py is not written yet")
    from dynast_cli.weights.io import save_weights

    config = dynast.DynastConfig(ngf=4, max_multi=2, pos_dim=4, prune_dim=4)  # 256 crop, tiny widths
    gen = dynast.DynastGenerator(config)
    tensors = {k: v.clone() for k, v in gen.state_dict().items()}  # PReLU weights are shared tensors
    save_weights(tensors, pose_files / "tiny.safetensors", {"architecture": "dynast", "config": config.to_json()})
    monkeypatch.chdir(pose_files)
    result = CliRunner().invoke(app, ["pose", "ref.png", "poses/f1_candidate.txt", "-o", "out.png",
                                      "--weights", "tiny.safetensors", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert Image.open(pose_files / "out.png").size == (192, 256)


class _CrashingPose:
    """MediaPipe's pose solution, faked: a bright photo crashes its graph, which raises again when closed (as
    MediaPipe's does); a dark one gives 33 landmarks."""

    def __init__(self, **kwargs):
        self.failure = None

    def process(self, image):
        if image.mean() > 128:
            self.failure = RuntimeError("CalculatorGraph::Run() failed in Run: \nCalculator::Process() for node")
            raise self.failure
        rng = np.random.default_rng(0)
        marks = [SimpleNamespace(x=x, y=y, visibility=1.0) for x, y in rng.uniform(0.1, 0.9, (33, 2))]
        return SimpleNamespace(pose_landmarks=SimpleNamespace(landmark=marks))

    def close(self):
        if self.failure is not None:
            raise self.failure


def test_a_mediapipe_crash_on_one_photo_is_that_photo_s_failure(pose_files, monkeypatch):
    fake = SimpleNamespace(solutions=SimpleNamespace(pose=SimpleNamespace(Pose=_CrashingPose)))
    monkeypatch.setitem(sys.modules, "mediapipe", fake)
    photos = pose_files / "photos"
    photos.mkdir()
    Image.fromarray(np.full((64, 48, 3), 40, np.uint8)).save(photos / "a.png")
    Image.fromarray(np.full((64, 48, 3), 220, np.uint8)).save(photos / "b.png")
    gen = RecordingGenerator()
    with pytest.raises(BatchError) as info:
        pose_pipeline.run_pose(pose_files / "ref.png", photos, pose_files / "out", generator=gen)
    message = str(info.value)
    assert message.startswith("1 of 2 file(s) failed: ")
    assert "b.png: MediaPipe failed on this photo (RuntimeError: " in message
    assert "\n" not in message
    assert [p.name for p in info.value.written] == ["a.png"] and len(gen.calls) == 1
