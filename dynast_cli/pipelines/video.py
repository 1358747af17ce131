"""Video style transfer as an importable pipeline: ``run_video`` and ``evaluate_video``.

The style is encoded ONCE per video (``prepare_style``: VGG features, attention keys/values), then
frames stream through the method in batches; memory stays bounded whatever the length, and the fps,
frame count and size of the source are kept (``max_size`` shrinks the size; a video file's size is
rounded down to even numbers, as its codec needs).

Resuming: frames are written as PNGs to the output frame folder, or, for a video file ``out.mp4``,
to ``out.mp4.partial/`` beside it, which is encoded into ``out.mp4`` (audio muxed in) and removed at
the end. A settings file in that folder lets ``resume=True`` skip the frames already written by an
interrupted run with the same settings. Ctrl-C (``KeyboardInterrupt``) first finalises a playable
``out.mp4`` of the frames done, then raises :class:`VideoInterrupted` (a ``KeyboardInterrupt``) whose
message says where the frames are kept and to resume; an error after frames were written says so
too, and one before any frame leaves nothing behind.

An unreadable image of a frame folder is replaced by its neighbour (``warn`` names it, the report
counts it), so the output keeps the frame count and timing.

The default is the image default's method, ``dynast``, in its temporal variant (``attention="cosine"``,
:mod:`dynast_cli.styles.dynast`): the same matching and feature warping with a softer attention and more
matches carried, so a frame that changes a little moves its attention a little and the painting flickers
less. No state is carried from frame to frame: every frame is computed on its own, so a video split into
parts gives the same pixels. ``attention="cosine"`` also reaches AdaAttN (cosine-similarity attention,
the previous default). :func:`evaluate_video` measures the steadiness (warping error,
:mod:`dynast_cli.temporal`) and how stylised the frames are (texture and palette distance to the style,
:mod:`dynast_cli.quality`).
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from dynast_cli.distributed import Shard
from dynast_cli.errors import DynastError, InputError, OutputError, UsageError
from dynast_cli.io.images import check_image_size, load_image, to_uint8
from dynast_cli.io.outputs import check_distinct, check_output, write_text
from dynast_cli.io.video import (
    FOURCC, FRAME_NAME, FRAME_RE, VideoReader, VideoWriter, check_video_output, count_done_frames, even_size, frame_files,
    has_audio, is_frame_folder,
)
from dynast_cli.ops import fit_size, mix_weights, resize
from dynast_cli.pipelines.style import MIN_SIDE, prepare_styles, stylize
from dynast_cli.pipelines.style import work_size as method_work_size
from dynast_cli.runtime import resolve_device
from dynast_cli.styles import build_method, method_options
from dynast_cli.styles.base import StyleMethod
from dynast_cli.temporal import WarpingError

SETTINGS_FILE = ".dynast-video.json"
#: Where a shard that found the stream shorter than its container says records how many frames the stream
#: has at most (``--join`` then accepts the missing tail): one file per shard, ``.dynast-video-end-<i>-of-<n>``.
END_FILE = ".dynast-video-end-{}-of-{}"
_END_RE = re.compile(r"\.dynast-video-end-\d+-of-\d+")
#: :func:`~dynast_cli.io.atomic.atomic_output`'s temporaries of a frame, the settings file or an end record
#: (``.<name>.<random>.part...``), left in a ``.partial`` folder when a run was killed (``-9``, a lost node).
_TEMPORARY_RE = re.compile(rf"\.(frame_\d{{6}}\.png|{re.escape(SETTINGS_FILE)}|{_END_RE.pattern})\.\w+\.part.*")
ATTENTIONS = ("cosine", "softmax")

#: ``progress(frames_done, frames_total)``: called once before the first frame (with the frames an
#: interrupted run already wrote) and after every frame written; the total is ``None`` when unknown.
Progress = Callable[[int, "int | None"], None]


# ---------------------------------------------------------------------------------------------
# steps shared by run_video and evaluate_video
# ---------------------------------------------------------------------------------------------


def video_method(
    name: str, attention: str | None = None, weights: str | Path | None = None,
    vgg: str | Path | None = None, device: torch.device = torch.device("cpu"),
) -> StyleMethod:
    """A registered style method; ``attention`` goes to the methods that take it (AdaAttN: its spec's options)."""
    if attention is not None and attention not in ATTENTIONS:
        raise DynastError(f"unknown attention '{attention}' (choose from {', '.join(ATTENTIONS)})")
    options = method_options(name, attention=attention) if attention is not None else {}
    return build_method(name, weights=weights, device=device, vgg=vgg, **options)


def check_attention(name: str, attention: str | None) -> None:
    """An attention asked for explicitly (``--attention``, ``METHOD:ATTENTION``) for a registered method that
    has no temporal variant is a usage error (it would be ignored)."""
    from dynast_cli.styles import METHODS

    if attention is not None and name in METHODS and "attention" not in METHODS[name].options:
        takers = [n for n, spec in METHODS.items() if "attention" in spec.options]
        raise UsageError(f"--attention applies to {' and '.join(takers)} only, not to --method {name}")


def frames_to_batch(frames: Sequence[np.ndarray], hw: tuple[int, int]) -> torch.Tensor:
    """RGB ``uint8`` frames ``(H, W, 3)`` -> float ``(B, 3, *hw)`` in ``[0, 1]``."""
    batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    return resize(batch, hw)


def stylize_frames(
    method: StyleMethod, frames: Iterable[np.ndarray], states: Sequence[Any], hw: tuple[int, int],
    mix: Sequence[float] | None = None, alpha: float = 1.0, batch: int = 4,
    device: torch.device = torch.device("cpu"), work_size: int | None = None,
) -> Iterator[np.ndarray]:
    """Stylise a stream of RGB ``uint8`` frames in batches; yields RGB ``uint8`` frames of size ``hw``
    (painted at ``work_size`` long side at most and upsampled, as :func:`~dynast_cli.pipelines.style.stylize`)."""
    it = iter(frames)
    while chunk := list(itertools.islice(it, batch)):
        out = stylize(method, frames_to_batch(chunk, hw).to(device), states, mix, alpha, work_size=work_size)
        yield from (to_uint8(img) for img in out)


# ---------------------------------------------------------------------------------------------
# dynast video
# ---------------------------------------------------------------------------------------------


@dataclass
class VideoReport:
    output: Path
    frames: int  # frames in the output
    computed: int  # frames stylised by this run (the others came from an interrupted run)
    fps: float
    size: tuple[int, int]  # (width, height)
    seconds: float  # time spent stylising in this run
    notes: list[str] = field(default_factory=list)
    repeated: list[Path] = field(default_factory=list)  # unreadable source frames replaced by a neighbour
    shard: str | None = None  # "i/n" of a --shard run (its frames wait in the .partial folder for --join)
    span: tuple[int, int] | None = None  # the shard's frames [start, stop) of the cut, 0-based
    total: int | None = None  # frames in the whole cut
    joined: bool = False  # --join: the shards' frames encoded (none stylised here)

    @property
    def frames_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0


def default_output(source: Path, style: Path) -> Path:
    """``clip_style.mp4`` for a video file (``.avi`` kept), ``frames_style/`` for a frame folder."""
    if source.is_dir():
        return Path(f"{source.name}_{style.stem}")
    suffix = source.suffix.lower() if source.suffix.lower() in FOURCC else ".mp4"
    return Path(f"{source.stem}_{style.stem}{suffix}")


def frames_folder(output: Path) -> Path:
    """Where the frames go: the output frame folder itself, or ``<output>.partial`` beside a video."""
    return output if is_frame_folder(output) else output.with_name(output.name + ".partial")


def _resumable_frames(folder: Path, settings: dict, overwrite: bool, resume: bool, video: bool) -> int:
    """Frames an interrupted run with the same settings left in ``folder`` (0 when starting over)."""
    if resume and (done := count_done_frames(folder)):
        if changed := _changed_settings(folder, settings):
            raise OutputError(
                f"holds frames made with other settings ({', '.join(changed)}); pass --overwrite to start over",
                folder,
            )
        return done
    leftovers = frame_files(folder)
    if leftovers and not overwrite:
        what = "an interrupted run" if video else "frames"
        raise OutputError(f"holds {what} (pass --resume to continue or --overwrite to start over)", folder)
    for file in leftovers:
        file.unlink()
    return 0


def _remove_run_files(folder: Path) -> None:
    """Remove the shards' end records and the temporaries killed runs left in ``folder`` (not the frames)."""
    for path in folder.iterdir():
        if (_TEMPORARY_RE.fullmatch(path.name) or _END_RE.fullmatch(path.name)) and path.is_file():
            path.unlink(missing_ok=True)


def _recorded_ends(folder: Path) -> list[int]:
    """The frame counts the shards recorded in ``folder`` (:data:`END_FILE`; a record cut short is ignored)."""
    ends = []
    for path in folder.iterdir() if folder.is_dir() else []:
        if _END_RE.fullmatch(path.name):
            try:
                ends.append(int(path.read_text()))
            except (OSError, ValueError):
                continue
    return ends


def _clean_partial(folder: Path, notes: list[str]) -> None:
    """Remove the ``.partial`` frames, the settings file and the folder, once the video is written; also
    the temporaries a killed run left there (:func:`~dynast_cli.io.atomic.leftovers` of those files). A
    folder that still holds other files (not this tool's) is kept, with a note: the video is written."""
    _remove_run_files(folder)
    for file in [*frame_files(folder), folder / SETTINGS_FILE]:
        file.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        notes.append(f"kept {folder}/: it holds files this tool did not write")


class VideoInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_video` after frames were written; the message says where they are kept."""


def _resume_hint(folder: Path) -> str:
    return f"partial work kept in {folder}/, rerun with --resume to continue"


def _add_resume_hint(exc: BaseException, folder: Path) -> None:
    """Append where the frames done are kept to a one-line error message (a note when it has no plain one)."""
    hint = _resume_hint(folder)
    if len(exc.args) == 1 and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]}; {hint}",)
    else:
        exc.add_note(hint)


def _discard_run(folder: Path, created: Path | None, shared: bool = False) -> None:
    """Undo a run that wrote no frame: its settings file, and the folders it made (``created``: the
    topmost of them; ``None`` when ``folder`` existed before). ``shared`` (a shard): nothing, as other
    shards may have written the settings file and be writing their frames into the folder."""
    if shared:
        return
    if not frame_files(folder):
        (folder / SETTINGS_FILE).unlink(missing_ok=True)
    if created is None:
        return
    for path in [folder, *folder.parents]:
        try:
            path.rmdir()
        except OSError:
            return
        if path == created:
            return


def _changed_settings(folder: Path, settings: dict) -> list[str]:
    """The settings whose values differ from those saved in ``folder`` (all of them when none are)."""
    settings_file = folder / SETTINGS_FILE
    saved = json.loads(settings_file.read_text()) if settings_file.exists() else {}
    return sorted(k for k in settings if saved.get(k) != settings[k])


def frame_ranges(numbers: Sequence[int]) -> str:
    """``[1, 2, 3, 7, 9, 10]`` -> ``"1-3, 7, 9-10"``."""
    parts, numbers = [], sorted(numbers)
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        parts.append(str(numbers[i]) if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    return ", ".join(parts)


def _frame_numbers(folder: Path) -> set[int]:
    return {int(FRAME_RE.fullmatch(p.name).group(1)) for p in frame_files(folder)}


def _shard_frames(folder: Path, settings: dict, span: tuple[int, int], overwrite: bool, resume: bool) -> int:
    """Frames of this shard's ``span`` (0-based ``[start, stop)``; files ``frame_<start+1>`` ...) that an
    earlier run of it left, in order from its first (0 when starting over). The frames of the other
    shards in the shared folder are theirs: never looked at or removed, but they must have been made
    with the same settings."""
    if not folder.is_dir():
        return 0
    numbers = _frame_numbers(folder)
    if numbers and (changed := _changed_settings(folder, settings)):
        raise OutputError(f"holds frames made with other settings ({', '.join(changed)}); shards of one video need "
                          "the same options (remove the folder to start over)", folder)
    start, stop = span
    mine = sorted(n for n in numbers if start < n <= stop)
    if resume:
        done = 0
        while start + done + 1 in numbers and start + done < stop:
            done += 1
        return done
    if mine and not overwrite:
        raise OutputError(f"holds frames {frame_ranges(mine)} of this shard (pass --resume to continue or "
                          "--overwrite to start over)", folder)
    for n in mine:
        (folder / FRAME_NAME.format(n)).unlink(missing_ok=True)
    return 0


def read_start(first: int, batch: int, warmup: int = 0) -> int:
    """Where to start reading the cut so that its frames from ``first`` on come out as in one unsharded
    run: at a multiple of ``batch`` (frames are batched as there), at least ``warmup`` frames earlier
    (a method with state from earlier frames sees them again; their outputs are dropped), never
    before the cut's first frame."""
    return max(0, (first - max(warmup, 0)) // batch * batch)


def join_frames(reader: VideoReader, output: Path, settings: dict, size: tuple[int, int], overwrite: bool) -> VideoReport:
    """``--join``: check that the ``.partial`` folder (or the frame folder) holds every frame of the cut,
    made with ``settings``; then encode the video as an unsharded run does (audio kept) and remove the
    folder. A missing frame is an :class:`InputError` naming the frames; nothing is written. A missing tail
    that the stream does not have (its container says more frames than it holds: a truncated file) is not
    missing when a shard recorded where the stream ends (:data:`END_FILE`): the frames there are joined,
    with a note."""
    video = not is_frame_folder(output)
    folder = frames_folder(output)
    total = reader.frame_count
    if total is None:
        raise InputError("the container does not give its frame count, which --join needs", reader.path)
    if video:
        check_video_output(output, overwrite)
    numbers = _frame_numbers(folder) if folder.is_dir() else set()
    if numbers and (changed := _changed_settings(folder, settings)):
        raise OutputError(f"holds frames made with other settings ({', '.join(changed)}); --join takes the "
                          "options of the shards", folder)
    notes: list[str] = []
    ends = _recorded_ends(folder)
    if ends and min(ends) < total:  # a shard found the stream shorter than its container says
        notes.append(f"the stream ends after frame {min(ends)} (its container says {total} frames)")
        total = min(ends)
    missing = [n for n in range(1, total + 1) if n not in numbers]
    if missing:
        raise InputError(f"--join: missing frames {frame_ranges(missing)} of {total} (run the shards that write "
                         "them; --resume keeps the frames there)", folder)
    if video:
        _encode(folder, output, reader, size, notes)
        _clean_partial(folder, notes)
    else:
        _remove_run_files(folder)
    return VideoReport(output, total, 0, reader.fps, size, 0.0, notes, total=total, joined=True)


def _encode(
    folder: Path, output: Path, reader: VideoReader, size: tuple[int, int], notes: list[str]
) -> None:
    """Encode the PNG frames of ``folder`` into the video ``output``, with the source's audio."""
    audio = None if reader.is_folder else reader.path
    with VideoWriter(output, reader.fps, size, audio_from=audio, audio_start=reader.start_seconds) as writer:
        for frame in VideoReader(folder, fps=reader.fps):
            writer.write(frame)
    if writer.notice:
        notes.append(writer.notice)


def run_video(
    input: str | Path,
    style_paths: Sequence[str | Path],
    output: str | Path | None = None,
    method: str | StyleMethod = "dynast",
    attention: str | None = "cosine",
    batch: int = 4,
    start: float | None = None,
    end: float | None = None,
    max_size: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: Progress | None = None,
    *,
    weights: str | Path | None = None,
    vgg: str | Path | None = None,
    device: str = "auto",
    alpha: float = 1.0,
    mix: Sequence[float] | None = None,
    style_size: int | None = 512,
    max_memory: int | None = None,
    warn: Callable[[str], None] | None = None,
    shard: Shard | None = None,
    join: bool = False,
    ready: Callable[[], None] | None = None,
    work_size: int | None = None,
) -> VideoReport:
    """Stylise a video file or frame folder with one or more styles (mixed by ``mix``).

    ``method``: a registered name or a :class:`StyleMethod` object; ``attention`` (``cosine``: the
    temporal variant, or ``softmax``) reaches the methods that have both (dynast, AdaAttN).
    ``start``/``end`` cut the source, in seconds. Inputs and the output are checked before any work.
    ``max_memory`` (bytes): attention tiles and, if needed, a smaller batch, planned by
    :func:`dynast_cli.memory.plan_video` (the report's notes say what it changed; a budget that cannot
    be met raises at once).
    ``warn``: called with a one-line notice for each unreadable frame of a frame folder (replaced by
    its neighbour; a folder without a readable frame is refused before any work).
    ``work_size`` (``--work-size``): frames larger than this long side are painted at it and upsampled,
    as ``dynast style`` does (default: the method's, 512 px for dynast; 0: full size).

    ``shard`` (``--shard i/n``): only the frames ``Shard.span(frames, align=batch)`` of the cut, written
    as PNGs into the ``.partial`` folder (or the frame folder) that every shard shares, with the same
    settings file; a shard does not encode. ``join`` (``--join``): no stylisation; check that every
    frame is there and encode them (:func:`join_frames`). A method with a ``warmup_frames`` attribute
    (state carried from frame to frame) is fed that many frames before a shard's (or a resumed run's)
    first frame, their outputs dropped, so every frame comes out as in one unsharded run; reading also
    starts at a multiple of ``batch`` for the same reason. ``ready()`` is called once the checks
    passed, before the method is built (torchrun: the ranks agree to start).
    """
    if join and shard is not None and not shard.whole:
        raise UsageError("--join encodes what every shard wrote: it takes no --shard")
    if batch < 1:
        raise DynastError(f"--batch must be at least 1, got {batch}")
    reader = VideoReader(input, start, end, on_bad_frame=warn or (lambda notice: None))
    styles = [Path(s) for s in style_paths]
    normalised_mix = mix_weights(mix, len(styles))  # checked before any work (stylize normalises `mix`)
    style_images = [load_image(s) for s in styles]  # errors name the style file
    output = Path(output) if output else default_output(reader.path, styles[0])
    check_distinct([(output, "the stylised video")], [reader.path, *styles, *reader.files])
    video = not is_frame_folder(output)
    h, w = fit_size(reader.height, reader.width, max_size)
    if video:
        h, w = even_size(h, w)
    folder = frames_folder(output)
    work = method_work_size(method, work_size) if isinstance(method, str) else (work_size or None)
    settings = {
        "input": str(reader.path.resolve()), "styles": [str(s.resolve()) for s in styles],
        "method": method if isinstance(method, str) else method.name, "attention": attention,
        "alpha": alpha, "mix": normalised_mix, "style_size": style_size,
        "start/end": [reader.start_frame, reader.end_frame], "size": [w, h], "work_size": work,
    }
    if join:
        return join_frames(reader, output, settings, (w, h), overwrite)
    total = reader.frame_count
    sharded = shard is not None and not shard.whole
    span = (0, total)  # this run's frames [start, stop) of the cut (stop None: to the end)
    if sharded:
        if total is None:
            raise InputError("the container does not give its frame count, which --shard needs", reader.path)
        span = shard.span(total, align=batch)
    check_video_output(output, overwrite=True)  # format and folders, before leftovers are looked at
    # a video output left by a Ctrl-C may be replaced by the resumed run
    if sharded:
        done = _shard_frames(folder, settings, span, overwrite, resume)
    else:
        done = _resumable_frames(folder, settings, overwrite, resume, video) if folder.exists() else 0
    check_video_output(output, overwrite or done > 0)
    if ready:
        ready()

    dev = resolve_device(device)
    model = video_method(method, attention, weights, vgg, dev) if isinstance(method, str) else method
    notes = []
    if max_memory is not None:
        from dynast_cli.memory import apply_style_plan, plan_video

        style_hws = [fit_size(*img.shape[-2:], max_size=style_size) for img in style_images]
        plan, batch = plan_video(max_memory, model, (h, w), style_hws, batch, dev)
        apply_style_plan(model, plan)
        notes += plan.notes
    states = prepare_styles(model, style_images, style_size, dev)
    if not video and not reader.is_folder and has_audio(reader.path):
        notes.append("audio not kept: a frame folder has no audio track")

    begin, stop = span
    todo = None if stop is None else stop - begin  # frames of this run's range
    first = begin + done  # the first frame this run writes
    skip = read_start(first, batch, int(getattr(model, "warmup_frames", 0) or 0))
    # the topmost folder this run creates (None: it exists). Shards and torchrun ranks share the folder, so
    # another process may create it between the checks: then this run created none of it.
    created = next((p for p in [*reversed(folder.parents), folder] if not p.exists()), None)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder ({exc.strerror})", folder) from None
    writer = VideoWriter(folder, reader.fps, (w, h), first=first)
    began = time.perf_counter()
    try:
        try:
            write_text(folder / SETTINGS_FILE, json.dumps(settings, indent=1))
        except OSError as exc:
            raise OutputError(f"cannot write ({exc.strerror or exc})", folder / SETTINGS_FILE) from None
        if progress:
            progress(done, todo)
        source = reader.frames(skip=skip)
        if stop is not None:  # nothing to read when the range is done (a complete shard resumed)
            source = itertools.islice(source, stop - skip if first < stop else 0)
        frames = stylize_frames(model, source, states, (h, w), mix, alpha, batch, dev, work_size=work)
        ended = skip  # after the loop: where the stream ended, if it did before `stop`
        end_file = folder / END_FILE.format(shard.index, shard.count) if sharded else None
        if end_file is not None:
            end_file.unlink(missing_ok=True)  # this run finds out again
        for index, frame in enumerate(frames, skip):
            ended = index + 1
            if index < first:
                continue  # a warm-up frame, or one of a batch an interrupted run had begun: written already
            writer.write(frame)
            if progress:
                progress(writer.frames_written - begin, todo)
        seconds = time.perf_counter() - began
        if stop is not None and first < stop and ended < stop:  # read to the end of the stream before `stop`
            notes.append(f"the stream ends after frame {ended} (its container says {total} frames)" if ended > skip
                         else f"the stream has no frame {ended + 1} (its container says {total} frames)")
            if end_file is not None:  # at most `ended` frames: what --join needs to accept the missing tail
                write_text(end_file, str(ended))
        if writer.frames_written == 0 and not sharded:
            raise InputError("has no frames", reader.path)
        if video and not sharded:
            _encode(folder, output, reader, (w, h), notes)
    except KeyboardInterrupt:
        if writer.frames_written == begin:
            _discard_run(folder, created, shared=sharded)
            raise
        playable = ""
        if video and not sharded:
            try:
                _encode(folder, output, reader, (w, h), notes)
                playable = f" ({output} plays them)"
            except DynastError:
                pass
        of_total = f" of {todo}" if todo else ""
        what = f"{output}: interrupted after {writer.frames_written - begin}{of_total} frames"
        if sharded:
            what = f"{output}: shard {shard} interrupted after {writer.frames_written - begin}{of_total} of its frames"
        raise VideoInterrupted(f"{what}{playable}; {_resume_hint(folder)}") from None
    except Exception as exc:
        if writer.frames_written == begin:
            _discard_run(folder, created, shared=sharded)
        else:
            _add_resume_hint(exc, folder)
        raise
    if video and not sharded:
        _clean_partial(folder, notes)
    elif not sharded:
        _remove_run_files(folder)
    if reader.repeated:
        names = ", ".join(f.name for f in reader.repeated[:5]) + (", ..." if len(reader.repeated) > 5 else "")
        notes.append(f"{len(reader.repeated)} unreadable frame(s) replaced by a neighbour, frame count and timing "
                     f"kept: {names}")
    return VideoReport(
        folder if sharded else output, writer.frames_written - begin, writer.frames_written - first, reader.fps,
        (w, h), seconds, notes, list(reader.repeated), str(shard) if sharded else None,
        (begin, stop) if sharded else None, total,
    )


def run_video_job(input: str | Path, style_paths: Sequence[str | Path], output: str | Path | None = None, *,
                  shard: Shard | None = None, join: bool = False, device: str = "auto",
                  **options: Any) -> list[VideoReport]:
    """``dynast video``: :func:`run_video` for this process -> its reports (a shard's, then the joined
    video's where this process joined).

    Alone or with ``shard`` / ``join`` (a job array): one :func:`run_video`. Under torchrun
    (``WORLD_SIZE`` > 1) rank ``r`` stylises the span of shard ``r/WORLD_SIZE``; the ranks check their
    outputs and agree before any work (one refusal stops all); then, once every rank is done
    (gathered), rank 0 joins and encodes the video. An error of any rank is raised on rank 0 too
    (nothing joined; the frames done are kept for ``--resume``); the other ranks then return: none
    waits for a join that will not come.
    """
    from dynast_cli.distributed import barrier, gather, outcome, shard_from_env, torchrun_group, world_from_env

    world = world_from_env()
    if not world.distributed:
        return [run_video(input, style_paths, output, shard=shard, join=join, device=device, **options)]
    if join:
        raise UsageError("--join under torchrun: rank 0 joins by itself once every rank is done")
    shard = shard_from_env(shard)
    with torchrun_group(resolve_device(device)) as start:
        error: BaseException | None = None
        try:
            reports = [run_video(input, style_paths, output, shard=shard, device=device, ready=start.ready,
                                 **options)]
        except Exception as exc:
            start.refuse(exc)
            error, reports = exc, []
        outcomes = gather(outcome(error))
        if error is not None:
            raise error
        failed = [(rank, ended) for rank, ended in enumerate(outcomes) if ended is not None]
        if failed:  # every rank knows: none joins, none waits
            if world.main:
                rank, (code, message) = failed[0]
                stop = DynastError(f"not joined: rank {rank} of {world.size} failed: {message}")
                stop.exit_code = code
                raise stop
            return reports
        try:
            if world.main:
                options = {k: v for k, v in options.items() if k not in ("resume", "progress")}
                reports.append(run_video(input, style_paths, output, join=True, device=device, **options))
        finally:
            barrier()  # rank 0 too when its join failed: the others are waiting here
        return reports


# ---------------------------------------------------------------------------------------------
# dynast eval video
# ---------------------------------------------------------------------------------------------


@dataclass
class TemporalRow:
    name: str
    warping_error: float
    frames_per_second: float | None  # None for the source itself
    # mean over the frames of dynast_cli.quality's distance of each frame to the style (None: not measured)
    texture: float | None = None
    palette: float | None = None


@dataclass
class TemporalReport:
    input: str
    style: str
    frames: int
    size: tuple[int, int]  # (width, height)
    flow: str
    rows: list[TemporalRow]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def _check_report_path(path: Path, overwrite: bool = False) -> None:
    """Fail before the evaluation, not after it, when the JSON report cannot be written (its folder is
    created when missing)."""
    check_output(path, overwrite)


def parse_variant(variant: str) -> tuple[str, str | None]:
    """``"adaattn:cosine"`` -> ``("adaattn", "cosine")``; ``"adain"`` -> ``("adain", None)``."""
    name, _, attention = variant.partition(":")
    return name, attention or None


def _style_distances(frames: Sequence[np.ndarray], style: torch.Tensor, net: Any) -> tuple[float | None, float]:
    """(texture, palette): the means over ``frames`` of :mod:`dynast_cli.quality`'s distances to ``style``
    (texture None without ``net``)."""
    from dynast_cli.quality import NET_SIZE, _features, _texture, palette_distances

    texture = None
    if net is not None:  # texture_distance on each frame, the style's features computed once
        style_feats = _features(net, style, NET_SIZE)
        texture = float(np.mean([_texture(_features(net, f, NET_SIZE), style_feats) for f in frames]))
    return texture, float(np.mean(palette_distances(frames, style)))


def evaluate_video(
    input: str | Path,
    style: str | Path,
    variants: Sequence[str] = ("dynast:softmax", "dynast:cosine", "adaattn:cosine"),
    max_frames: int = 30,
    max_size: int | None = 256,
    per_frame: bool = True,
    flow: str = "dis",
    batch: int = 4,
    *,
    weights: str | Path | None = None,
    vgg: str | Path | None = None,
    device: str = "auto",
    style_size: int | None = 512,
    output: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    overwrite: bool = False,
    quality_net: Any = None,
    notice: Callable[[str], None] | None = None,
) -> TemporalReport:
    """Warping error, texture and palette distance to the style, and frames/s of each variant
    (``method[:attention]``) on the first frames.

    Rows: the source itself (the floor the flow allows), each variant run as :func:`run_video`
    runs it (style encoded once, batches), and with ``per_frame`` the first variant run as image
    stylisation of each frame (style encoded again for every frame, one frame at a time). By default
    the first variant is ``dynast:softmax`` (what ``dynast style`` runs), so the per-frame row is the
    image command on each frame, beside the video default ``dynast:cosine`` and the previous one,
    ``adaattn:cosine``. Texture and palette (:mod:`dynast_cli.quality`) are the means over the frames of
    each frame's distance to the style (at ``style_size``); texture needs ``quality_net`` (None: the
    cached EfficientNet-Lite0 features, :func:`~dynast_cli.quality.load_quality_network`; when it is
    unavailable the column is left empty and ``notice`` is told why).
    ``output``: a JSON file the report is written to (an existing one only with ``overwrite``).
    A video of fewer than 2 frames is refused: the warping error compares consecutive frames.
    """
    if output is not None:
        _check_report_path(Path(output), overwrite)
    if max_frames < 2:
        raise DynastError(f"--max-frames must be at least 2 (warping compares frame pairs), got {max_frames}")
    for variant in variants:
        check_attention(*parse_variant(variant))
    reader = VideoReader(input)
    if output is not None:  # the report must not replace the video, a frame of it, or the style
        check_distinct([(output, "the report")], [reader.path, style, *reader.files])
    if reader.frame_count is not None and reader.frame_count < 2:
        raise InputError(f"needs at least 2 frames to measure temporal consistency, has {reader.frame_count}",
                         reader.path)
    style_image = load_image(style)
    h, w = fit_size(reader.height, reader.width, max_size)
    # too small to score, as `dynast style` refuses them (1x1 gave meaningless scores)
    check_image_size(reader.path, (reader.height, reader.width), MIN_SIDE, (h, w), f"--max-size {max_size}", frame=True)
    style_hw = tuple(style_image.shape[-2:])
    check_image_size(style, style_hw, MIN_SIDE, fit_size(*style_hw, max_size=style_size), f"--style-size {style_size}")
    dev = resolve_device(device)

    frames = [to_uint8(frames_to_batch([f], (h, w))) for f in itertools.islice(reader.frames(), max_frames)]
    if len(frames) < 2:  # the container's frame count was missing or wrong
        raise InputError(f"needs at least 2 frames to measure temporal consistency, has {len(frames)}", reader.path)
    if quality_net is None:
        from dynast_cli.quality import load_quality_network

        quality_net, unavailable = load_quality_network()
        if unavailable and notice:
            notice(unavailable)
    style_eval = resize(style_image[None], fit_size(*style_image.shape[-2:], max_size=style_size))[0]
    metric = WarpingError(flow)
    for frame in frames:
        metric.update(frame, frame)
    source_distances = _style_distances(frames, style_eval, quality_net)
    rows = [TemporalRow("source (no stylisation)", metric.value, None, *source_distances)]

    def measure(name: str, outputs: Iterator[np.ndarray]) -> None:
        if progress:
            progress(name)
        metric, busy, done = WarpingError(flow), 0.0, []
        began = time.perf_counter()
        for source, out in zip(frames, outputs, strict=True):
            busy -= time.perf_counter()
            metric.update(source, out)
            done.append(out)
            busy += time.perf_counter()
        fps = len(frames) / (time.perf_counter() - began - busy)
        rows.append(TemporalRow(name, metric.value, fps, *_style_distances(done, style_eval, quality_net)))

    models = [video_method(*parse_variant(v), weights, vgg, dev) for v in variants]
    for variant, model in zip(variants, models):
        states = prepare_styles(model, [style_image], style_size, dev)
        next(stylize_frames(model, frames[:1], states, (h, w), device=dev))  # warm-up, not timed
        measure(variant, stylize_frames(model, frames, states, (h, w), batch=batch, device=dev))
    if per_frame and models:
        model = models[0]

        def image_by_image() -> Iterator[np.ndarray]:
            for frame in frames:
                states = prepare_styles(model, [style_image], style_size, dev)
                yield from stylize_frames(model, [frame], states, (h, w), batch=1, device=dev)

        measure(f"{variants[0]} per-frame image", image_by_image())
    report = TemporalReport(str(reader.path), str(style), len(frames), (w, h), flow, rows)
    if output is not None:
        write_text(output, report.to_json())
    return report
