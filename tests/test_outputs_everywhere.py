"""Every writing command checks its outputs before any work (issue #14): an output under a regular file,
in a folder that cannot be written, or that exists without --overwrite is one `error:` line naming the
path, exit 4, and no model is built, no frame read, no checkpoint converted, nothing written.
Also: `dynast bench` stopped by Ctrl-C prints the rows measured so far (exit 130), and a `state.pt`
missing a key is a one-line WeightsError."""

from __future__ import annotations

from pathlib import Path

import os

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import dynast_cli.io.outputs as outputs
from stand_ins import one_error_line
from dynast_cli.cli import app
from dynast_cli.errors import OutputError, WeightsError
from conftest import make_image, make_image_folder

runner = CliRunner()
EXISTS = "already exists (pass --overwrite to replace it)"


def _never(*args, **kwargs):
    raise AssertionError("the work ran although an output was unusable")


def _listing(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A working folder with inputs for every command, a regular file ``a_file`` where a folder would be
    needed, a folder ``ro`` whose write probe fails (as on a read-only mount: chmod does not stop root),
    and every heavy step of every command replaced by :func:`_never`."""
    monkeypatch.chdir(tmp_path)
    Image.fromarray(make_image(40, 48, 1)).save("c.png")
    Image.fromarray(make_image(40, 48, 2)).save("s.png")
    make_image_folder(tmp_path, "contents", 2)
    make_image_folder(tmp_path, "frames", 3, 32, 32)
    _pose_files(tmp_path)
    Path("official").mkdir()
    Path("latest_net_G.pth").write_bytes(b"never read")
    Path("a_file").write_text("keep me\n")
    Path("ro").mkdir()
    real = outputs._probe
    monkeypatch.setattr(outputs, "_probe", lambda f: "Read-only file system" if Path(f).resolve() ==
                        (tmp_path / "ro").resolve() else real(f))

    from dynast_cli.pipelines import face, pose, style, video
    from dynast_cli.weights import convert, convert_dynast

    for module, name in [
        (style, "build_method"), (style, "stylize"),
        (face, "load_image"), (face, "load_face_generator"),
        (pose, "load_image"), (pose, "load_pose_generator"),
        (video, "video_method"), (video, "stylize_frames"), (video, "WarpingError"),
        (convert, "load_torch_checkpoint"), (convert, "convert_adaattn"), (convert, "convert_stya2k"),
        (convert_dynast, "load_torch_checkpoint"),
    ]:
        monkeypatch.setattr(module, name, _never)
    return tmp_path


def _pose_files(root: Path) -> None:
    subset = " ".join([str(i) for i in range(18)] + ["30", "18"])
    Image.fromarray(np.full((64, 48, 3), 200, np.uint8)).save(root / "ref.png")
    for name, seed in [("ref", 0), ("poses/f1", 1), ("poses/f2", 2)]:
        rng = np.random.default_rng(seed)
        rows = np.stack([rng.uniform(2, 46, 18), rng.uniform(2, 62, 18), np.ones(18), np.arange(18)], axis=1)
        (root / name).parent.mkdir(exist_ok=True)
        np.savetxt(root / f"{name}_candidate.txt", rows)
        (root / f"{name}_subset.txt").write_text(subset)


# command -> (arguments before the output, output file name, arguments after it)
FILE_OUTPUTS = {
    "style file": (["style", "c.png", "s.png", "-m", "adain", "-o"], "x.png", []),
    "face": (["face", "c.png", "s.png", "-o"], "x.png", []),
    "face --save-edges": (["face", "c.png", "s.png", "-o", "fine.png", "--save-edges"], "edges.png", []),
    "pose image": (["pose", "ref.png", "poses/f1_candidate.txt", "-o"], "x.png", []),
    "pose .mp4": (["pose", "ref.png", "poses", "-o"], "x.mp4", []),
    "pose --save-pose": (["pose", "ref.png", "poses/f1_candidate.txt", "-o", "fine.png", "--save-pose"], "p.png", []),
    "video .mp4": (["video", "frames", "s.png", "-m", "adain", "-o"], "x.mp4", []),
    "eval video": (["eval", "video", "frames", "s.png", "--methods", "adain", "-o"], "t.json", []),
    "convert adaattn": (["convert", "adaattn", "official", "-o"], "x.safetensors", []),
    "convert stya2k": (["convert", "stya2k", "official", "-o"], "x.safetensors", []),
    "convert dynast": (["convert", "dynast", "latest_net_G.pth", "-o"], "x.safetensors", []),
}
# outputs that are folders
FOLDER_OUTPUTS = {
    "style folder": ["style", "contents", "s.png", "-m", "adain", "-o"],
    "pose frames": ["pose", "ref.png", "poses", "-o"],
    "video frames": ["video", "frames", "s.png", "-m", "adain", "-o"],
}


@pytest.mark.parametrize("command", FILE_OUTPUTS)
def test_a_file_output_under_a_regular_file_fails_before_any_work(work, command):
    before, name, after = FILE_OUTPUTS[command]
    files = _listing(work)
    for output in (f"a_file/{name}", f"a_file/deeper/{name}"):
        res = runner.invoke(app, [*before, output, *after])
        one_error_line(res, "a_file: is a file, not a folder")
    assert _listing(work) == files


@pytest.mark.parametrize("command", FILE_OUTPUTS)
def test_a_file_output_in_an_unwritable_folder_fails_before_any_work(work, command):
    before, name, after = FILE_OUTPUTS[command]
    files = _listing(work)
    res = runner.invoke(app, [*before, f"ro/{name}", *after])
    one_error_line(res, "ro: folder is not writable (Read-only file system)")
    res = runner.invoke(app, [*before, f"ro/new/{name}", *after])
    one_error_line(res, "ro/new: folder cannot be created")
    assert _listing(work) == files


@pytest.mark.parametrize("command", FILE_OUTPUTS)
def test_an_existing_file_output_is_kept_without_overwrite(work, command):
    before, name, after = FILE_OUTPUTS[command]
    Path(name).write_bytes(b"earlier result")
    files = _listing(work)
    res = runner.invoke(app, [*before, name, *after])
    one_error_line(res, f"{name}: {EXISTS}")
    assert _listing(work) == files


@pytest.mark.parametrize("command", FOLDER_OUTPUTS)
def test_a_folder_output_under_a_regular_file_or_unwritable_fails_before_any_work(work, command):
    args = FOLDER_OUTPUTS[command]
    files = _listing(work)
    for output in ("a_file/out", "a_file"):
        res = runner.invoke(app, [*args, output])
        one_error_line(res, "a_file", "not a folder")
    one_error_line(runner.invoke(app, [*args, "ro"]), "ro: folder is not writable")
    one_error_line(runner.invoke(app, [*args, "ro/out"]), "ro/out: folder cannot be created")
    assert _listing(work) == files


def test_style_folder_refuses_an_existing_output_file_before_any_work(work):
    Path("outs").mkdir()
    Path("outs/img1.png").write_bytes(b"earlier result")
    files = _listing(work)
    res = runner.invoke(app, ["style", "contents", "s.png", "-m", "adain", "-o", "outs"])
    one_error_line(res, f"outs/img1.png: {EXISTS}")
    assert _listing(work) == files  # img0.png not written either: no partial batch


# command -> (its arguments, the output that is also one of its inputs), each with --overwrite
INPUT_AS_OUTPUT = {
    "style: the content": (["style", "c.png", "s.png", "-m", "adain", "-o"], "c.png"),
    "style: the style, by another path": (["style", "c.png", "s.png", "-m", "adain", "-o"], "contents/../s.png"),
    "style folder: into itself": (["style", "contents", "s.png", "-m", "adain", "-o"], "contents"),
    "face: the exemplar": (["face", "c.png", "s.png", "-o"], "c.png"),
    "face --save-edges: the edges": (["face", "c.png", "s.png", "-o", "fine.png", "--save-edges"], "s.png"),
    "pose: the reference": (["pose", "ref.png", "poses/f1_candidate.txt", "-o"], "ref.png"),
    "video: its frame folder": (["video", "frames", "s.png", "-m", "adain", "-o"], "frames"),
    "video: the style": (["video", "frames", "s.png", "-m", "adain", "-o"], "s.png"),
    "video: one of its frames": (["video", "frames", "s.png", "-m", "adain", "-o"], "frames/img1.png"),
    "eval video: the style": (["eval", "video", "frames", "s.png", "--methods", "adain", "-o"], "s.png"),
    "eval video: one of its frames": (["eval", "video", "frames", "s.png", "--methods", "adain", "-o"], "frames/img0.png"),
}


@pytest.mark.parametrize("command", INPUT_AS_OUTPUT)
def test_an_output_that_is_an_input_is_refused_even_with_overwrite(work, command):
    """--overwrite replaces earlier results, never the sources of the run (a content, a style, a frame folder)."""
    args, output = INPUT_AS_OUTPUT[command]
    files = _listing(work)
    res = runner.invoke(app, [*args, output, "--overwrite"])
    one_error_line(res, "is an input of this run", "writing it would replace the source")
    assert _listing(work) == files


def test_an_output_hard_linked_to_an_input_is_refused(work):
    """A hard link (or another case of the name on a case-insensitive disk) is the same file by another path."""
    import os

    os.link("c.png", "linked.png")
    files = _listing(work)
    res = runner.invoke(app, ["style", "c.png", "s.png", "-m", "adain", "-o", "linked.png", "--overwrite"])
    one_error_line(res, "linked.png: is an input of this run (c.png): writing it would replace the source")
    assert _listing(work) == files


def test_two_outputs_on_one_file_are_refused(work):
    """One output would silently replace the other: --save-edges / --save-pose on the output's own path, and
    two contents of a folder that differ only by their extension (both would write a.png)."""
    files = _listing(work)
    res = runner.invoke(app, ["face", "c.png", "s.png", "-o", "out/same.png", "--save-edges", "out/same.png"])
    one_error_line(res, "out/same.png: would be written twice, for the face and for --save-edges")
    res = runner.invoke(app, ["pose", "ref.png", "poses/f1_candidate.txt", "-o", "same.png", "--save-pose",
                              "./same.png"])
    one_error_line(res, "same.png: would be written twice", "--save-pose")
    assert _listing(work) == files
    Image.fromarray(make_image(40, 48, 3)).save("contents/img0.jpg")
    files = _listing(work)
    res = runner.invoke(app, ["style", "contents", "s.png", "-m", "adain", "-o", "out.png"])
    one_error_line(res, "out.png: is an image file name, but contents is a folder of contents: give an output folder")
    for extra in ([], ["--overwrite"], ["--shard", "1/2"]):
        res = runner.invoke(app, ["style", "contents", "s.png", "-m", "adain", "-o", "outs", *extra])
        one_error_line(res, "outs/img0.png: would be written twice, for contents/img0.jpg and for "
                            "contents/img0.png (rename one of them)")
    assert _listing(work) == files


def test_style_folder_writes_into_a_new_folder_and_overwrites_when_asked(tmp_path, stand_ins, monkeypatch):
    """The real pipeline (stand-in networks): the check lets a new folder and --overwrite through."""
    monkeypatch.chdir(tmp_path)
    make_image_folder(tmp_path, "contents", 2)
    Image.fromarray(make_image(40, 48, 2)).save("s.png")
    args = ["style", "contents", "s.png", "-m", "adain", "-o", "new/outs", "--device", "cpu"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in Path("new/outs").iterdir()) == ["img0.png", "img1.png"]
    one_error_line(runner.invoke(app, args), f"new/outs/img0.png: {EXISTS}")
    res = runner.invoke(app, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output


def test_pose_video_into_a_missing_folder_is_written(tmp_path):
    """The check lets a missing folder through (it is created), so the writer must create it."""
    from dynast_cli.pipelines.pose import write_video

    frames = [torch.full((3, 32, 24), v) for v in (0.2, 0.8)]
    path = write_video(frames, tmp_path / "new" / "deeper" / "x.avi", 5.0)
    assert path.is_file() and path.stat().st_size > 0
    assert [p.name for p in path.parent.iterdir()] == ["x.avi"]
    # the usual permissions, not mkstemp's private 0600 (it was -rw------- whatever the umask)
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_the_converters_check_their_output_before_reading(tmp_path):
    from dynast_cli.weights.convert import convert_adaattn, convert_stya2k
    from dynast_cli.weights.convert_dynast import convert_dynast

    blocker = tmp_path / "a_file"
    blocker.write_text("keep me\n")
    missing = tmp_path / "missing.pth"  # would be a WeightsError if it were read first
    for call in (
        lambda out: convert_adaattn(missing, missing, missing, out=out),
        lambda out: convert_stya2k(missing, missing, missing, out=out),
        lambda out: convert_dynast(missing, out),
    ):
        with pytest.raises(OutputError, match="a_file: is a file, not a folder"):
            call(blocker / "x.safetensors")
    assert blocker.read_text() == "keep me\n"


# ---- dynast bench: Ctrl-C -----------------------------------------------------------------------------

def test_bench_ctrl_c_prints_the_rows_measured_so_far_then_exits_130(tmp_path, monkeypatch):
    from dynast_cli import bench

    calls = []

    def measure(fn, device, opts):
        calls.append(1)
        if len(calls) > 2:  # the first row (size 4: fast and naive) is done, the second is interrupted
            raise KeyboardInterrupt
        return bench.Measurement(1.0 * len(calls), 2.0, [1.0], "")

    monkeypatch.setattr(bench, "_measure", measure)
    monkeypatch.setattr(bench, "plot_results", _never)
    out = tmp_path / "b.json"
    res = runner.invoke(app, ["bench", "--kernels", "full", "--sizes", "4,8", "--repeat", "1", "--device", "cpu",
                              "--json", str(out)])
    assert res.exit_code == 130, res.output
    assert "Traceback" not in res.output
    assert "interrupted after 1 row(s)" in res.output
    rows = [line for line in res.output.splitlines() if line.lstrip("│┃ ").startswith("full")]
    assert len(rows) == 1 and "4²" in rows[0] and "2.0x" in rows[0], res.output  # naive 2 ms / fast 1 ms
    assert res.output.rstrip().splitlines()[-1] == "error: interrupted"
    assert not out.exists()  # no partial --json


def test_run_benchmarks_ctrl_c_keeps_the_rows_measured(monkeypatch):
    from dynast_cli import bench

    calls = []

    def measure(fn, device, opts):
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return bench.Measurement(1.0, 1.0, [1.0], "")

    monkeypatch.setattr(bench, "_measure", measure)
    with pytest.raises(KeyboardInterrupt) as info:
        bench.run_benchmarks([bench.CASES["full"]], [4, 8], bench.BenchOptions(device="cpu"))
    assert isinstance(info.value, bench.BenchInterrupted)
    assert [(r.case, r.size) for r in info.value.results] == [("full", 4)]


# ---- a state.pt missing a key -------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["generator", "torch_rng", "cuda_rng", "step", "wall_s", "history", "optimizer"])
def test_a_state_missing_a_key_is_one_line_naming_the_file_and_the_key(tmp_path, key):
    from torch import nn

    from dynast_cli.train.loop import STATE_FILE, TrainResult, load_checkpoint, save_checkpoint

    model = nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters())
    generator = torch.Generator().manual_seed(1)
    save_checkpoint(tmp_path, model, optimizer, generator, TrainResult(step=1, wall_s=0.5, history=[]))
    state_path = tmp_path / STATE_FILE
    state = torch.load(state_path, weights_only=True)
    del state[key]
    torch.save(state, state_path)
    with pytest.raises(WeightsError) as info:
        load_checkpoint(tmp_path, model, optimizer, generator)
    message = str(info.value)
    assert info.value.exit_code == 3 and "\n" not in message
    assert message.startswith(f"{state_path}: ") and f"'{key}'" in message


def test_an_output_ending_in_a_slash_is_a_folder_to_write_into(tmp_path, stand_ins, monkeypatch):
    """`-o out/new/` said "unsupported output format '(none)'" (the slash was dropped on the way)."""
    monkeypatch.chdir(tmp_path)
    Image.fromarray(make_image(40, 48, 1)).save("c.png")
    Image.fromarray(make_image(40, 48, 2)).save("s.png")
    res = runner.invoke(app, ["style", "c.png", "s.png", "-m", "adain", "--device", "cpu", "-o", "out/new/"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == "wrote out/new/c_s.png" and Path("out/new/c_s.png").is_file()
    one_error_line(runner.invoke(app, ["style", "c.png", "s.png", "-m", "adain", "-o", "out/new2"]),
                   "out/new2: has no image suffix (use one of", "end its name with /")
    one_error_line(runner.invoke(app, ["style", "c.png", "s.png", "-m", "adain", "-o", "v1.2"]),
                   "v1.2: '.2' is not an image format (use one of", "end its name with /")


def test_eval_style_refuses_a_result_that_would_replace_one_of_its_images(work):
    """``--content DIR --out DIR`` twice read the first run's grid as a content, then replaced it."""
    import shutil

    shutil.copy("c.png", "contents/style_eval_grid.png")
    files = _listing(work)
    res = runner.invoke(app, ["eval", "style", "--content", "contents", "--style", "s.png", "--methods", "adain",
                              "--out", "contents", "--overwrite"])
    one_error_line(res, "style_eval_grid.png: is an input of this run", "writing it would replace the source")
    assert _listing(work) == files


def test_eval_refuses_images_too_small_to_score(work):
    """A 1x1 content or style gave meaningless scores (palette 0.00, exit 0); ``dynast style`` refuses them."""
    Image.new("RGB", (1, 1), (90, 90, 90)).save("one.png")
    files = _listing(work)
    res = runner.invoke(app, ["eval", "style", "--content", "one.png", "--style", "s.png", "--methods", "adain",
                              "--out", "ev"])
    one_error_line(res, "one.png: is 1x1; the smallest side must be at least 17 px", code=2)
    assert _listing(work) == files
    res = runner.invoke(app, ["eval", "video", "frames", "one.png", "--methods", "adain", "--no-per-frame"])
    one_error_line(res, "one.png: is 1x1; the smallest side must be at least 17 px", code=2)
    assert _listing(work) == files
