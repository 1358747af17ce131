"""Failure paths of `dynast video` and `dynast eval video` (issue #14): bad frames in a frame folder,
the resume state an error or Ctrl-C leaves, short clips and existing reports in `eval video`, and the
audio notice without ffmpeg.

Frames are generated here and the style method is the stand-in of test_video.py, so nothing is downloaded.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dynast_cli.cli.app import app
from dynast_cli.io import video as video_io
from dynast_cli.io.video import VideoReader, container_has_audio
from dynast_cli.styles import METHODS, MethodSpec
from dynast_cli.pipelines.video import run_video
from test_video import FPS, H, N, W, Tint, registered, square_frames, style, write_clip  # noqa: F401 (fixtures)

runner = CliRunner()


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def frame_folder(root: Path, n: int = 6, bad: tuple[int, ...] = (), name: str = "frames") -> Path:
    """``root/name`` with ``n`` PNGs ``f0.png ...`` of distinct flat grey levels (up to 25 frames); the ``bad``
    ones are garbage."""
    folder = root / name
    folder.mkdir()
    for i in range(n):
        if i in bad:
            (folder / f"f{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n but then garbage")
        else:
            Image.fromarray(np.full((H, W, 3), (20 + 30 * i) % 250, np.uint8)).save(folder / f"f{i}.png")
    return folder


def levels(folder: Path) -> list[int]:
    """The grey level of each PNG frame written to a frame-folder output."""
    return [int(np.asarray(Image.open(p))[0, 0, 0]) for p in sorted(folder.glob("frame_*.png"))]


def tinted(level: int, style: Path) -> int:
    """What the Tint stand-in makes of a flat grey ``level`` (red channel)."""
    mean = np.asarray(Image.open(style), np.float32).reshape(-1, 3).mean(0)[0] / 255.0
    return int(np.round((0.5 * level / 255.0 + 0.5 * mean) * 255))


@pytest.fixture
def stopper(monkeypatch) -> list[int]:
    """Registers `tint` whose first instance raises KeyboardInterrupt (Ctrl-C) after ``stopper[0]`` frames
    (8 unless the test changes it); later instances run through, as a resumed run does."""
    after, made = [8], []

    def make(weights=None, device=None, vgg=None, attention="softmax"):
        made.append(Tint(interrupt_after=None if made else after[0], attention=attention))
        return made[-1]

    monkeypatch.setitem(METHODS, "tint", MethodSpec("tint", "test stand-in", make, options={"attention": ""}))
    return after


# ---------------------------------------------------------------------------------------------
# bad frames in a frame folder
# ---------------------------------------------------------------------------------------------


def test_corrupt_frame_is_repeated_with_a_warning_and_the_video_plays(tmp_path, style, registered, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frame_folder(tmp_path, 6, bad=(3,))
    result = runner.invoke(app, ["video", "frames", "style.png", "-m", "tint", "-o", "out.mp4", "--batch", "2"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: frames/f3.png: ") and warnings[0].endswith("replaced by the previous frame")
    assert "note: 1 unreadable frame(s) replaced by a neighbour, frame count and timing kept: f3.png" in result.stderr
    assert "wrote out.mp4 (6 frames, 64x48, 25 fps" in result.stdout and "; 1 repeated)" in result.stdout
    assert "Traceback" not in result.output
    out = VideoReader(tmp_path / "out.mp4")
    frames = list(out)
    assert out.frame_count == len(frames) == 6 and (out.fps, out.width, out.height) == (25.0, W, H)
    # the bad frame repeats its neighbour (mp4v is lossy: compare loosely)
    assert abs(int(frames[3].mean()) - int(frames[2].mean())) <= 2 < abs(int(frames[4].mean()) - int(frames[2].mean()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "out.mp4", "style.png"]  # no .partial left


def test_bad_first_frame_repeats_the_next_readable_one(tmp_path, style):
    folder = frame_folder(tmp_path, 6, bad=(0, 1, 4))
    notices = []
    report = run_video(folder, [style], tmp_path / "out", method=Tint(), batch=4, warn=notices.append)
    assert report.frames == 6 and [p.name for p in report.repeated] == ["f0.png", "f1.png", "f4.png"]
    assert [n.split(": ")[0] for n in notices] == [str(folder / f) for f in ("f0.png", "f1.png", "f4.png")]
    assert notices[0].endswith("replaced by the next readable frame")
    assert notices[2].endswith("replaced by the previous frame")
    source = [20 + 30 * i for i in (2, 2, 2, 3, 3, 5)]
    assert np.abs(np.subtract(levels(tmp_path / "out"), [tinted(v, style) for v in source])).max() <= 1


def test_resume_repeats_bad_frames_as_an_uninterrupted_run(tmp_path, style):
    folder = frame_folder(tmp_path, 12, bad=(8, 9))  # the first two frames after the interruption are bad
    with pytest.raises(KeyboardInterrupt):
        run_video(folder, [style], tmp_path / "resumed", method=Tint(interrupt_after=8), batch=4)
    report = run_video(folder, [style], tmp_path / "resumed", method=Tint(), resume=True)
    assert (report.frames, report.computed, len(report.repeated)) == (12, 4, 2)
    run_video(folder, [style], tmp_path / "whole", method=Tint())
    assert levels(tmp_path / "resumed") == levels(tmp_path / "whole")
    whole = levels(tmp_path / "whole")
    assert whole[7] == whole[8] == whole[9] != whole[10] and abs(whole[7] - tinted(20 + 30 * 7, style)) <= 1


def test_every_frame_bad_is_refused_before_any_work(tmp_path, style, registered, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frame_folder(tmp_path, 3, bad=(0, 1, 2))
    before = _listing(tmp_path)
    result = runner.invoke(app, ["video", "frames", "style.png", "-m", "tint", "-o", "out.mp4"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: frames: has no readable frames (all 3 images are corrupt or unreadable)"
    assert registered == []  # refused before the method was built
    assert _listing(tmp_path) == before


def test_an_error_after_frames_were_written_says_where_they_are_kept(tmp_path, style, registered, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = frame_folder(tmp_path, 6)
    good = folder / "f4.png"
    good.rename(tmp_path / "f4.keep")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(good)  # a frame of another size: an error
    result = runner.invoke(app, ["video", "frames", "style.png", "-m", "tint", "-o", "out.mp4", "--batch", "2"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: frames/f4.png: frame is 30x20, the first frame is 64x48; "
        "partial work kept in out.mp4.partial/, rerun with --resume to continue")
    assert not (tmp_path / "out.mp4").exists()
    assert len(list((tmp_path / "out.mp4.partial").glob("frame_*.png"))) == 4
    # once the frame is fixed, --resume finishes the video from there
    (tmp_path / "f4.keep").replace(good)
    result = runner.invoke(app, ["video", "frames", "style.png", "-m", "tint", "-o", "out.mp4", "--resume"])
    assert result.exit_code == 0, result.output
    assert "; 4 resumed)" in result.stdout
    assert VideoReader(tmp_path / "out.mp4").frame_count == 6 and not (tmp_path / "out.mp4.partial").exists()


def test_an_error_before_any_frame_leaves_nothing_behind(tmp_path, style, registered, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = frame_folder(tmp_path, 6)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "f1.png")
    before = _listing(tmp_path)
    for out in ("out.mp4", "outframes", "new/deeper/out.mp4", "new/frames"):
        result = runner.invoke(app, ["video", "frames", "style.png", "-m", "tint", "-o", out, "--batch", "4"])
        assert result.exit_code == 2
        assert result.output.strip() == "error: frames/f1.png: frame is 30x20, the first frame is 64x48"
        assert _listing(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------------------------


def test_ctrl_c_says_the_work_is_kept_and_how_to_resume(tmp_path, style, stopper, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_clip(tmp_path / "clip.mp4", square_frames())
    result = runner.invoke(app, ["video", "clip.mp4", "style.png", "-m", "tint", "-o", "out.mp4", "--batch", "4"])
    assert result.exit_code == 130
    assert result.output.strip() == (
        f"error: out.mp4: interrupted after 8 of {N} frames (out.mp4 plays them); "
        "partial work kept in out.mp4.partial/, rerun with --resume to continue")
    assert VideoReader(tmp_path / "out.mp4").frame_count == 8
    result = runner.invoke(app, ["video", "clip.mp4", "style.png", "-m", "tint", "-o", "out.mp4", "--resume"])
    assert result.exit_code == 0, result.output
    assert f"wrote out.mp4 ({N} frames" in result.stdout and "; 8 resumed)" in result.stdout
    assert not (tmp_path / "out.mp4.partial").exists()


def test_ctrl_c_before_any_frame_leaves_nothing_behind(tmp_path, style, stopper, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stopper[0] = 0
    write_clip(tmp_path / "clip.mp4", square_frames())
    before = _listing(tmp_path)
    result = runner.invoke(app, ["video", "clip.mp4", "style.png", "-m", "tint", "-o", "out.mp4"])
    assert result.exit_code == 130 and result.output.strip() == "error: interrupted"
    assert _listing(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# eval video
# ---------------------------------------------------------------------------------------------


def test_eval_video_needs_two_frames(tmp_path, style, registered, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frame_folder(tmp_path, 1, name="one")
    write_clip(tmp_path / "one.avi", square_frames(1))
    before = _listing(tmp_path)
    for source in ("one", "one.avi"):
        result = runner.invoke(app, ["eval", "video", source, "style.png", "--methods", "tint", "-o", "t.json"])
        assert result.exit_code == 2
        assert result.output.strip() == (
            f"error: {source}: needs at least 2 frames to measure temporal consistency, has 1")
    assert registered == [] and _listing(tmp_path) == before


def test_eval_video_refuses_an_existing_report_before_any_work(tmp_path, style, registered, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_clip(tmp_path / "clip.mp4", square_frames(6))
    Path("t.json").write_text("earlier results")
    args = ["eval", "video", "clip.mp4", "style.png", "--methods", "tint", "--max-frames", "4", "--no-per-frame"]
    result = runner.invoke(app, [*args, "-o", "t.json"])
    assert result.exit_code == 4
    assert result.output.strip() == "error: t.json: already exists (pass --overwrite to replace it)"
    assert Path("t.json").read_text() == "earlier results" and registered == []
    Path("clip_temporal.json").write_text("default name too")
    result = runner.invoke(app, args)
    assert result.exit_code == 4 and "clip_temporal.json: already exists" in result.output
    assert registered == []
    result = runner.invoke(app, [*args, "-o", "t.json", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert json.loads(Path("t.json").read_text())["frames"] == 4
    result = runner.invoke(app, [*args, "-o", "missing/t.json"])  # a missing folder is created, as elsewhere
    assert result.exit_code == 0, result.output
    assert json.loads(Path("missing/t.json").read_text())["frames"] == 4


# ---------------------------------------------------------------------------------------------
# the audio notice without ffmpeg
# ---------------------------------------------------------------------------------------------


def _chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _list(kind: bytes, *parts: bytes) -> bytes:
    return _chunk(b"LIST", kind + b"".join(parts))


def avi_with_audio(path: Path, frames: list[np.ndarray], fps: float = FPS, rate: int = 8000) -> Path:
    """A Motion-JPEG AVI with a PCM audio stream (a 440 Hz tone), written without ffmpeg."""
    h, w = frames[0].shape[:2]
    jpegs = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes() for f in frames]
    per_frame = int(rate / fps)
    pcm = (np.sin(2 * np.pi * 440 * np.arange(per_frame * len(frames)) / rate) * 8000).astype("<i2")
    strh = "<4s4sIHHIIIIIIII4h"
    header = _list(
        b"hdrl",
        _chunk(b"avih", struct.pack("<14I", int(1e6 / fps), 0, 0, 0x10, len(frames), 0, 2, 0, w, h, 0, 0, 0, 0)),
        _list(b"strl", _chunk(b"strh", struct.pack(strh, b"vids", b"MJPG", 0, 0, 0, 0, 1, int(fps), 0, len(frames),
                                                   0, 0xFFFFFFFF, 0, 0, 0, w, h)),
              _chunk(b"strf", struct.pack("<IiiHH4sIiiII", 40, w, h, 1, 24, b"MJPG", w * h * 3, 0, 0, 0, 0))),
        _list(b"strl", _chunk(b"strh", struct.pack(strh, b"auds", b"\0" * 4, 0, 0, 0, 0, 2, 2 * rate, 0, len(pcm),
                                                   0, 0xFFFFFFFF, 2, 0, 0, 0, 0)),
              _chunk(b"strf", struct.pack("<HHIIHHH", 1, 1, rate, 2 * rate, 2, 16, 0))),
    )
    movi, index, offset = [], [], 4
    for i, jpg in enumerate(jpegs):
        for cid, data in ((b"00dc", jpg), (b"01wb", pcm[i * per_frame:(i + 1) * per_frame].tobytes())):
            movi.append(_chunk(cid, data))
            index.append(struct.pack("<4sIII", cid, 0x10, offset, len(data)))
            offset += len(movi[-1])
    path.write_bytes(_chunk(b"RIFF", b"AVI " + header + _list(b"movi", *movi) + _chunk(b"idx1", b"".join(index))))
    return path


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def mp4_boxes(*handlers: bytes) -> bytes:
    """A skeleton MP4: ftyp, a large mdat, and a moov with one trak per handler type (vide, soun)."""
    traks = [_box(b"trak", _box(b"tkhd", b"\0" * 84), _box(b"mdia", _box(b"hdlr", b"\0" * 8 + h + b"\0" * 13)))
             for h in handlers]
    moov = _box(b"moov", _box(b"mvhd", b"\0" * 100), *traks)
    return _box(b"ftyp", b"isom\0\0\0\0") + _box(b"mdat", b"\0" * 5000) + moov  # moov after mdat, as ffmpeg writes


def test_container_headers_tell_whether_there_is_audio(tmp_path):
    assert container_has_audio(avi_with_audio(tmp_path / "talk.avi", square_frames(4))) is True
    assert container_has_audio(write_clip(tmp_path / "mute.avi", square_frames(4))) is False
    assert container_has_audio(write_clip(tmp_path / "mute.mp4", square_frames(4))) is False
    (tmp_path / "talk.mp4").write_bytes(mp4_boxes(b"vide", b"soun"))
    (tmp_path / "video.mp4").write_bytes(mp4_boxes(b"vide"))
    assert container_has_audio(tmp_path / "talk.mp4") is True and container_has_audio(tmp_path / "video.mp4") is False
    (tmp_path / "other.mkv").write_bytes(b"\x1a\x45\xdf\xa3 matroska")
    (tmp_path / "cut.mp4").write_bytes(mp4_boxes(b"vide", b"soun")[:40])  # moov missing
    assert container_has_audio(tmp_path / "other.mkv") is None and container_has_audio(tmp_path / "cut.mp4") is None


def test_no_ffmpeg_notice_only_for_clips_with_audio(tmp_path, style, registered, monkeypatch):
    monkeypatch.setattr(video_io, "ffmpeg_exe", lambda: None)
    monkeypatch.chdir(tmp_path)
    avi_with_audio(tmp_path / "talk.avi", square_frames())
    write_clip(tmp_path / "mute.mp4", square_frames())
    notice = "audio not copied: no ffmpeg found (pip install 'dynast-cli[audio]')"
    report = run_video(tmp_path / "talk.avi", [style], tmp_path / "talk_out.mp4", method=Tint())
    assert report.notes == [notice] and VideoReader(report.output).frame_count == N
    result = runner.invoke(app, ["video", "mute.mp4", "style.png", "-m", "tint", "-o", "mute_out.mp4"])
    assert result.exit_code == 0, result.output
    assert "audio" not in result.output and VideoReader(tmp_path / "mute_out.mp4").frame_count == N
    # a container whose tracks cannot be read without ffmpeg: the notice hedges
    monkeypatch.setattr(video_io, "container_has_audio", lambda path: None)
    report = run_video(tmp_path / "mute.mp4", [style], tmp_path / "unknown.mp4", method=Tint())
    assert report.notes == ["audio (if any) not copied: no ffmpeg found (pip install 'dynast-cli[audio]')"]
