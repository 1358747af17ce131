"""Video IO, the video pipeline (run_video, evaluate_video) and `dynast video` / `dynast eval video`.

Clips are generated here (a square moving over a gradient, 24 frames of 64x48 at 12 fps) and the
style method is a tiny stand-in that counts the frames it stylises, so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import dynast_cli.cli  # noqa: F401  (registers the subcommands)
from dynast_cli.cli.app import app
from dynast_cli.errors import InputError, OutputError, UsageError
from dynast_cli.io import video as video_io
from dynast_cli.io.video import VideoReader, VideoWriter, has_audio
from dynast_cli.styles import METHODS, MethodSpec
from dynast_cli.pipelines.video import evaluate_video, run_video
from stand_ins import one_thread  # noqa: F401 (autouse fixture: palette distances are slow with threads on a busy CPU)

runner = CliRunner()
FPS, W, H, N = 12.0, 64, 48, 24


def square_frames(n: int = N, w: int = W, h: int = H) -> list[np.ndarray]:
    """RGB uint8 frames: a blue square moving right by 2 px a frame over a colour gradient."""
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([xx * 3, yy * 4, np.full_like(xx, 80)], axis=2).clip(0, 255).astype(np.uint8)
    frames = []
    for i in range(n):
        frame = background.copy()
        frame[10:26, 4 + 2 * i:20 + 2 * i] = (30, 30, 230)
        frames.append(frame)
    return frames


def write_clip(path: Path, frames: list[np.ndarray], fps: float = FPS) -> Path:
    fourcc = "mp4v" if path.suffix == ".mp4" else "MJPG"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


class Tint:
    """Stand-in style method: half the frame, half the styles' mean colour; counts what it does."""

    name = "tint"

    def __init__(self, interrupt_after: int | None = None, attention: str = "softmax"):
        self.interrupt_after, self.attention = interrupt_after, attention
        self.frames = self.prepared = 0

    def prepare_style(self, style: torch.Tensor) -> torch.Tensor:
        self.prepared += 1
        return style.mean(dim=(2, 3), keepdim=True)

    def stylize(self, content, states, mix, alpha=1.0):
        if self.interrupt_after is not None and self.frames >= self.interrupt_after:
            raise KeyboardInterrupt
        self.frames += content.shape[0]
        return 0.5 * content + 0.5 * sum(m * s for m, s in zip(mix, states))


class Flicker(Tint):
    """Like Tint, with a random brightness per frame: temporally unsteady."""

    name = "flicker"

    def stylize(self, content, states, mix, alpha=1.0):
        out = super().stylize(content, states, mix, alpha)
        return (out + 0.3 * (torch.rand(content.shape[0], 1, 1, 1) - 0.5)).clamp(0, 1)


@pytest.fixture(autouse=True)
def no_texture_network(monkeypatch):
    """`eval video`'s texture column needs EfficientNet-Lite0: none here (that column is tested in
    test_style_dynast_video.py with a stand-in), so these tests neither load nor depend on it."""
    monkeypatch.setattr("dynast_cli.quality.load_quality_network", lambda path=None, device="cpu": (None, None))


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_clip(tmp_path / "clip.mp4", square_frames())


@pytest.fixture
def style(tmp_path) -> Path:
    path = tmp_path / "style.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def registered(monkeypatch) -> list[Tint]:
    """Registers `tint` (whose factory takes `attention`) and `flicker`; returns the methods made."""
    made: list[Tint] = []

    def factory(cls):
        def make(weights=None, device=None, vgg=None, attention="softmax"):
            made.append(cls(attention=attention))
            return made[-1]
        return make

    takes_attention = {"attention": "softmax or cosine"}
    monkeypatch.setitem(METHODS, "tint", MethodSpec("tint", "test stand-in", factory(Tint), options=takes_attention))
    monkeypatch.setitem(METHODS, "flicker", MethodSpec("flicker", "test stand-in", factory(Flicker), options=takes_attention))
    return made


def frames_of(path: Path) -> list[np.ndarray]:
    return list(VideoReader(path))


def expected_tint(frame: np.ndarray, style: Path) -> np.ndarray:
    mean = np.asarray(Image.open(style), np.float32).reshape(-1, 3).mean(0) / 255.0
    return np.round((0.5 * frame / 255.0 + 0.5 * mean) * 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# reading and writing
# ---------------------------------------------------------------------------------------------


def test_reader_reports_fps_size_count_and_cut(clip):
    reader = VideoReader(clip)
    assert (reader.fps, reader.width, reader.height, reader.frame_count) == (FPS, W, H, N)
    cut = VideoReader(clip, start=0.5, end=1.5)
    frames = list(cut)
    assert cut.frame_count == len(frames) == 12
    # the cut starts at frame 6: its square is where frame 6's is (mp4v is lossy: compare loosely)
    source = square_frames()
    assert np.abs(frames[0].astype(int) - source[6]).mean() < np.abs(frames[0].astype(int) - source[4]).mean()
    assert len(list(reader.frames(skip=20))) == 4
    with pytest.raises(InputError, match="past the end"):
        VideoReader(clip, start=5.0)
    with pytest.raises(UsageError, match=r"^--end 0.5s is not after --start 1s$"):  # exit 1: the options alone
        VideoReader(clip, start=1.0, end=0.5)
    with pytest.raises(UsageError, match=r"^--end 0s is not after --start 0s$"):
        VideoReader(clip, end=0.0)
    with pytest.raises(InputError, match="leaves no frames"):  # a cut of less than one frame: the file's rate
        VideoReader(clip, start=1.0, end=1.01)


def test_an_image_is_not_taken_for_a_one_frame_video(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)
    with pytest.raises(InputError, match=r"photo.jpg: is an image, not a video: .*`dynast style`"):
        VideoReader(path)
    still = tmp_path / "still.gif"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(still)
    with pytest.raises(InputError, match="is an image, not a video"):
        VideoReader(still)
    # an animation is a video: not refused for its suffix
    frames = [Image.fromarray(np.full((16, 16, 3), v, np.uint8)) for v in (0, 120, 240)]
    for name in ("anim.gif", "anim.png"):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:], duration=100)
        try:
            reader = VideoReader(tmp_path / name)
        except InputError as exc:
            assert "is an image" not in str(exc), exc
        else:
            assert reader.frame_count in (None, 3)


def test_frame_folder_reads_in_natural_order(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(1, 12):  # f1 .. f11: lexical order would put f10 before f2
        Image.fromarray(np.full((8, 10, 3), i * 20, np.uint8)).save(folder / f"f{i}.png")
    reader = VideoReader(folder, fps=5)
    assert (reader.fps, reader.width, reader.height, reader.frame_count) == (5.0, 10, 8, 11)
    assert [int(f[0, 0, 0]) for f in reader] == [i * 20 for i in range(1, 12)]


def test_writer_writes_atomically_and_discards_on_error(tmp_path):
    out = tmp_path / "out.avi"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, FPS, (W, H)) as writer:
            writer.write(square_frames(1)[0])
            assert not out.exists()  # a temporary file until closed
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with VideoWriter(out, FPS, (W, H)) as writer:
        for frame in square_frames():
            writer.write(frame)
    assert [p.name for p in tmp_path.iterdir()] == ["out.avi"]
    assert len(frames_of(out)) == N


# ---------------------------------------------------------------------------------------------
# run_video
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_output_keeps_frames_fps_and_size(clip, style, tmp_path, suffix):
    method = Tint()
    report = run_video(clip, [style], tmp_path / f"out{suffix}", method=method, batch=5)
    out = VideoReader(report.output)
    assert (out.fps, out.width, out.height, out.frame_count) == (FPS, W, H, N)
    assert (report.frames, report.computed, report.size) == (N, N, (W, H))
    assert method.frames == N and method.prepared == 1  # the style is encoded once per video
    assert not (tmp_path / f"out{suffix}.partial").exists()
    # what was written is the stylisation (loosely: the codec is lossy)
    first = frames_of(report.output)[0].astype(int)
    assert np.abs(first - expected_tint(frames_of(clip)[0], style)).mean() < 6


def test_frame_folder_output_is_exact_and_odd_sizes_are_evened_for_files(clip, style, tmp_path):
    report = run_video(clip, [style], tmp_path / "frames", method=Tint())
    written = sorted((tmp_path / "frames").glob("frame_*.png"))
    assert len(written) == N and written[0].name == "frame_000001.png"
    got = np.asarray(Image.open(written[3])).astype(int)
    assert np.abs(got - expected_tint(frames_of(clip)[3], style)).max() <= 1
    # max_size 33 on 64x48 -> 33x25, which a video codec cannot hold: 32x24
    assert run_video(clip, [style], tmp_path / "small", method=Tint(), max_size=33).size == (33, 25)
    small = run_video(clip, [style], tmp_path / "small.mp4", method=Tint(), max_size=33)
    assert small.size == (32, 24) and (VideoReader(small.output).width, VideoReader(small.output).height) == (32, 24)
    assert report.output == tmp_path / "frames"


def test_attention_reaches_methods_that_take_it(clip, style, tmp_path, registered, monkeypatch):
    run_video(clip, [style], tmp_path / "a", method="tint", attention="cosine")
    assert registered[-1].attention == "cosine"
    # a method whose spec lists no `attention` option is built without it
    monkeypatch.setitem(METHODS, "plain", MethodSpec("plain", "no variants", lambda weights, device, vgg: Tint()))
    assert run_video(clip, [style], tmp_path / "b", method="plain", attention="cosine").frames == N


class SizeRecorder(Tint):
    """Tint that records the (H, W) it is asked to paint."""

    name = "sizes"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sizes: set[tuple[int, int]] = set()

    def stylize(self, content, states, mix, alpha=1.0):
        self.sizes.add(tuple(content.shape[-2:]))
        return super().stylize(content, states, mix, alpha)


def test_frames_are_painted_at_the_work_size_as_images_are(clip, style, tmp_path, monkeypatch):
    """`--work-size` as in `dynast style`: a registered method's default (dynast: 512), 0 for full size."""
    method = SizeRecorder()
    report = run_video(clip, [style], tmp_path / "small", method=method, work_size=32)
    assert method.sizes == {(24, 32)} and report.size == (W, H)  # painted at 32 px, written at 64x48
    method = SizeRecorder()
    run_video(clip, [style], tmp_path / "full", method=method, work_size=0)
    assert method.sizes == {(H, W)}
    # a registered method's own working size applies by default
    monkeypatch.setitem(METHODS, "sizes", MethodSpec("sizes", "stand-in", lambda weights, device, vgg: made,
                                                     work_size=40))
    made = SizeRecorder()
    run_video(clip, [style], tmp_path / "spec", method="sizes")
    assert made.sizes == {(30, 40)}


def test_resume_after_ctrl_c_skips_done_frames(clip, style, tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        run_video(clip, [style], out, method=Tint(interrupt_after=8), batch=4)
    # Ctrl-C finalised a playable file of the frames done; the frames wait in out.mp4.partial
    assert len(frames_of(out)) == 8
    assert len(list((tmp_path / "out.mp4.partial").glob("frame_*.png"))) == 8
    with pytest.raises(OutputError, match="interrupted run"):
        run_video(clip, [style], out, method=Tint())
    with pytest.raises(OutputError, match=r"other settings \(alpha\)"):
        run_video(clip, [style], out, method=Tint(), alpha=0.5, resume=True)
    method = Tint()
    report = run_video(clip, [style], out, method=method, resume=True)
    assert method.frames == N - 8 and (report.frames, report.computed) == (N, N - 8)
    assert len(frames_of(out)) == N and not (tmp_path / "out.mp4.partial").exists()


def test_resumed_frame_folder_matches_an_uninterrupted_run(clip, style, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_video(clip, [style], tmp_path / "resumed", method=Tint(interrupt_after=12), batch=4)
    method = Tint()
    run_video(clip, [style], tmp_path / "resumed", method=method, resume=True)
    assert method.frames == N - 12
    run_video(clip, [style], tmp_path / "whole", method=Tint())
    for a, b in zip(sorted((tmp_path / "resumed").glob("frame_*.png")), sorted((tmp_path / "whole").glob("frame_*.png")), strict=True):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), a.name


def test_existing_output_needs_overwrite(clip, style, tmp_path):
    out = tmp_path / "out.mp4"
    run_video(clip, [style], out, method=Tint(), end=1.0)
    with pytest.raises(OutputError, match="already exists"):
        run_video(clip, [style], out, method=Tint())
    assert run_video(clip, [style], out, method=Tint(), overwrite=True).frames == N
    run_video(clip, [style], tmp_path / "frames", method=Tint())
    with pytest.raises(OutputError, match="holds frames"):
        run_video(clip, [style], tmp_path / "frames", method=Tint())


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_not_a_video_or_no_frames_is_a_clear_error_and_writes_nothing(style, tmp_path):
    fake = tmp_path / "clip.mp4"
    fake.write_text("not a video")
    empty = tmp_path / "empty.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H)).release()
    (tmp_path / "no_frames").mkdir()
    before = _listing(tmp_path)
    with pytest.raises(InputError) as exc:
        run_video(fake, [style], tmp_path / "out.mp4", method=Tint())
    assert str(exc.value) == f"{fake}: not a video (OpenCV cannot open it)"
    with pytest.raises(InputError, match="empty.avi: has no frames"):
        run_video(empty, [style], tmp_path / "out.mp4", method=Tint())
    with pytest.raises(InputError, match="no_frames: has no frames"):
        run_video(tmp_path / "no_frames", [style], tmp_path / "out.mp4", method=Tint())
    with pytest.raises(InputError, match="no such file"):
        run_video(tmp_path / "missing.mp4", [style], tmp_path / "out.mp4", method=Tint())
    assert _listing(tmp_path) == before


def test_output_under_a_file_or_of_unknown_format_is_a_clear_error(clip, style, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    before = _listing(tmp_path)
    with pytest.raises(OutputError, match="blocker: is a file, not a folder"):
        run_video(clip, [style], blocker / "out.mp4", method=Tint())
    with pytest.raises(OutputError, match="unsupported video format '.mov'"):
        run_video(clip, [style], tmp_path / "out.mov", method=Tint())
    assert _listing(tmp_path) == before


def test_read_only_folder_is_a_clear_error(clip, style, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):
        pytest.skip("running as root: permissions do not stop writes")
    with pytest.raises(OutputError, match="locked: folder is not writable"):
        run_video(clip, [style], locked / "out.mp4", method=Tint())
    assert list(locked.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# audio
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def clip_with_audio(tmp_path) -> Path:
    exe = video_io.ffmpeg_exe()
    if exe is None:
        pytest.skip("no ffmpeg (pip install imageio-ffmpeg)")
    path = tmp_path / "talk.mp4"
    subprocess.run(
        [exe, "-v", "error", "-f", "lavfi", "-i", f"testsrc=size={W}x{H}:rate={FPS:g}", "-f", "lavfi",
         "-i", "sine=frequency=440:sample_rate=22050", "-t", "2", "-c:v", "mpeg4", "-c:a", "aac", str(path)],
        check=True,
    )
    return path


def test_audio_track_is_kept(clip_with_audio, style, tmp_path):
    assert has_audio(clip_with_audio) and not has_audio(write_clip(tmp_path / "mute.mp4", square_frames(4)))
    for name in ("out.mp4", "out.avi"):
        report = run_video(clip_with_audio, [style], tmp_path / name, method=Tint(), start=0.5)
        assert has_audio(report.output) and report.notes == []
        out = VideoReader(report.output)
        assert out.frame_count == len(list(out)) == N - 6  # the header agrees with the frames


def test_without_ffmpeg_the_video_is_written_with_a_notice(clip_with_audio, style, tmp_path, monkeypatch):
    monkeypatch.setattr(video_io, "ffmpeg_exe", lambda: None)
    report = run_video(clip_with_audio, [style], tmp_path / "out.mp4", method=Tint())
    assert report.notes == ["audio not copied: no ffmpeg found (pip install 'dynast-cli[audio]')"]
    assert VideoReader(report.output).frame_count == N


# ---------------------------------------------------------------------------------------------
# evaluate_video and the CLI
# ---------------------------------------------------------------------------------------------


def test_evaluate_ranks_a_flickering_method_worse(clip, style, tmp_path, registered):
    report = evaluate_video(
        clip, style, ["tint:cosine", "flicker"], max_frames=12, max_size=None, output=tmp_path / "t.json"
    )
    rows = {row.name: row for row in report.rows}
    assert list(rows) == ["source (no stylisation)", "tint:cosine", "flicker", "tint:cosine per-frame image"]
    assert registered[0].attention == "cosine"
    assert rows["flicker"].warping_error > 5 * rows["tint:cosine"].warping_error
    # per-frame image stylisation encodes the style for every frame; the output is the same
    assert rows["tint:cosine per-frame image"].warping_error == pytest.approx(rows["tint:cosine"].warping_error)
    assert registered[0].prepared == 1 + 12
    assert all(row.frames_per_second > 0 for row in report.rows[1:])
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["frames"] == 12 and saved["size"] == [W, H] and len(saved["rows"]) == 4


def test_cli_video_and_eval_video(clip, style, tmp_path, registered, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["video", "clip.mp4", "style.png", "-m", "tint", "--batch", "3", "--end", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote clip_style.mp4 (12 frames, 64x48, 12 fps" in result.output
    assert VideoReader(tmp_path / "clip_style.mp4").frame_count == 12
    Path("bad.mp4").write_text("nope")
    bad = runner.invoke(app, ["video", "bad.mp4", "style.png", "-m", "tint"])
    assert bad.exit_code == 2 and bad.output.strip() == "error: bad.mp4: not a video (OpenCV cannot open it)"
    result = runner.invoke(app, ["eval", "video", "clip.mp4", "style.png", "--methods", "tint,flicker",
                                 "--max-frames", "6", "--no-per-frame", "-o", "eval.json"])
    assert result.exit_code == 0, result.output
    assert "flicker" in result.output and "wrote eval.json" in result.output
    assert [row["name"] for row in json.loads(Path("eval.json").read_text())["rows"]] == [
        "source (no stylisation)", "tint", "flicker"]
