"""Video streams in and out, one frame at a time (memory stays bounded whatever the length).

* :class:`VideoReader` reads a video file (OpenCV) or a folder of frame images (natural order:
  ``frame2`` before ``frame10``), optionally cut to ``[start, end)`` seconds, and yields RGB
  ``uint8`` arrays ``(H, W, 3)``. With ``on_bad_frame``, an unreadable image of a frame folder is
  replaced by its neighbour (frame count and timing kept) and reported, instead of stopping.
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
import struct
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import cv2
import numpy as np

from dynast_cli.errors import InputError, OutputError, UsageError
from dynast_cli.io.atomic import atomic_output
from dynast_cli.io.images import IMAGE_SUFFIXES, list_images, read_image_array, save_image
from dynast_cli.io.outputs import check_folder, check_output

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
    """Whether a video file has an audio track: asked of ffmpeg when there is one, else read from the
    container's headers (MP4/MOV, AVI); ``None``: unknown (no ffmpeg, another container)."""
    exe = ffmpeg_exe()
    if exe is None:
        return container_has_audio(path)
    probe = subprocess.run([exe, "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return re.search(r"Stream #\d+:\d+.*: Audio:", probe.stderr) is not None


def container_has_audio(path: str | Path) -> bool | None:
    """Whether an MP4/MOV (a ``soun`` track) or AVI (an ``auds`` stream) file has an audio track, from
    its headers alone; ``None`` for other containers or headers that cannot be parsed."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
                return _avi_has_audio(f)
            if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide"):
                f.seek(0)
                return _mp4_has_audio(f)
    except (OSError, struct.error, ValueError):
        pass
    return None


def _riff_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """``(id, payload)`` of the RIFF chunks in ``data`` (a ``LIST``'s payload starts with its type)."""
    i = 0
    while i + 8 <= len(data):
        kind, size = data[i:i + 4], struct.unpack("<I", data[i + 4:i + 8])[0]
        yield kind, data[i + 8:i + 8 + size]
        i += 8 + size + (size & 1)


def _avi_has_audio(f: BinaryIO) -> bool | None:
    """Walk ``LIST hdrl`` -> ``LIST strl`` -> ``strh`` (its fccType); ``f`` is past the RIFF header."""
    while len(header := f.read(12)) == 12:
        kind, size = header[:4], struct.unpack("<I", header[4:8])[0]
        if kind == b"LIST" and header[8:12] == b"hdrl":
            hdrl = f.read(size - 4)
            types = [
                strh[:4]
                for kind, strl in _riff_chunks(hdrl) if kind == b"LIST" and strl[:4] == b"strl"
                for kind, strh in _riff_chunks(strl[4:]) if kind == b"strh"
            ]
            return b"auds" in types if types else None
        f.seek(size + (size & 1) - 4, os.SEEK_CUR)
    return None


def _mp4_boxes(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """``(type, payload)`` of the ISO BMFF boxes in ``data``."""
    i = 0
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        start = i + 8
        if size == 1:
            size, start = struct.unpack(">Q", data[i + 8:i + 16])[0], i + 16
        elif size == 0:
            size = len(data) - i
        if size < start - i:
            return
        yield kind, data[start:i + size]
        i += size


def _mp4_has_audio(f: BinaryIO) -> bool | None:
    """Find the top-level ``moov`` box (skipping ``mdat``) and look for a ``trak/mdia/hdlr`` of type ``soun``."""
    while header := f.read(8):
        if len(header) < 8:
            return None
        size, kind = struct.unpack(">I4s", header)
        body_start = 8
        if size == 1:
            size, body_start = struct.unpack(">Q", f.read(8))[0], 16
        if kind == b"moov":
            if size == 0 or size > 256 * 2**20:
                return None
            moov = f.read(size - body_start)
            handlers = [
                payload[8:12]
                for kind, trak in _mp4_boxes(moov) if kind == b"trak"
                for kind, mdia in _mp4_boxes(trak) if kind == b"mdia"
                for kind, payload in _mp4_boxes(mdia) if kind == b"hdlr"
            ]
            return b"soun" in handlers if handlers else None
        if size == 0 or size < body_start:
            return None
        f.seek(size - body_start, os.SEEK_CUR)
    return None


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


def _still_image(path: Path) -> bool:
    """Whether an image file holds one frame (an animated GIF, WebP or PNG is a video to OpenCV)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1) == 1
    except (OSError, UnidentifiedImageError):  # not readable as an image: left to OpenCV's own verdict
        return False


class VideoReader:
    """Frames of a video file or a frame folder, cut to ``[start, end)`` seconds.

    ``fps`` is the file's rate; for a frame folder it is the ``fps`` argument (default 25).
    ``frame_count`` is the number of frames in the cut (``None`` when the container does not say).
    The constructor checks that the source opens and has frames; :meth:`frames` can be iterated
    several times, each opening a fresh stream.

    ``on_bad_frame``: for a frame folder, an image that cannot be read (corrupt, truncated, not an
    image) is replaced by the previous readable frame of the cut (the next one when none comes
    before), so the frame count and timing hold, and ``on_bad_frame`` gets a one-line notice
    naming it; :attr:`repeated` lists those files (of the last :meth:`frames` pass). A cut with no
    readable frame at all is refused by the constructor. Without it, a bad frame raises
    :class:`~dynast_cli.errors.InputError`. A frame of another size than the first always raises.
    """

    def __init__(
        self, source: str | Path, start: float | None = None, end: float | None = None,
        fps: float | None = None, on_bad_frame: Callable[[str], None] | None = None,
    ):
        self.path = Path(source)
        self.on_bad_frame = on_bad_frame
        self.repeated: list[Path] = []
        if not self.path.exists():
            raise InputError("no such file or folder", self.path)
        self.is_folder = self.path.is_dir()
        if self.is_folder:
            self._files = list_images(self.path)
            if not self._files:
                raise InputError("has no frames (no images in the folder)", self.path)
            self.fps = float(fps or DEFAULT_FOLDER_FPS)
            self.start_frame, self.end_frame = self._cut(start, end, len(self._files))
            first = self._first_readable()  # the size every frame must have
        else:
            if self.path.suffix.lower() in IMAGE_SUFFIXES and _still_image(self.path):  # OpenCV: a 1-frame video
                raise InputError("is an image, not a video: give a video file or a folder of frames "
                                 "(`dynast style` stylises one image)", self.path)
            cap = self._open()
            self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) or float(fps or DEFAULT_FOLDER_FPS)
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            total = count if count > 0 else None
            ok, bgr = cap.read()
            cap.release()
            if not ok:
                raise InputError("has no frames", self.path)
            first = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            self.start_frame, self.end_frame = self._cut(start, end, total)
        self.height, self.width = first.shape[:2]
        self.frame_count = None if self.end_frame is None else self.end_frame - self.start_frame

    @property
    def files(self) -> list[Path]:
        """A folder's frame files (all of them, not only the cut's); [] for a video file."""
        return list(self._files) if self.is_folder else []

    @property
    def start_seconds(self) -> float:
        return self.start_frame / self.fps

    def _cut(self, start: float | None, end: float | None, total: int | None) -> tuple[int, int | None]:
        if (start is not None and start < 0) or (end is not None and end < 0):
            raise InputError("--start and --end must be positive (seconds)", self.path)
        if end is not None and end <= (start or 0.0):  # the options contradict each other, whatever the file
            raise UsageError(f"--end {end:g}s is not after --start {start or 0:g}s")
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

    def _first_readable(self) -> np.ndarray:
        """The first frame of the cut that can be read (the first, unless ``on_bad_frame`` is set)."""
        files = self._files[self.start_frame:self.end_frame]
        for file in files:
            try:
                return self._read_file(file)
            except InputError:
                if self.on_bad_frame is None:
                    raise
        cut = "of the cut " if len(files) < len(self._files) else ""
        raise InputError(f"has no readable frames (all {len(files)} images {cut}are corrupt or unreadable)", self.path)

    def _folder_frames(self, first: int) -> Iterator[np.ndarray]:
        self.repeated = []
        previous = None  # the last readable frame, what a bad frame repeats
        if first > self.start_frame and self.on_bad_frame is not None:  # resuming: as the full pass would
            for file in reversed(self._files[self.start_frame:first]):
                try:
                    previous = self._read_file(file)
                    break
                except InputError:
                    continue
        pending = 0  # bad frames before the first readable one: they repeat the next readable frame
        for file in self._files[first:self.end_frame]:
            try:
                frame = self._read_file(file)
            except InputError as exc:
                if self.on_bad_frame is None:
                    raise
                self.repeated.append(file)
                self.on_bad_frame(f"{exc}; replaced by the {'next readable' if previous is None else 'previous'} frame")
                if previous is None:
                    pending += 1
                else:
                    yield previous
                continue
            if frame.shape[:2] != (self.height, self.width):
                raise InputError(
                    f"frame is {frame.shape[1]}x{frame.shape[0]}, the first frame is {self.width}x{self.height}", file,
                )
            for _ in range(pending):
                yield frame
            pending, previous = 0, frame
            yield frame
        if pending:  # the constructor found a readable frame, so only if files changed since
            raise InputError("has no readable frames left in the cut", self.path)

    def frames(self, skip: int = 0) -> Iterator[np.ndarray]:
        """RGB ``uint8`` frames ``(H, W, 3)`` of the cut, the first ``skip`` of them left out."""
        first = self.start_frame + skip
        if self.is_folder:
            yield from self._folder_frames(first)
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
    """Validate an output video file or frame folder *before* any work is done: a known format, then
    the shared check (:func:`dynast_cli.io.outputs.check_output`): a video file that exists without
    ``overwrite``, a file in the way of a folder, a folder that cannot be written or created.
    (A frame folder's leftover frames are the caller's: resumed or replaced.)"""
    path = Path(path)
    if is_frame_folder(path):
        return check_folder(path)
    if path.suffix.lower() not in FOURCC:
        raise OutputError(f"unsupported video format '{path.suffix}' (use .mp4, .avi or a folder for PNG frames)", path)
    return check_output(path, overwrite)


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
            audio = container_has_audio(self.audio_from)  # a source without audio needs no notice
            if audio is not False:
                what = "audio" if audio else "audio (if any)"
                self.notice = f"{what} not copied: no ffmpeg found (pip install 'dynast-cli[audio]')"
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
