"""Video streams in and out, one frame at a time (memory stays bounded whatever the length).

* :class:`VideoReader` reads a video file (OpenCV) or a folder of frame images (natural order:
  ``frame2`` before ``frame10``), optionally cut to ``[start, end)`` seconds, and yields RGB
  ``uint8`` arrays ``(H, W, 3)``.
* :class:`VideoWriter` writes ``.mp4`` (MPEG-4 Part 2, ``mp4v``), ``.avi`` (Motion JPEG) or a folder
  of PNG frames (``frame_000001.png``, ...). A video file is written to a hidden temporary file beside
  the output and renamed when complete, so a failed run never leaves a half-written output; the
  audio track of a source video is muxed in first when an ffmpeg is available.

Every user-caused failure is an :class:`~dynast_cli.errors.InputError` or
:class:`~dynast_cli.errors.OutputError` whose one-line message names the file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from dynast_cli.errors import InputError, OutputError
from dynast_cli.io.atomic import atomic_output
from dynast_cli.io.images import list_images, read_image_array, save_image

# FFmpeg's own log lines ("moov atom not found") would come before dynast's one-line errors;
# setting OPENCV_FFMPEG_LOGLEVEL (e.g. 24) shows them again.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}
# ffmpeg audio options to try in turn. MP4 takes the source's track as it is (AAC re-encoded when
# the codec does not fit); AVI gets PCM: AAC in AVI leaves a wrong duration in the header.
AUDIO_CODECS = {".mp4": (["-c:a", "copy"], ["-c:a", "aac"]), ".avi": (["-c:a", "pcm_s16le"],)}
FRAME_NAME = "frame_{:06d}.png"
FRAME_RE = re.compile(r"frame_(\d{6})\.png")
DEFAULT_FOLDER_FPS = 25.0


def is_frame_folder(path: str | Path) -> bool:
    """A path names a frame folder when it is an existing folder or has no suffix."""
    path = Path(path)
    return path.is_dir() or path.suffix == ""


def even_size(height: int, width: int) -> tuple[int, int]:
    """The largest even ``(H, W)`` not above the given one: the video codecs need even sizes."""
    return max(2, height - height % 2), max(2, width - width % 2)


def ffmpeg_exe() -> str | None:
    """An ffmpeg binary: the one of ``imageio-ffmpeg`` when installed, else ``ffmpeg`` on PATH."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


def has_audio(path: str | Path) -> bool | None:
    """Whether a video file has an audio track (``None``: unknown, no ffmpeg to ask)."""
    exe = ffmpeg_exe()
    if exe is None:
        return None
    probe = subprocess.run([exe, "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return re.search(r"Stream #\d+:\d+.*: Audio:", probe.stderr) is not None


def frame_files(folder: str | Path) -> list[Path]:
    """Frames ``frame_000001.png, frame_000002.png, ...`` written by :class:`VideoWriter`, in order."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if FRAME_RE.fullmatch(p.name))


def count_done_frames(folder: str | Path) -> int:
    """How many frames ``frame_000001.png ...`` a folder holds without a gap from the first."""
    numbers = {int(FRAME_RE.fullmatch(p.name).group(1)) for p in frame_files(folder)}
    done = 0
    while done + 1 in numbers:
        done += 1
    return done


class VideoReader:
    """Frames of a video file or a frame folder, cut to ``[start, end)`` seconds.

    ``fps`` is the file's rate; for a frame folder it is the ``fps`` argument (default 25).
    ``frame_count`` is the number of frames in the cut (``None`` when the container does not say).
    The constructor checks that the source opens and has frames; :meth:`frames` can be iterated
    several times, each opening a fresh stream.
    """

    def __init__(
        self, source: str | Path, start: float | None = None, end: float | None = None,
        fps: float | None = None,
    ):
        self.path = Path(source)
        if not self.path.exists():
            raise InputError("no such file or folder", self.path)
        self.is_folder = self.path.is_dir()
        if self.is_folder:
            self._files = list_images(self.path)
            if not self._files:
                raise InputError("has no frames (no images in the folder)", self.path)
            self.fps = float(fps or DEFAULT_FOLDER_FPS)
            total: int | None = len(self._files)
            first = self._read_file(self._files[0])
        else:
            cap = self._open()
            self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) or float(fps or DEFAULT_FOLDER_FPS)
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            total = count if count > 0 else None
            ok, bgr = cap.read()
            cap.release()
            if not ok:
                raise InputError("has no frames", self.path)
            first = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self.height, self.width = first.shape[:2]
        self.start_frame, self.end_frame = self._cut(start, end, total)
        self.frame_count = None if self.end_frame is None else self.end_frame - self.start_frame

    @property
    def start_seconds(self) -> float:
        return self.start_frame / self.fps

    def _cut(self, start: float | None, end: float | None, total: int | None) -> tuple[int, int | None]:
        if (start is not None and start < 0) or (end is not None and end < 0):
            raise InputError("--start and --end must be positive (seconds)", self.path)
        first = round((start or 0.0) * self.fps)
        last = total if end is None else round(end * self.fps)
        if total is not None and last is not None:
            last = min(last, total)
        if total is not None and first >= total:
            raise InputError(f"--start {start:g}s is past the end ({total / self.fps:.2f}s)", self.path)
        if last is not None and last <= first:
            raise InputError(f"--end {end:g}s leaves no frames after --start {start or 0:g}s", self.path)
        return first, last

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise InputError("not a video (OpenCV cannot open it)", self.path)
        return cap

    def _read_file(self, file: Path) -> np.ndarray:
        rgb = read_image_array(file)
        return (rgb * 255.0 + 0.5).astype(np.uint8)

    def frames(self, skip: int = 0) -> Iterator[np.ndarray]:
        """RGB ``uint8`` frames ``(H, W, 3)`` of the cut, the first ``skip`` of them left out."""
        first = self.start_frame + skip
        if self.is_folder:
            for file in self._files[first:self.end_frame]:
                frame = self._read_file(file)
                if frame.shape[:2] != (self.height, self.width):
                    raise InputError(
                        f"frame is {frame.shape[1]}x{frame.shape[0]}, the first frame is "
                        f"{self.width}x{self.height}", file,
                    )
                yield frame
            return
        cap = self._open()
        try:
            if first:
                cap.set(cv2.CAP_PROP_POS_FRAMES, first)
            index = first
            while self.end_frame is None or index < self.end_frame:
                ok, bgr = cap.read()
                if not ok:
                    return
                index += 1
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()


def check_video_output(path: str | Path, overwrite: bool) -> Path:
    """Validate an output video file or frame folder *before* any work is done."""
    path = Path(path)
    if not is_frame_folder(path):
        if path.suffix.lower() not in FOURCC:
            raise OutputError(
                f"unsupported video format '{path.suffix}' (use .mp4, .avi or a folder for PNG frames)", path
            )
        if path.exists() and not overwrite:
            raise OutputError("already exists (pass --overwrite to replace it)", path)
    elif path.exists() and not path.is_dir():
        raise OutputError("exists and is not a folder", path)
    parent = path if path.is_dir() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError("is not a folder", parent)
    if not os.access(parent, os.W_OK):
        raise OutputError("folder is not writable", parent)
    return path


class VideoWriter:
    """Write RGB ``uint8`` frames to ``.mp4``/``.avi`` or to a folder of PNGs.

    ``size`` is ``(width, height)``, as OpenCV counts it; video files need even sizes (see
    :func:`even_size`). A file is written to a temporary file and renamed by :meth:`close`; a
    frame folder gets one file per frame, each written atomically, numbered from ``first + 1``.
    ``audio_from``: a video whose audio track (from ``audio_start`` seconds) is copied into the
    output file; :attr:`notice` then says when that could not be done.
    """

    def __init__(
        self, path: str | Path, fps: float, size: tuple[int, int], first: int = 0,
        audio_from: str | Path | None = None, audio_start: float = 0.0,
    ):
        self.path = Path(path)
        self.fps, self.size = float(fps), (int(size[0]), int(size[1]))
        self.frames_written = first
        self.audio_from = None if audio_from is None else Path(audio_from)
        self.audio_start = audio_start
        self.notice: str | None = None
        self._output = ExitStack()  # a file's atomic_output: renames on success, removes on error
        self._writer: cv2.VideoWriter | None = None
        if is_frame_folder(self.path):
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot create folder ({exc.strerror})", self.path) from None
            return
        suffix = self.path.suffix.lower()
        if suffix not in FOURCC:
            raise OutputError(f"unsupported video format '{self.path.suffix}'", self.path)
        if self.size[0] % 2 or self.size[1] % 2:
            raise ValueError(f"video sizes must be even, got {self.size[0]}x{self.size[1]}")
        try:
            self._tmp = self._output.enter_context(atomic_output(self.path, suffix=f".part{suffix}"))
        except OSError as exc:
            raise OutputError(f"cannot write ({exc.strerror})", self.path) from None
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*FOURCC[suffix]), self.fps, self.size)
        if not self._writer.isOpened():
            self.discard()
            raise OutputError("OpenCV cannot write this video format here", self.path)

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB ``uint8`` frame ``(H, W, 3)`` of the writer's size."""
        if frame.shape[:2] != (self.size[1], self.size[0]):
            raise ValueError(f"frame is {frame.shape[1]}x{frame.shape[0]}, the writer's size is {self.size}")
        self.frames_written += 1
        if self._writer is None:
            save_image(frame, self.path / FRAME_NAME.format(self.frames_written))
        else:
            self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def close(self) -> Path:
        """Finish the file (audio muxed in when asked for) and move it into place."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            try:
                with self._output:
                    if self.audio_from is not None:
                        self._copy_audio()
            except OSError as exc:
                raise OutputError(f"cannot write ({exc.strerror or exc})", self.path) from None
        return self.path

    def discard(self) -> None:
        """Drop an unfinished file (a frame folder keeps its frames, for a resume)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            self._output.__exit__(OutputError, OutputError("discarded", self.path), None)

    def _copy_audio(self) -> None:
        """Mux the audio of :attr:`audio_from` into the temporary file, or set :attr:`notice`."""
        exe = ffmpeg_exe()
        if exe is None:
            self.notice = "audio not copied: no ffmpeg found (pip install 'dynast-cli[audio]')"
            return
        if not has_audio(self.audio_from):
            return
        muxed = self._tmp.with_name(f"{self._tmp.stem}.audio{self._tmp.suffix}")
        duration = self.frames_written / self.fps
        base = [exe, "-v", "error", "-y", "-i", str(self._tmp), "-ss", f"{self.audio_start:.3f}", "-t", f"{duration:.3f}",
                "-i", str(self.audio_from), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy"]
        try:
            for audio_codec in AUDIO_CODECS[self.path.suffix.lower()]:
                if subprocess.run([*base, *audio_codec, str(muxed)], capture_output=True).returncode == 0:
                    os.replace(muxed, self._tmp)
                    return
            self.notice = f"audio not copied: ffmpeg could not mux {self.audio_from.name}'s audio track"
        finally:
            if muxed.exists():
                muxed.unlink()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
