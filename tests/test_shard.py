"""Batch inference across processes (issue #17, part 2): `--shard i/n` (a job array), torchrun, `--resume`,
merged reports, and `dynast video --shard` / `--join`.

Images and clips are generated; in-process runs use the tiny stand-ins (`stand_ins` fixture, the Tint
stand-in of test_video.py). The runs in several processes (torchrun and its environment) use the real
`adain` (VGG16 from the cache, skipped when it is not there: the tests download nothing).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import dynast_cli.cli  # noqa: F401  (registers the subcommands)
from conftest import make_image_folder, require_cached_or_network
from dynast_cli.cli.app import app
from dynast_cli.distributed import Shard
from dynast_cli.errors import InputError, OutputError
from dynast_cli.io.video import VideoReader, has_audio
from dynast_cli.pipelines.style import MERGED_REPORT, SHARDS_FOLDER
from dynast_cli.pipelines.video import SETTINGS_FILE, read_start, run_video
from stand_ins import one_error_line, one_thread  # noqa: F401  (autouse: one torch thread)
from test_video import FPS, H, N, W, Tint, registered, square_frames, style, write_clip  # noqa: F401 (fixtures)

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def _pngs(folder: Path, pattern: str = "*.png") -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(Path(folder).glob(pattern))}


def _assert_same_images(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].shape == b[name].shape and np.array_equal(a[name], b[name]), name


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def contents(tmp_path) -> Path:
    """5 generated contents img0 ... img4 (natural order: img0, img1, ... as the shards split them)."""
    return make_image_folder(tmp_path, "contents", 5, h=24, w=32)


@pytest.fixture
def style_png(tmp_path) -> Path:
    path = tmp_path / "s.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def _style(*args: str):
    return runner.invoke(app, ["style", *map(str, args), "-m", "adain", "--device", "cpu"])


# ---------------------------------------------------------------------------------------------
# dynast style --shard: a job array
# ---------------------------------------------------------------------------------------------


def test_shard_take_and_span():
    assert Shard(1, 3).take(list(range(8))) == [1, 4, 7]
    assert [Shard(i, 2).span(24, align=5) for i in range(2)] == [(0, 15), (15, 24)]
    assert [Shard(i, 4).span(3) for i in range(4)] == [(0, 1), (1, 2), (2, 3), (3, 3)]
    assert [read_start(f, 4, w) for f, w in [(0, 0), (8, 0), (9, 0), (8, 1), (1, 3)]] == [0, 8, 8, 4, 0]


def test_two_shards_write_the_files_of_one_run_with_identical_pixels(stand_ins, contents, style_png, tmp_path):
    whole = _style(contents, style_png, "-o", tmp_path / "whole")
    assert whole.exit_code == 0, whole.output
    out = tmp_path / "sharded"
    first = _style(contents, style_png, "-o", out, "--shard", "0/2")
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [f"wrote {out / n}" for n in ("img0.png", "img2.png", "img4.png")] + [
        "shard 0/2: 3 written, 0 skipped, 0 failed"]
    assert not (out / MERGED_REPORT).exists()  # shard 1 has not run yet
    second = _style(contents, style_png, "-o", out, "--shard", "1/2")
    assert second.exit_code == 0, second.output
    assert second.stdout.splitlines() == [f"wrote {out / 'img1.png'}", f"wrote {out / 'img3.png'}",
                                          "shard 1/2: 2 written, 0 skipped, 0 failed",
                                          f"all 2 shards: 5 written, 0 skipped, 0 failed; report {out / MERGED_REPORT}"]
    _assert_same_images(_pngs(out), _pngs(tmp_path / "whole"))
    merged = json.loads((out / MERGED_REPORT).read_text())
    assert merged["shards"] == 2 and merged["planned"] == 5 and merged["failed"] == []
    assert sorted(Path(p).name for p in merged["written"]) == [f"img{i}.png" for i in range(5)]
    assert sorted(p.name for p in (out / SHARDS_FOLDER).iterdir()) == ["report-0-of-2.json", "report-1-of-2.json"]
    # an unsharded run writes no report files, as before
    assert sorted(p.name for p in (tmp_path / "whole").iterdir()) == [f"img{i}.png" for i in range(5)]


def test_shards_check_only_their_own_outputs_and_resume_what_a_killed_one_left(stand_ins, contents, style_png,
                                                                               tmp_path):
    out = tmp_path / "out"
    assert _style(contents, style_png, "-o", out, "--shard", "1/2").exit_code == 0
    # shard 0 does not refuse shard 1's files; run again, it refuses its own, naming one, before any work
    assert _style(contents, style_png, "-o", out, "--shard", "0/2").exit_code == 0
    again = _style(contents, style_png, "-o", out, "--shard", "0/2")
    one_error_line(again, str(out / "img0.png"), "already exists", code=4)
    # shard 0 killed: one output missing, a temporary left where it was being written
    (out / "img2.png").unlink()
    leftover = out / ".img2.png.k1ll3d.part"
    leftover.write_bytes(b"half a png")
    before = (out / "img0.png").stat().st_mtime_ns
    resumed = _style(contents, style_png, "-o", out, "--shard", "0/2", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.splitlines()[:2] == [f"wrote {out / 'img2.png'}", "shard 0/2: 1 written, 2 skipped, 0 failed"]
    assert "all 2 shards: 3 written, 2 skipped, 0 failed" in resumed.stdout  # with shard 1's report
    assert not leftover.exists() and (out / "img0.png").stat().st_mtime_ns == before
    _style(contents, style_png, "-o", tmp_path / "whole")
    _assert_same_images(_pngs(out), _pngs(tmp_path / "whole"))
    both = _style(contents, style_png, "-o", out, "--resume", "--overwrite")
    one_error_line(both, "--resume", "--overwrite", code=1)
    # a run started over (--overwrite, not --resume) removes a killed run's temporaries too; shard 1's stay
    mine, theirs = out / ".img0.png.k1ll3d.part", out / ".img1.png.k1ll3d.part"
    mine.write_bytes(b"half"), theirs.write_bytes(b"half")
    assert _style(contents, style_png, "-o", out, "--shard", "0/2", "--overwrite").exit_code == 0
    assert not mine.exists() and theirs.exists()


def test_a_failing_file_of_one_shard_shows_in_the_merged_report(stand_ins, contents, style_png, tmp_path):
    (contents / "img3.png").write_bytes(b"not an image")  # shard 1's
    out = tmp_path / "out"
    ok = _style(contents, style_png, "-o", out, "--shard", "0/2")
    assert ok.exit_code == 0, ok.output
    failing = _style(contents, style_png, "-o", out, "--shard", "1/2")
    assert failing.exit_code == 5  # its own file failed: this task is the one to rerun
    assert failing.stdout.splitlines() == [
        f"wrote {out / 'img1.png'}", "shard 1/2: 1 written, 0 skipped, 1 failed",
        f"all 2 shards: 4 written, 0 skipped, 1 failed; report {out / MERGED_REPORT}"]
    errors = [line for line in failing.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: 1 of 2 file(s) failed: ") and "img3.png" in errors[0]
    merged = json.loads((out / MERGED_REPORT).read_text())
    assert [Path(f["file"]).name for f in merged["failed"]] == ["img3.png"] and len(merged["written"]) == 4
    own = json.loads((out / SHARDS_FOLDER / "report-1-of-2.json").read_text())
    assert own["shard"] == "1/2" and [Path(f["file"]).name for f in own["failed"]] == ["img3.png"]
    # the file fixed, the failed shard rerun with --resume: the merged report is clean
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(contents / "img3.png")
    rerun = _style(contents, style_png, "-o", out, "--shard", "1/2", "--resume")
    assert rerun.exit_code == 0, rerun.output
    assert "all 2 shards: 4 written, 1 skipped, 0 failed" in rerun.stdout
    assert json.loads((out / MERGED_REPORT).read_text())["failed"] == []


def test_reports_of_another_job_are_not_merged(stand_ins, contents, style_png, tmp_path):
    out = tmp_path / "out"
    assert _style(contents, style_png, "-o", out, "--shard", "0/2").exit_code == 0
    other = _style(contents, style_png, "-o", out, "--shard", "1/2", "--alpha", "0.5")  # not the same job
    assert other.exit_code == 0 and "all 2 shards" not in other.stdout and not (out / MERGED_REPORT).exists()


def test_a_rerun_shard_removes_its_old_report_so_the_set_is_not_merged_early(stand_ins, contents, style_png,
                                                                               tmp_path):
    out = tmp_path / "out"
    assert _style(contents, style_png, "-o", out, "--shard", "0/2").exit_code == 0
    assert _style(contents, style_png, "-o", out, "--shard", "1/2").exit_code == 0
    assert (out / MERGED_REPORT).exists()
    # the job is run again; shard 1 starts (and is killed) before shard 0 finishes: its starting removed
    # its old report and the merged one, so shard 0 alone does not claim the set is done
    rerun_1 = _style(contents, style_png, "-o", out, "--shard", "1/2", "--overwrite", "--alpha", "2")
    assert rerun_1.exit_code == 1  # a usage error: refused before any work, nothing removed
    assert (out / MERGED_REPORT).exists()
    from dynast_cli.distributed import Shard
    from dynast_cli.pipelines.style import forget_shard

    forget_shard(contents, out, Shard(1, 2))  # what shard 1 does once its checks passed
    again = _style(contents, style_png, "-o", out, "--shard", "0/2", "--overwrite")
    assert again.exit_code == 0 and "all 2 shards" not in again.stdout and not (out / MERGED_REPORT).exists()


@pytest.mark.parametrize("command", ["style", "video"])
@pytest.mark.parametrize("value", ["2/2", "x", "1/0", "-1/2", "1/2/3"])
def test_a_bad_shard_is_a_usage_error_naming_it(command, value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [command, "c.png", "s.png", "--shard", value])
    one_error_line(result, "--shard", code=1)
    assert list(tmp_path.iterdir()) == []


def test_shard_of_a_single_file_and_shard_under_torchrun_are_usage_errors(stand_ins, tmp_path, style_png,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.full((24, 32, 3), 90, np.uint8)).save("c.png")
    one_error_line(_style("c.png", style_png, "-o", "o.png", "--shard", "1/2"), "--shard 1/2", "c.png", code=1)
    assert not Path("o.png").exists()
    assert _style("c.png", style_png, "-o", "o.png", "--shard", "0/1").exit_code == 0
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    one_error_line(_style("c.png", style_png, "-o", "p.png", "--shard", "0/2"), "--shard and torchrun", code=1)
    assert not Path("p.png").exists()


# ---------------------------------------------------------------------------------------------
# torchrun: several processes, one process group
# ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", COLUMNS="200", PYTHONPATH=str(ROOT), **extra)
    return env


@pytest.fixture
def vgg16_cached():
    require_cached_or_network("vgg16_imagenet.safetensors", "the ImageNet VGG16")


def _spawn_ranks(args: list[str], cwd: Path, n: int = 2, prelude: str = "") -> list[subprocess.CompletedProcess]:
    """``python -m dynast_cli ARGS`` in ``n`` processes with the environment torchrun gives its workers, but no
    torchrun agent (as srun or a hand-set environment: nobody kills the others when one fails).
    ``prelude``: Python run first in each process (a test's fault injection)."""
    port = str(_free_port())
    code = f"{prelude}\nimport runpy, sys\nsys.argv = ['dynast', *sys.argv[1:]]\nrunpy.run_module('dynast_cli', run_name='__main__')"
    procs = [subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=_env(RANK=str(r), WORLD_SIZE=str(n), LOCAL_RANK=str(r), LOCAL_WORLD_SIZE=str(n),
                                       MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
             for r in range(n)]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=180)  # a rank left waiting in a collective fails here
        out.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return out


def test_torchrun_two_processes_write_what_one_writes_and_rank_0_merges(vgg16_cached, tmp_path):
    folder = make_image_folder(tmp_path, "contents", 5, h=24, w=32)
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    common = ["-m", "adain", "--device", "cpu", "--style-size", "32"]
    whole = subprocess.run([sys.executable, "-m", "dynast_cli", "style", "contents", "s.png", "-o", "whole",
                            "--threads", "1", *common], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                           timeout=300)
    assert whole.returncode == 0, whole.stderr
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "dynast_cli", "style", "contents", "s.png", "-o", "ranks", *common],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    wrote = sorted(line for line in run.stdout.splitlines() if line.startswith("wrote "))
    assert wrote == [f"wrote ranks/img{i}.png" for i in range(5)]
    assert "all 2 ranks: 5 written, 0 skipped, 0 failed; report ranks/dynast-report.json" in run.stdout
    _assert_same_images(_pngs(tmp_path / "ranks"), _pngs(tmp_path / "whole"))
    merged = json.loads((tmp_path / "ranks" / MERGED_REPORT).read_text())
    assert merged["ranks"] == 2 and merged["planned"] == 5 and len(merged["written"]) == 5
    assert not (tmp_path / "ranks" / SHARDS_FOLDER).exists()  # torchrun gathers: no report files per rank


def test_torchrun_environment_rank_0_reports_every_rank_failure(vgg16_cached, tmp_path):
    folder = make_image_folder(tmp_path, "contents", 4, h=24, w=32)
    (folder / "img1.png").write_bytes(b"broken")  # rank 1's
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    ranks = _spawn_ranks(["style", "contents", "s.png", "-o", "out", "-m", "adain", "--device", "cpu",
                          "--style-size", "32"], tmp_path)
    assert ranks[1].returncode == 0, ranks[1].stderr  # its failure is reported by rank 0
    assert ranks[1].stdout.splitlines() == ["wrote out/img3.png", "shard 1/2: 1 written, 0 skipped, 1 failed"]
    assert ranks[0].returncode == 5, ranks[0].stderr
    assert ranks[0].stdout.splitlines() == ["wrote out/img0.png", "wrote out/img2.png",
                                            "shard 0/2: 2 written, 0 skipped, 0 failed",
                                            "all 2 ranks: 3 written, 0 skipped, 1 failed; report out/dynast-report.json"]
    errors = [line for line in ranks[0].stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith("error: 1 of 4 file(s) failed: contents/img1.png: ")
    assert "Traceback" not in ranks[0].stderr + ranks[1].stderr
    # a rank that refuses before any work stops every rank: nothing is written
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(folder / "img1.png")
    for name in ("img0.png", "img2.png"):  # rank 0's outputs are gone, rank 1's img3.png is there
        (tmp_path / "out" / name).unlink()
    before = _listing(tmp_path)
    report = (tmp_path / "out" / MERGED_REPORT).read_bytes()  # the first run's: a refusal must not replace it
    ranks = _spawn_ranks(["style", "contents", "s.png", "-o", "out", "-m", "adain", "--device", "cpu",
                          "--overwrite", "--resume"], tmp_path)
    for rank in ranks:  # a usage error on both: every rank refuses it, before any work
        assert rank.returncode == 1 and rank.stderr.strip().endswith("use one of them"), rank.stderr
    ranks = _spawn_ranks(["style", "contents", "s.png", "-o", "out", "-m", "adain", "--device", "cpu"], tmp_path)
    assert [r.returncode for r in ranks] == [4, 4], [r.stderr for r in ranks]
    assert ranks[1].stderr.strip().splitlines() == [
        "error: out/img3.png: already exists (pass --overwrite to replace it)"]
    assert ranks[0].stderr.strip().splitlines() == [
        "error: stopped before any work: rank 1 of 2 refused: out/img3.png: already exists (pass --overwrite to "
        "replace it)"]
    assert "all 2 ranks" not in ranks[0].stdout
    assert _listing(tmp_path) == before and (tmp_path / "out" / MERGED_REPORT).read_bytes() == report


#: A fault for _spawn_ranks' prelude: on rank 1, FUNCTION (module:name) agrees to start, then raises ERROR.
_FAULT = """
import os
if os.environ["RANK"] == "1":
    import importlib
    from dynast_cli.errors import DynastError
    module, name = "{function}".split(":")
    def broken(*args, ready=None, **kwargs):
        ready()
        raise {error}
    setattr(importlib.import_module(module), name, broken)
"""


def test_torchrun_environment_a_bug_in_one_rank_stops_no_other(vgg16_cached, tmp_path):
    """Without torchrun's agent, a rank that hits a bug during the work (after the ranks agreed) still gives
    rank 0 its report before it shows the error: rank 0 names it and exits 5 (it failed on gloo's
    "Connection closed by peer", exit 70, with no merged report)."""
    make_image_folder(tmp_path, "contents", 4, h=24, w=32)
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    fault = _FAULT.format(function="dynast_cli.pipelines.style:run_style", error='RuntimeError("injected bug")')
    ranks = _spawn_ranks(["style", "contents", "s.png", "-o", "out", "-m", "adain", "--device", "cpu",
                          "--style-size", "32"], tmp_path, prelude=fault)
    assert ranks[1].returncode == 70, ranks[1].stderr
    assert ranks[1].stderr.splitlines() == ["error: RuntimeError: injected bug (run with --debug for the traceback)"]
    assert ranks[0].returncode == 5, ranks[0].stderr
    assert ranks[0].stdout.splitlines()[-1] == ("all 2 ranks: 2 written, 0 skipped, 0 failed; report "
                                                "out/dynast-report.json")
    assert ranks[0].stderr.splitlines() == ["error: shard 1/2: rank 1: internal error: RuntimeError('injected bug')"]
    assert "injected bug" in json.dumps(json.loads((tmp_path / "out" / MERGED_REPORT).read_text()))
    assert "Traceback" not in ranks[0].stderr + ranks[1].stderr


# ---------------------------------------------------------------------------------------------
# dynast video --shard / --join
# ---------------------------------------------------------------------------------------------


def _video(*args: str):
    return runner.invoke(app, ["video", *map(str, args), "-m", "tint"])


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_clip(tmp_path / "clip.mp4", square_frames())


def test_two_video_shards_joined_equal_the_unsharded_video_frame_for_frame(clip, style, tmp_path, registered,
                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _video("clip.mp4", "style.png", "-o", "whole.mp4", "--batch", "5").exit_code == 0
    assert _video("clip.mp4", "style.png", "-o", "whole_frames", "--batch", "5").exit_code == 0
    first = _video("clip.mp4", "style.png", "-o", "out.mp4", "--batch", "5", "--shard", "0/2")
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith(f"wrote out.mp4.partial (shard 0/2: frames 1-15 of {N}, 15 frames, 64x48")
    assert not Path("out.mp4").exists()
    second = _video("clip.mp4", "style.png", "-o", "out.mp4", "--batch", "5", "--shard", "1/2")
    assert second.exit_code == 0, second.output
    assert "(shard 1/2: frames 16-24 of 24, 9 frames" in second.stdout
    # the shards' PNG frames are the unsharded run's, exactly
    _assert_same_images(_pngs(tmp_path / "out.mp4.partial", "frame_*.png"), _pngs(tmp_path / "whole_frames"))
    joined = _video("clip.mp4", "style.png", "-o", "out.mp4", "--batch", "5", "--join")
    assert joined.exit_code == 0, joined.output
    assert joined.stdout.strip() == f"wrote out.mp4 (joined {N} frames, 64x48, 12 fps)"
    assert not Path("out.mp4.partial").exists()
    a, b = list(VideoReader(tmp_path / "out.mp4")), list(VideoReader(tmp_path / "whole.mp4"))
    assert len(a) == len(b) == N and all(np.array_equal(x, y) for x, y in zip(a, b))
    # frame folders: shards write into it directly, --join only checks that it is complete
    for i in range(3):
        assert _video("clip.mp4", "style.png", "-o", "frames", "--batch", "5", "--shard", f"{i}/3").exit_code == 0
    done = _video("clip.mp4", "style.png", "-o", "frames", "--batch", "5", "--join")
    assert done.exit_code == 0 and done.stdout.strip() == f"wrote frames (joined {N} frames, 64x48, 12 fps)"
    _assert_same_images(_pngs(tmp_path / "frames", "frame_*.png"), _pngs(tmp_path / "whole_frames"))


def test_join_with_a_missing_shard_names_the_frames_and_writes_nothing(clip, style, tmp_path, registered,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _video("clip.mp4", "style.png", "-o", "out.mp4", "--batch", "4", "--shard", "0/3").exit_code == 0
    assert _video("clip.mp4", "style.png", "-o", "out.mp4", "--batch", "4", "--shard", "2/3").exit_code == 0
    (tmp_path / "out.mp4.partial" / "frame_000020.png").unlink()
    before = _listing(tmp_path)
    result = _video("clip.mp4", "style.png", "-o", "out.mp4", "--join")
    one_error_line(result, "out.mp4.partial", "missing frames 9-16, 20 of 24", code=2)
    assert _listing(tmp_path) == before
    nothing = _video("clip.mp4", "style.png", "-o", "none.mp4", "--join")
    one_error_line(nothing, "none.mp4.partial", "missing frames 1-24 of 24", code=2)
    other = _video("clip.mp4", "style.png", "-o", "out.mp4", "--join", "--alpha", "0.5")
    one_error_line(other, "out.mp4.partial", "other settings (alpha)", code=4)
    one_error_line(_video("clip.mp4", "style.png", "-o", "out.mp4", "--join", "--shard", "1/3"), "--join", code=1)
    assert _listing(tmp_path) == before


def test_join_keeps_the_audio_track(style, tmp_path, registered):
    from dynast_cli.io import video as video_io

    exe = video_io.ffmpeg_exe()
    if exe is None:
        pytest.skip("no ffmpeg (pip install imageio-ffmpeg)")
    clip = tmp_path / "talk.mp4"
    subprocess.run([exe, "-v", "error", "-f", "lavfi", "-i", f"testsrc=size={W}x{H}:rate={FPS:g}", "-f", "lavfi",
                    "-i", "sine=frequency=440:sample_rate=22050", "-t", "1", "-c:v", "mpeg4", "-c:a", "aac", str(clip)],
                   check=True)
    for i in range(2):
        run_video(clip, [style], tmp_path / "out.mp4", method=Tint(), batch=4, shard=Shard(i, 2))
    report = run_video(clip, [style], tmp_path / "out.mp4", method=Tint(), batch=4, join=True)
    assert report.joined and has_audio(report.output) and VideoReader(report.output).frame_count == 12


def test_a_video_shard_resumes_and_refuses_only_its_own_frames(clip, style, tmp_path):
    out = tmp_path / "out.mp4"
    run_video(clip, [style], out, method=Tint(), batch=3, shard=Shard(0, 2))
    with pytest.raises(KeyboardInterrupt, match="shard 1/2 interrupted after 6 of 12"):
        run_video(clip, [style], out, method=Tint(interrupt_after=6), batch=3, shard=Shard(1, 2))
    with pytest.raises(OutputError, match="holds frames 13-18 of this shard"):
        run_video(clip, [style], out, method=Tint(), batch=3, shard=Shard(1, 2))
    with pytest.raises(OutputError, match=r"other settings \(alpha\)"):
        run_video(clip, [style], out, method=Tint(), batch=3, shard=Shard(1, 2), alpha=0.5, resume=True)
    method = Tint()
    report = run_video(clip, [style], out, method=method, batch=3, shard=Shard(1, 2), resume=True)
    assert method.frames == 6 and (report.frames, report.computed, report.span) == (12, 6, (12, 24))
    with pytest.raises(OutputError, match="holds frames 1-12 of this shard"):
        run_video(clip, [style], out, method=Tint(), batch=3, shard=Shard(0, 2))
    run_video(clip, [style], tmp_path / "whole", method=Tint(), batch=3)
    _assert_same_images(_pngs(tmp_path / "out.mp4.partial", "frame_*.png"), _pngs(tmp_path / "whole"))
    assert run_video(clip, [style], out, method=Tint(), join=True).frames == N


class Echo(Tint):
    """A stand-in carrying state from frame to frame: each output is the mean of the frame and the frame
    before it (as seen by this object; the first frame it sees is its own predecessor). It declares the
    one frame of warm-up it needs."""

    name = "echo"
    warmup_frames = 1

    def __init__(self, warmup: int = 1):
        super().__init__()
        self.warmup_frames = warmup
        self.previous = None

    def stylize(self, content, states, mix, alpha=1.0):
        self.frames += content.shape[0]
        out = []
        for frame in content:
            before = frame if self.previous is None else self.previous
            out.append(0.5 * frame + 0.5 * before)
            self.previous = frame
        return torch.stack(out)


def test_a_method_with_warm_up_frames_gives_the_unsharded_frames(clip, style, tmp_path):
    run_video(clip, [style], tmp_path / "whole", method=Echo(), batch=3)
    whole = _pngs(tmp_path / "whole")
    shard_methods = []
    for i in range(3):  # 24 frames, batches of 3: shards of 9, 9 and 6 frames
        shard_methods.append(Echo())
        run_video(clip, [style], tmp_path / "sharded", method=shard_methods[-1], batch=3, shard=Shard(i, 3))
    _assert_same_images(_pngs(tmp_path / "sharded"), whole)
    # shards 1 and 2 read one batch of warm-up before their frames (its outputs dropped)
    assert [m.frames for m in shard_methods] == [9, 12, 9]
    # without the declared warm-up, a shard's first frame lacks its predecessor: it differs
    for i in range(3):
        run_video(clip, [style], tmp_path / "no_warmup", method=Echo(warmup=0), batch=3, shard=Shard(i, 3))
    cold = _pngs(tmp_path / "no_warmup")
    assert np.array_equal(cold["frame_000009.png"], whole["frame_000009.png"])
    assert not np.array_equal(cold["frame_000010.png"], whole["frame_000010.png"])


def test_video_shards_need_a_frame_count(style, tmp_path, monkeypatch):
    clip = write_clip(tmp_path / "clip.avi", square_frames(6))
    from dynast_cli.io import video as video_io

    real_init = video_io.VideoReader.__init__

    def unknown_count(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.frame_count = self.end_frame = None

    monkeypatch.setattr(video_io.VideoReader, "__init__", unknown_count)
    with pytest.raises(InputError, match="frame count, which --shard needs"):
        run_video(clip, [style], tmp_path / "out.mp4", method=Tint(), shard=Shard(0, 2))
    with pytest.raises(InputError, match="frame count, which --join needs"):
        run_video(clip, [style], tmp_path / "out.mp4", method=Tint(), join=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "style.png"]


def test_torchrun_video_ranks_take_their_spans_and_rank_0_joins(vgg16_cached, tmp_path):
    write_clip(tmp_path / "clip.mp4", square_frames(10))
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    common = ["-m", "adain", "--device", "cpu", "--style-size", "32", "--batch", "2"]
    whole = subprocess.run([sys.executable, "-m", "dynast_cli", "video", "clip.mp4", "s.png", "-o", "whole",
                            "--threads", "1", *common], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                           timeout=300)
    assert whole.returncode == 0, whole.stderr
    ranks = _spawn_ranks(["video", "clip.mp4", "s.png", "-o", "frames", *common], tmp_path)
    assert [r.returncode for r in ranks] == [0, 0], [r.stderr for r in ranks]
    assert ranks[1].stdout.startswith("wrote frames (shard 1/2: frames 7-10 of 10, 4 frames")
    assert ranks[0].stdout.splitlines()[-1] == "wrote frames (joined 10 frames, 64x48, 12 fps)"
    _assert_same_images(_pngs(tmp_path / "frames", "frame_*.png"), _pngs(tmp_path / "whole"))


def test_temporaries_of_a_killed_run_do_not_stop_the_join_or_a_resumed_run(clip, style, tmp_path, registered,
                                                                           monkeypatch):
    """A shard or run killed with -9 leaves atomic_output's hidden temporaries in the .partial folder
    (a frame and the settings file half written); the join and a resumed run still finish and remove
    the folder, temporaries included."""
    monkeypatch.chdir(tmp_path)
    partial = tmp_path / "out.mp4.partial"

    def kill_leftovers() -> None:
        (partial / ".frame_000013.png.k1ll3d.part.png").write_bytes(b"\x89PNG half")
        (partial / f".{SETTINGS_FILE}.k1ll3d.part").write_text("{")

    assert _video("clip.mp4", "style.png", "-o", "out.mp4", "--batch", "4", "--shard", "0/2").exit_code == 0
    kill_leftovers()
    assert _video("clip.mp4", "style.png", "-o", "out.mp4", "--batch", "4", "--shard", "1/2").exit_code == 0
    joined = _video("clip.mp4", "style.png", "-o", "out.mp4", "--join")
    assert joined.exit_code == 0, joined.output
    assert not partial.exists() and len(list(VideoReader(tmp_path / "out.mp4"))) == N
    # an unsharded run: killed after its first frames, resumed
    assert _video("clip.mp4", "style.png", "-o", "out.mp4", "--batch", "4", "--shard", "0/2", "--overwrite").exit_code == 0
    kill_leftovers()
    resumed = _video("clip.mp4", "style.png", "-o", "out.mp4", "--batch", "4", "--resume", "--overwrite")
    assert resumed.exit_code == 0, resumed.output
    assert not partial.exists() and len(list(VideoReader(tmp_path / "out.mp4"))) == N
    # a file this tool did not write: the video is written, the folder kept with a note
    assert _video("clip.mp4", "style.png", "-o", "out.mp4", "--batch", "4", "--shard", "0/2", "--overwrite").exit_code == 0
    (partial / "notes.txt").write_text("mine")
    resumed = _video("clip.mp4", "style.png", "-o", "out.mp4", "--batch", "4", "--resume", "--overwrite")
    assert resumed.exit_code == 0, resumed.output
    assert "kept out.mp4.partial/: it holds files this tool did not write" in resumed.output
    assert sorted(p.name for p in partial.iterdir()) == ["notes.txt"]
    assert len(list(VideoReader(tmp_path / "out.mp4"))) == N


def test_join_accepts_a_stream_shorter_than_its_container_says(style, tmp_path, registered, monkeypatch):
    """A truncated AVI still says 24 frames in its header but holds fewer: the last shard writes what
    there is and says so, and the join encodes those frames instead of waiting for frames that cannot
    come. A tail missing from a stream that has it is still refused."""
    import cv2

    monkeypatch.chdir(tmp_path)
    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H))
    for frame in square_frames():
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    data = whole.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: int(len(data) * 0.75)])
    reader = VideoReader(tmp_path / "cut.avi")
    real = sum(1 for _ in reader)
    if not (reader.frame_count == N and 12 < real < N):
        pytest.skip(f"this OpenCV build reads the truncated AVI as {reader.frame_count} frames, {real} readable")
    assert _video("cut.avi", "style.png", "-o", "out.mp4", "--batch", "4", "--shard", "0/2").exit_code == 0
    last = _video("cut.avi", "style.png", "-o", "out.mp4", "--batch", "4", "--shard", "1/2")
    assert last.exit_code == 0, last.output
    assert f"the stream ends after frame {real} (its container says {N} frames)" in last.output
    joined = _video("cut.avi", "style.png", "-o", "out.mp4", "--join")
    assert joined.exit_code == 0, joined.output
    assert f"joined {real} frames" in joined.output and f"the stream ends after frame {real}" in joined.output
    assert len(list(VideoReader(tmp_path / "out.mp4"))) == real and not Path("out.mp4.partial").exists()
    # the whole file has frame 13 on: a missing second shard is still a missing shard
    assert _video("whole.avi", "style.png", "-o", "w.mp4", "--batch", "4", "--shard", "0/2").exit_code == 0
    one_error_line(_video("whole.avi", "style.png", "-o", "w.mp4", "--join"), "w.mp4.partial",
                   f"missing frames 13-{N} of {N}", code=2)
    # without a shard's record the join does not guess (the record is what the last shard found)
    assert _video("cut.avi", "style.png", "-o", "again.mp4", "--batch", "4", "--shard", "0/2").exit_code == 0
    assert _video("cut.avi", "style.png", "-o", "again.mp4", "--batch", "4", "--shard", "1/2").exit_code == 0
    for record in Path("again.mp4.partial").glob(".dynast-video-end-*"):
        record.unlink()
    one_error_line(_video("cut.avi", "style.png", "-o", "again.mp4", "--join"), "again.mp4.partial",
                   f"missing frames {real + 1}-{N} of {N}", code=2)
    # a stream that ends exactly where the last shard begins: that shard reads nothing, and records it
    (tmp_path / "cut12.avi").write_bytes(data[: int(len(data) * 0.6)])
    if sum(1 for _ in VideoReader(tmp_path / "cut12.avi")) == 12:
        assert _video("cut12.avi", "style.png", "-o", "f12", "--batch", "4", "--shard", "0/2").exit_code == 0
        last = _video("cut12.avi", "style.png", "-o", "f12", "--batch", "4", "--shard", "1/2")
        assert last.exit_code == 0 and f"the stream has no frame 13 (its container says {N} frames)" in last.output
        (tmp_path / "f12" / ".frame_000003.png.k1ll3d.part.png").write_bytes(b"half")
        joined = _video("cut12.avi", "style.png", "-o", "f12", "--join")
        assert joined.exit_code == 0 and "joined 12 frames" in joined.output, joined.output
        assert sorted(p.name for p in (tmp_path / "f12").iterdir() if not p.name.startswith("frame_")) == [
            SETTINGS_FILE]  # the frame folder keeps its settings (for --resume), not the records or temporaries


def test_torchrun_environment_video_a_failed_rank_of_three_leaves_none_waiting(vgg16_cached, tmp_path):
    """Rank 1 of 3 fails during its span: rank 0 says the video is not joined, rank 2 (done, nothing to
    wait for) exits 0: it no longer waits in the barrier that only a join needs (where it failed on
    gloo's "Connection closed by peer", exit 70)."""
    write_clip(tmp_path / "clip.mp4", square_frames(6))
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    fault = _FAULT.format(function="dynast_cli.pipelines.video:run_video", error='DynastError("disk on fire")')
    ranks = _spawn_ranks(["video", "clip.mp4", "s.png", "-o", "frames", "-m", "adain", "--device", "cpu",
                          "--style-size", "32", "--batch", "2"], tmp_path, n=3, prelude=fault)
    assert [r.returncode for r in ranks] == [1, 1, 0], [r.stderr for r in ranks]
    assert ranks[0].stderr.strip().splitlines()[-1] == "error: not joined: rank 1 of 3 failed: disk on fire"
    assert ranks[1].stderr.strip().splitlines()[-1] == "error: disk on fire"
    assert ranks[2].stdout.startswith("wrote frames (shard 2/3: frames 5-6 of 6, 2 frames")
