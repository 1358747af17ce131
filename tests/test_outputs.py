"""Outputs are checked before any work (exit 4, one line naming the path) and never replaced without
--overwrite: the shared check, then `eval style`, `bench` and `train style|face|pose` through the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dynast_cli.io.outputs as outputs
from stand_ins import one_error_line
from dynast_cli.cli import app
from dynast_cli.errors import OutputError
from dynast_cli.io.outputs import check_folder, check_output

runner = CliRunner()
EXISTS = "already exists (pass --overwrite to replace it)"


def _never(*args, **kwargs):
    raise AssertionError("the work ran although an output was unusable")


@pytest.fixture
def file_in_the_way(tmp_path):
    """A regular file standing where a folder is needed (root ignores permission bits, not this)."""
    path = tmp_path / "a_file"
    path.write_text("keep me\n")
    return path


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A folder whose write probe fails as on a read-only mount (chmod does not stop root)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    real = outputs._probe
    monkeypatch.setattr(outputs, "_probe", lambda f: "Read-only file system" if Path(f) == folder else real(f))
    return folder


# ---- the shared check -------------------------------------------------------------------------------

def test_an_existing_file_needs_overwrite(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")
    with pytest.raises(OutputError, match=r"r\.json: already exists \(pass --overwrite"):
        check_output(path)
    assert check_output(path, overwrite=True) == path
    assert path.read_text() == "old"


def test_a_parent_that_is_a_file_is_named(file_in_the_way):
    for path in (file_in_the_way / "r.json", file_in_the_way / "deeper" / "r.json"):
        with pytest.raises(OutputError, match="a_file: is a file, not a folder") as info:
            check_output(path, overwrite=True)
        assert info.value.exit_code == 4 and info.value.path == file_in_the_way


def test_an_unwritable_folder_is_named(read_only):
    with pytest.raises(OutputError, match=r"ro: folder is not writable \(Read-only file system\)"):
        check_output(read_only / "r.json")
    with pytest.raises(OutputError, match=r"ro/new/deeper: folder cannot be created \(.*ro is not writable"):
        check_folder(read_only / "new" / "deeper")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into 0o555 folders")
def test_a_read_only_folder_fails_the_real_probe(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="folder is not writable"):
            check_output(folder / "r.json")
    finally:
        folder.chmod(0o755)


def test_the_check_creates_and_leaves_nothing(tmp_path):
    assert check_output(tmp_path / "new" / "deeper" / "r.json") == tmp_path / "new" / "deeper" / "r.json"
    assert check_output(tmp_path / "out", kind="dir", files=["a.json"]) == tmp_path / "out"
    assert list(tmp_path.iterdir()) == []


def test_folders_in_the_way_and_files_of_a_folder_output(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError, match="d: is a folder"):
        check_output(tmp_path / "d")
    (tmp_path / "d" / "a.json").write_text("old")
    check_output(tmp_path / "d", kind="dir", files=["b.json"])  # an existing folder is fine
    with pytest.raises(OutputError, match=r"a\.json: already exists"):
        check_output(tmp_path / "d", kind="dir", files=["b.json", "a.json"])
    check_output(tmp_path / "d", overwrite=True, kind="dir", files=["a.json"])
    with pytest.raises(OutputError, match="d/missing: folder does not exist"):
        check_output(tmp_path / "d" / "missing" / "r.json", create=False)


# ---- dynast bench -----------------------------------------------------------------------------------

BENCH = ["bench", "--kernels", "full", "--sizes", "4", "--repeat", "1", "--device", "cpu"]


@pytest.fixture
def no_benchmark(monkeypatch):
    from dynast_cli import bench

    monkeypatch.setattr(bench, "run_benchmarks", _never)
    monkeypatch.setattr(bench, "plot_results", _never)


@pytest.mark.parametrize("option, name", [("--json", "b.json"), ("--plot", "b.png")])
def test_bench_refuses_an_existing_result_before_measuring(tmp_path, no_benchmark, option, name):
    path = tmp_path / name
    path.write_text("old result")
    res = runner.invoke(app, [*BENCH, option, str(path)])
    one_error_line(res, str(path), EXISTS)
    assert path.read_text() == "old result"


@pytest.mark.parametrize("option, name", [("--json", "b.json"), ("--plot", "b.png")])
def test_bench_refuses_an_unwritable_folder_before_measuring(file_in_the_way, read_only, no_benchmark, option, name):
    res = runner.invoke(app, [*BENCH, option, str(file_in_the_way / name)])
    one_error_line(res, str(file_in_the_way), "is a file, not a folder")
    res = runner.invoke(app, [*BENCH, option, str(read_only / name)])
    one_error_line(res, str(read_only), "folder is not writable")
    assert file_in_the_way.read_text() == "keep me\n" and list(read_only.iterdir()) == []


def test_bench_refuses_one_file_for_both_json_and_plot(tmp_path, no_benchmark):
    res = runner.invoke(app, [*BENCH, "--json", str(tmp_path / "b.png"), "--plot", str(tmp_path / "b.png")])
    one_error_line(res, str(tmp_path / "b.png"), "both --json and --plot")


def test_bench_overwrite_replaces_the_json(tmp_path, monkeypatch):
    from dynast_cli import bench

    monkeypatch.setattr(bench, "run_benchmarks", lambda *args, **kwargs: [])
    path = tmp_path / "b.json"
    path.write_text("old result")
    res = runner.invoke(app, [*BENCH, "--json", str(path), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert json.loads(path.read_text())["results"] == []
    assert [p.name for p in tmp_path.iterdir()] == ["b.json"]  # no temporary file left


# ---- dynast eval style ------------------------------------------------------------------------------

@pytest.fixture
def eval_args(tmp_path):
    from PIL import Image

    from conftest import make_image

    for name in ("content.png", "style.png"):
        Image.fromarray(make_image(48, 48)).save(tmp_path / name)
    return ["eval", "style", "--content", str(tmp_path / "content.png"), "--style", str(tmp_path / "style.png"),
            "--methods", "identity", "--size", "32", "--device", "cpu"]


@pytest.fixture
def no_evaluation(monkeypatch):
    import dynast_cli.evaluate as evaluate
    import dynast_cli.weights.build as vgg
    from stand_ins import register_stand_in

    register_stand_in(monkeypatch, "identity", _never)
    monkeypatch.setattr(vgg, "load_vgg16", _never)
    monkeypatch.setattr(evaluate, "evaluate_style", _never)


def test_eval_style_refuses_existing_results_before_any_model_is_loaded(tmp_path, eval_args, no_evaluation):
    out = tmp_path / "out"
    out.mkdir()
    (out / "style_eval.md").write_text("old table")
    res = runner.invoke(app, [*eval_args, "--out", str(out)])
    one_error_line(res, str(out / "style_eval.md"), EXISTS)
    assert (out / "style_eval.md").read_text() == "old table"
    # a previous sweep's plot is only in the way of another sweep
    (out / "style_eval.md").unlink()
    (out / "style_eval_tradeoff.png").write_text("old plot")
    res = runner.invoke(app, [*eval_args, "--out", str(out), "--alphas", "1,0.5"])
    one_error_line(res, str(out / "style_eval_tradeoff.png"), EXISTS)


def test_eval_style_refuses_an_unusable_out_before_any_model_is_loaded(file_in_the_way, read_only, eval_args,
                                                                       no_evaluation):
    for out in (file_in_the_way, file_in_the_way / "sub"):
        res = runner.invoke(app, [*eval_args, "--out", str(out)])
        one_error_line(res, str(file_in_the_way), "is a file, not a folder")
    res = runner.invoke(app, [*eval_args, "--out", str(read_only)])
    one_error_line(res, str(read_only), "folder is not writable")
    assert file_in_the_way.read_text() == "keep me\n" and list(read_only.iterdir()) == []


def test_eval_style_overwrite_replaces_earlier_results(tmp_path, eval_args, monkeypatch):
    import dynast_cli.weights.build as vgg
    from stand_ins import TinyEncoder, register_stand_in

    class Identity:
        def prepare_style(self, style):
            return style

        def stylize(self, content, states, mix, alpha=1.0):
            return content.clone()

    register_stand_in(monkeypatch, "identity", lambda weights: Identity())
    monkeypatch.setattr(vgg, "load_vgg16", lambda path=None, device="cpu": TinyEncoder())
    out = tmp_path / "out"
    out.mkdir()
    (out / "style_eval.json").write_text("old")
    (out / "style_eval_tradeoff.png").write_text("an earlier sweep's plot")  # it does not show these results
    res = runner.invoke(app, [*eval_args, "--out", str(out), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "style_eval.json").read_text())["pairs"][0]["method"] == "identity"
    assert sorted(p.name for p in out.iterdir()) == ["style_eval.json", "style_eval.md", "style_eval_grid.png"]


def test_evaluate_style_checks_its_folder_before_loading_anything(file_in_the_way, tmp_path):
    from dynast_cli.evaluate import evaluate_style

    missing = [tmp_path / "no_such_image.png"]  # would be an InputError if it were read
    with pytest.raises(OutputError, match="is a file, not a folder"):
        evaluate_style(missing, missing, {}, _never, file_in_the_way / "out")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "style_eval.json").write_text("old")
    with pytest.raises(OutputError, match="already exists"):
        evaluate_style(missing, missing, {}, _never, tmp_path / "out", overwrite=False)


# ---- dynast train -----------------------------------------------------------------------------------

@pytest.fixture
def no_training(monkeypatch):
    import dynast_cli.train.generator as generator
    import dynast_cli.train.face_data as face_data
    import dynast_cli.train.pose_data as pose_data
    import dynast_cli.train.style as style
    import dynast_cli.train.video_style as video_style

    for module, name in ((style, "train_style"), (video_style, "train_video_style"), (generator, "train_dynast"),
                         (face_data, "FacePairs"), (pose_data, "PosePairs")):
        monkeypatch.setattr(module, name, _never)


def _train_args(kind: str, tmp_path: Path) -> list[str]:
    return {
        "style": ["train", "style", "--content", str(tmp_path), "--style", str(tmp_path)],
        "video": ["train", "style", "--content", str(tmp_path), "--style", str(tmp_path), "--method", "adaattn",
                  "--video"],
        "face": ["train", "face", "--faces", str(tmp_path)],
        "pose": ["train", "pose", "--pairs", str(tmp_path / "pairs.txt"), "--images", str(tmp_path),
                 "--poses", str(tmp_path)],
    }[kind]


@pytest.mark.parametrize("kind", ["style", "video", "face", "pose"])
def test_train_refuses_an_unusable_out_before_any_work(file_in_the_way, read_only, tmp_path, no_training, kind):
    args = _train_args(kind, tmp_path)
    for out in (file_in_the_way, file_in_the_way / "run"):
        res = runner.invoke(app, [*args, "--out", str(out)])
        one_error_line(res, str(file_in_the_way), "is a file, not a folder")
    res = runner.invoke(app, [*args, "--out", str(read_only), "--resume"])
    one_error_line(res, str(read_only), "folder is not writable")
    assert file_in_the_way.read_text() == "keep me\n" and list(read_only.iterdir()) == []


def test_train_refuses_a_checkpoint_folder_in_the_way_or_unwritable(tmp_path, no_training, monkeypatch):
    args = _train_args("style", tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint").write_text("not a folder")
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "run")])
    one_error_line(res, str(tmp_path / "run" / "checkpoint"), "is a file, not a folder")
    samples = tmp_path / "run2" / "checkpoint" / "samples"
    samples.mkdir(parents=True)
    real = outputs._probe
    monkeypatch.setattr(outputs, "_probe", lambda f: "Permission denied" if Path(f) == samples else real(f))
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "run2")])
    one_error_line(res, str(samples), "folder is not writable")
    import dynast_cli.train.style as style

    monkeypatch.setattr(style, "train_style", lambda *a, **kw: kw["out"] / "w.safetensors")
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "run2"), "--sample-every", "0"])
    assert res.exit_code == 0, res.output  # no samples: their folder does not matter


def test_train_existing_checkpoint_needs_resume_and_resume_goes_on(tmp_path, monkeypatch, no_training):
    import dynast_cli.train.style as style

    args = _train_args("style", tmp_path)
    ckpt = tmp_path / "run" / "checkpoint"
    ckpt.mkdir(parents=True)
    (ckpt / "state.pt").write_bytes(b"state")
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "run")])
    one_error_line(res, str(ckpt), "pass --resume")
    calls = []
    monkeypatch.setattr(style, "train_style", lambda *a, **kw: calls.append(kw["resume"]) or kw["out"] / "w.st")
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "run"), "--resume"])
    assert res.exit_code == 0, res.output
    (ckpt / "state.pt").unlink()
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "run")])  # an existing folder without a checkpoint
    assert res.exit_code == 0, res.output
    assert calls == [True, False] and (tmp_path / "run").is_dir()


def test_train_loop_checks_its_folders_before_drawing_a_batch(file_in_the_way):
    import torch

    from dynast_cli.train.loop import train_loop

    model = torch.nn.Linear(2, 2)
    with pytest.raises(OutputError, match="is a file, not a folder"):
        train_loop(model, _never, _never, torch.optim.SGD(model.parameters(), lr=0.1), 1, file_in_the_way / "ck",
                   sample_fn=_never, sample_every=1)
