"""Style transfer as an importable pipeline: one image (:func:`style_image`, :func:`stylize`), files and
folders (:func:`run_style`).

The methods live in :mod:`dynast_cli.styles` (a registry; every method runs one path)::

    method = build_method("adaattn", weights=None, device="cpu")       # dynast_cli.styles
    states = prepare_styles(method, [style], style_size=512, device)   # each style encoded once
    out = stylize(method, content, states, mix=None, alpha=1.0)        # (3,H,W) or (1,3,H,W) in [0,1]

``prepare_style`` is separate so that a video (or a folder of contents) encodes its style once.
Content of any size and aspect ratio works: every method pads it to a multiple of 16 with reflection
and crops the result back, so the output has exactly the content's size. :func:`run_style` and
:func:`style_image` (what ``dynast style`` and ``dynast_cli.stylize`` run) also resize the inputs
(``--size``, ``--max-size``, ``--style-size``), refuse content and style images whose smaller side is
(or is resized to) under :data:`MIN_SIDE` px, apply ``--max-memory``, ``--compile`` and the method's
``--refine`` steps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from dynast_cli.distributed import Shard
from dynast_cli.pipelines.batch import BatchReport, batch_error
from dynast_cli.errors import BatchError, DynastError, InputError, OutputError, UsageError
from dynast_cli.io.atomic import remove_leftovers
from dynast_cli.io.images import (
    WRITE_SUFFIXES, check_image_size, check_output_path, list_images, load_image, read_image_size, save_image,
)
from dynast_cli.io.outputs import check_distinct, check_output
from dynast_cli.ops import fit_size, mix_weights, preserve_color, resize
from dynast_cli.runtime import resolve_device
from dynast_cli.styles import DEFAULT_METHOD, build_method, get_spec
from dynast_cli.styles.base import StyleMethod
from dynast_cli.styles.refine import refine_bytes, refine_steps, with_refinement

#: Smallest side of a content or style image as given to the encoder (after --size/--max-size/--style-size):
#: relu5_1 is at 1/16 of the image (rounded up), so 17 px gives it at least 2x2 positions, the fewest its
#: per-channel mean and standard deviation can be computed on (16 px leaves one: NaN statistics, a
#: black output). Smaller images are refused with a one-line error.
MIN_SIDE = 17


@dataclass
class StyleOptions:
    method: str = DEFAULT_METHOD
    weights: str | None = None
    vgg: str | None = None
    alpha: float = 1.0
    mix: list[float] | None = None
    size: int | None = None
    max_size: int | None = None
    style_size: int | None = 512
    keep_color: bool = False
    device: str = "auto"
    method_options: dict = field(default_factory=dict)
    #: --max-memory in bytes (None: no budget): sets the attention tiles, see dynast_cli.memory
    max_memory: int | None = None
    #: --compile: torch.compile the encoder/decoder on CUDA (a notice elsewhere)
    compile: bool = False
    #: --refine: pixel-optimisation steps after the method (None: the method's default, its spec's
    #: ``refine``: see dynast_cli.styles.refine)
    refine: int | None = None
    #: --work-size: long side the method paints at; larger contents are stylised at that size and the
    #: result upsampled (bicubic) to the output size. None: the method's default (its spec's
    #: ``work_size``; the default dynast: 512), 0: always the full output size
    work_size: int | None = None


def work_size(method: str, requested: int | None) -> int | None:
    """The working long side for ``method``: ``requested`` (0: none) or the method's default."""
    if requested is None:
        return get_spec(method).work_size
    if requested < 0 or 0 < requested < MIN_SIDE:
        raise UsageError(f"--work-size takes a size of at least {MIN_SIDE} px (0: full size), got {requested}")
    return requested or None


#: The working size never shrinks a content's short side under ``work_size / WORK_MAX_ASPECT`` (nor under
#: its own): a long strip (1600x40) keeps enough rows for the matching instead of being painted at 512x13
#: and blurred back; contents up to 4:1 are unaffected.
WORK_MAX_ASPECT = 4


def work_hw(hw: tuple[int, int], work_size: int | None) -> tuple[int, int]:
    """The (H, W) a content of ``hw`` is painted at: its long side shrunk to ``work_size`` (None or 0, or a
    content no larger: ``hw`` itself), unless that takes its short side under ``min(short side, work_size
    / WORK_MAX_ASPECT)``; then it is shrunk only that far."""
    if not work_size or max(hw) <= work_size:
        return tuple(hw)
    fitted = fit_size(*hw, max_size=work_size)
    floor = min(min(hw), work_size / WORK_MAX_ASPECT)
    if min(fitted) >= floor:
        return fitted
    scale = floor / min(hw)
    return max(1, round(hw[0] * scale)), max(1, round(hw[1] * scale))


def stylize(
    method: StyleMethod,
    content: torch.Tensor,
    states: Sequence[Any],
    mix: Sequence[float] | None = None,
    alpha: float = 1.0,
    keep_color: bool = False,
    work_size: int | None = None,
) -> torch.Tensor:
    """Stylise one content image ``(3,H,W)`` or ``(1,3,H,W)`` (or a batch) in [0,1] -> same size, [0,1],
    under inference mode. ``mix``: one weight per style state (None: equal), normalised here (the one
    place: :func:`~dynast_cli.ops.mix_weights`) before the method blends the styles with them.
    ``work_size``: when the content's long side exceeds it, the method runs on the content resized to
    that long side (:func:`work_hw`: a long strip is shrunk only while its short side stays at ``work_size /
    4`` or more) and its output is upsampled (bicubic) to the content's size."""
    if not 0.0 <= alpha <= 1.0:
        raise DynastError(f"--alpha must be between 0 and 1, got {alpha}")
    weights = mix_weights(mix, len(states))
    batch = content if content.dim() == 4 else content[None]
    full_hw = tuple(batch.shape[-2:])
    work = resize(batch, work_hw(full_hw, work_size))
    with torch.inference_mode():
        out = method.stylize(work, states, weights, alpha)
        if tuple(out.shape[-2:]) != full_hw:
            out = F.interpolate(out, size=full_hw, mode="bicubic", align_corners=False).clamp(0, 1)
    if keep_color:
        out = preserve_color(out, batch.to(out))
    return out if content.dim() == 4 else out[0]


def prepare_styles(
    method: StyleMethod, styles: Sequence[torch.Tensor], style_size: int | None, device: torch.device
) -> list[Any]:
    """Encode each style image ``(3, h, w)`` once, its long side resized to ``style_size``."""
    states = []
    with torch.inference_mode():
        for img in styles:
            img = resize(img[None], fit_size(*img.shape[-2:], max_size=style_size)).to(device)
            states.append(method.prepare_style(img))
    return states


def load_styles(styles: Sequence[str | Path | torch.Tensor], opts: StyleOptions) -> list[torch.Tensor]:
    """Style images (files, or tensors ``(3, h, w)`` in [0, 1]) -> tensors, each checked against
    :data:`MIN_SIDE` at its ``--style-size`` (errors name the file, or ``style N`` for a tensor)."""
    images = []
    for i, style in enumerate(styles):
        name, img = (f"style {i + 1}", _as_image(style)) if isinstance(style, torch.Tensor) else (style, load_image(style))
        hw = tuple(img.shape[-2:])
        check_image_size(name, hw, MIN_SIDE, fit_size(*hw, max_size=opts.style_size), f"--style-size {opts.style_size}")
        images.append(img)
    return images


def prepare_method(
    opts: StyleOptions, style_images: Sequence[torch.Tensor], content_hws: Sequence[tuple[int, int]],
    device: torch.device, notify: Callable[[str], None] | None = None,
) -> tuple[StyleMethod, list[Any]]:
    """The method of ``opts`` ready to run, and the prepared styles: built, its tiles planned for the
    largest of ``content_hws`` under ``opts.max_memory`` (:func:`dynast_cli.memory.plan_style`, raises when
    the budget cannot be met), ``--compile``d, wrapped in its ``--refine`` steps."""
    method = build_method(opts.method, weights=opts.weights, device=device, vgg=opts.vgg, **opts.method_options)
    refine = refine_steps(opts.method, opts.refine)
    if opts.max_memory is not None:
        _plan_memory(method, content_hws, style_images, opts, device, notify, refine,
                     work_size(opts.method, opts.work_size))
    if opts.compile:
        from dynast_cli.runtime import compile_modules

        compile_modules(method, ("encoder", "decoder"), device, notify)
    method = with_refinement(method, refine, device, opts.vgg)
    return method, prepare_styles(method, style_images, opts.style_size, device)


def stylize_content(method: StyleMethod, states: Sequence[Any], image: torch.Tensor, opts: StyleOptions,
                    device: torch.device) -> torch.Tensor:
    """One content ``(3, H, W)`` in [0, 1] resized by ``--size``/``--max-size`` -> ``(1, 3, H', W')``."""
    image = resize(image[None], fit_size(*image.shape[-2:], opts.max_size, opts.size)).to(device)
    return stylize(method, image, states, opts.mix, opts.alpha, opts.keep_color, work_size(opts.method, opts.work_size))


def style_image(content: str | Path | torch.Tensor, styles: Sequence[str | Path | torch.Tensor],
                options: StyleOptions | None = None, notify: Callable[[str], None] | None = None) -> torch.Tensor:
    """One content (a file, or a tensor ``(3, H, W)`` in [0, 1]) stylised with ``styles`` exactly as
    ``dynast style`` does -> ``(3, H', W')`` float in [0, 1] on the CPU (the PNG it writes is this,
    rounded to 8 bits)."""
    opts = options or StyleOptions()
    mix_weights(opts.mix, len(styles))  # a bad --mix fails before any work (stylize normalises it)
    device = resolve_device(opts.device)
    style_images = load_styles(styles, opts)
    name, image = ("content", _as_image(content)) if isinstance(content, torch.Tensor) else (content, load_image(content))
    check_content_size(name, tuple(image.shape[-2:]), opts)
    method, states = prepare_method(opts, style_images, [tuple(image.shape[-2:])], device, notify)
    return stylize_content(method, states, image, opts, device)[0].cpu()


def _as_image(image: torch.Tensor) -> torch.Tensor:
    """A tensor given in place of an image file: (3, H, W) (or (1, 3, H, W)) float in [0, 1]."""
    image = image[0] if image.dim() == 4 and image.shape[0] == 1 else image
    if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
        raise InputError(f"expected a float image tensor (3, H, W) in [0, 1], got {tuple(image.shape)} {image.dtype}")
    return image.float()


# ---------------------------------------------------------------------------------------------
# files and folders
# ---------------------------------------------------------------------------------------------


def output_paths(content: Path, styles: Sequence[Path], output: Path | None, ext: str = ".png",
                 as_folder: bool = False) -> list[tuple[Path, Path]]:
    """(content file, output file) pairs for a file or a folder of contents. ``as_folder``: ``output`` is a
    folder to write into even if it does not exist yet (``-o out/`` with its trailing slash)."""
    if content.is_dir():
        files = list_images(content)
        if not files:
            raise InputError("folder holds no images", content)
        out_dir = output_folder(content, output)
        if out_dir.exists() and not out_dir.is_dir():
            raise OutputError("exists and is not a folder (a folder of contents needs an output folder)", out_dir)
        if not out_dir.exists() and out_dir.suffix.lower() in WRITE_SUFFIXES:  # it made a folder named x.png
            raise OutputError(f"is an image file name, but {content} is a folder of contents: give an output "
                              "folder", out_dir)
        return [(f, out_dir / f"{f.stem}{ext}") for f in files]
    if not content.exists():
        raise InputError("no such file", content)
    if output is None:
        output = Path(f"{content.stem}_{styles[0].stem}{ext}")
    elif output.is_dir() or as_folder:
        output = output / f"{content.stem}_{styles[0].stem}{ext}"
    elif output.suffix.lower() not in WRITE_SUFFIXES:  # `-o newdir` (or `-o v1.2`) meant as a new folder
        what = f"'{output.suffix}' is not an image format" if output.suffix else "has no image suffix"
        raise OutputError(f"{what} (use one of {', '.join(sorted(WRITE_SUFFIXES))}); for a folder that does not "
                          "exist yet, end its name with /", output)
    return [(content, output)]


def run_style(
    content: str | Path,
    styles: Sequence[str | Path],
    output: str | Path | None = None,
    options: StyleOptions | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int, Path], None] | None = None,
    notify: Callable[[str], None] | None = None,
    *,
    shard: Shard | None = None,
    resume: bool = False,
    ready: Callable[[], None] | None = None,
) -> BatchReport:
    """Stylise a content file or every image of a folder with one or more styles.

    Inputs and outputs are checked before any work; in a folder, a bad file is skipped and
    reported (the others are written) and :class:`BatchError` is raised at the end.
    ``options.max_memory``: the attention tiles are planned for the largest content before any work
    (:func:`dynast_cli.memory.plan_style`; a budget that cannot be met raises at once). ``notify``
    receives one-line notices (a budget that changed the method's settings, ``--compile`` on CPU).

    ``shard`` (``--shard i/n``): only this share of the folder's files (:meth:`Shard.take` of the
    natural-sorted list), and only their outputs are checked, so shards writing into one folder do
    not refuse each other; a single content file takes no shard but ``0/1``. ``resume``: outputs that
    exist are kept and counted as ``skipped`` (they are complete: every image is written to a
    temporary file and renamed; temporaries a killed run left are removed). ``ready()`` is called
    once the checks passed, before the model is built (torchrun: the ranks agree to start).
    """
    opts = options or StyleOptions()
    content = Path(content)
    style_paths = [Path(s) for s in styles]
    if resume and overwrite:
        raise UsageError("--resume keeps the outputs that exist and --overwrite replaces them: use one of them")
    mix_weights(opts.mix, len(style_paths))  # a bad --mix fails before any work (stylize normalises it)
    as_folder = isinstance(output, str) and output.endswith(("/", os.sep))
    pairs = output_paths(content, style_paths, Path(output) if output else None, as_folder=as_folder)
    # a.png and a.jpg of a folder would both write a.png; an output that is a content or a style would replace it
    check_distinct([(dst, str(src)) for src, dst in pairs], [src for src, _ in pairs] + style_paths)
    single = not content.is_dir()
    shard = shard or Shard()
    if single and not shard.whole:
        raise UsageError(f"--shard {shard} splits a folder of contents; {content} is one file (use 0/1 or no --shard)")
    pairs = shard.take(pairs)
    done = {dst for _, dst in pairs if resume and dst.is_file()}
    if single:
        if not done:
            check_output_path(pairs[0][1], overwrite)
    else:  # the output folder and every planned file of this shard, before any model is built
        check_output(output_folder(content, output), overwrite, kind="dir",
                     files=[dst.name for _, dst in pairs if dst not in done])
    report = BatchReport(shard=None if shard.whole else str(shard), planned=len(pairs),
                         skipped=[dst for _, dst in pairs if dst in done])
    for _, dst in pairs:  # what a killed run left beside this shard's outputs (hidden .<name>.*.part files)
        remove_leftovers(dst)
    todo = [(src, dst) for src, dst in pairs if dst not in done]
    device = resolve_device(opts.device)
    style_images = load_styles(style_paths, opts)  # errors name the style file
    # (H, W) from the headers (None: unreadable, reported by load_image in the loop), for --max-memory
    content_hws = [] if not single and opts.max_memory is None else [
        hw for hw in (read_image_size(src) for src, _ in todo) if hw is not None]
    if single and content_hws:
        check_content_size(content, content_hws[0], opts)  # before the method is built
    if ready:
        ready()
    if not todo:
        return report
    method, states = prepare_method(opts, style_images, content_hws, device, notify)

    for i, (src, dst) in enumerate(todo):
        if progress:
            progress(i, len(todo), src)
        try:
            if not single:
                check_output_path(dst, overwrite)
            image = load_image(src)
            check_content_size(src, tuple(image.shape[-2:]), opts)
            report.written.append(save_image(stylize_content(method, states, image, opts, device), dst))
        except DynastError as exc:
            if single:
                raise
            report.failed.append((src, str(exc)))
    if progress:
        progress(len(todo), len(todo), content)
    if report.failed:
        raise batch_error(report)
    return report


def output_folder(content: Path, output: str | Path | None) -> Path:
    """The output folder of a folder of contents (``-o``, else ``<folder>_stylized``)."""
    return Path(output) if output else Path(f"{Path(content).name}_stylized")


# ---------------------------------------------------------------------------------------------
# a batch spread over processes: --shard i/n (a job array) and torchrun
# ---------------------------------------------------------------------------------------------

#: Where each shard of a job array leaves its report (``report-<i>-of-<n>.json``), inside the output folder.
SHARDS_FOLDER = ".dynast-shards"
#: The merged report of every shard (job array) or rank (torchrun), in the output folder.
MERGED_REPORT = "dynast-report.json"


@dataclass
class StyleJob:
    """What :func:`run_style_job` did in this process.

    ``report``: this process's share; ``merged``: every share's, in the process that completed the set
    (the last shard of a job array to finish, rank 0 under torchrun), written to ``merged_file``;
    ``parts``: how many shares (``n`` of ``--shard i/n``, the torchrun world size); ``error``: what the
    process should exit with (``None``: 0)."""

    report: BatchReport
    merged: BatchReport | None = None
    merged_file: Path | None = None
    parts: int = 1
    torchrun: bool = False
    error: DynastError | None = None


def shard_report_path(out_dir: Path, shard: Shard) -> Path:
    return Path(out_dir) / SHARDS_FOLDER / f"report-{shard.index}-of-{shard.count}.json"


def job_key(content: Path, styles: Sequence[str | Path], output: str | Path | None, opts: StyleOptions) -> dict:
    """What makes shard reports parts of one job: the contents, the styles and the options that change
    the pixels (a report left by another job in the same folder is not merged)."""
    import json
    from dataclasses import asdict

    pairs = output_paths(Path(content), [Path(s) for s in styles], Path(output) if output else None)
    options = {k: v for k, v in asdict(opts).items() if k not in ("device", "compile", "max_memory")}
    key = {"contents": [src.name for src, _ in pairs], "styles": [Path(s).name for s in styles], "options": options}
    return json.loads(json.dumps(key, default=str))


def forget_shard(content: Path, output: str | Path | None, shard: Shard) -> None:
    """Before a job array's shard starts its work: remove its report of an earlier run and the merged
    report, so that a set is merged only from reports of shards that finished after they started
    (a shard killed in this run no longer leaves its old report to be merged as if it were done)."""
    out_dir = output_folder(content, output)
    for path in (shard_report_path(out_dir, shard), out_dir / MERGED_REPORT):
        path.unlink(missing_ok=True)


def record_shard(content: Path, styles: Sequence[str | Path], output: str | Path | None, opts: StyleOptions,
                 report: BatchReport, shard: Shard) -> tuple[BatchReport | None, Path | None]:
    """A job array's shard: write its report to ``OUT/.dynast-shards/report-i-of-n.json`` (atomically);
    when the reports of all ``n`` shards of this job are there, write the merged one to
    ``OUT/dynast-report.json`` and return it with its path (else ``(None, None)``)."""
    import json

    from dynast_cli.io.outputs import write_text

    out_dir = output_folder(content, output)
    key = job_key(content, styles, output, opts)
    write_text(shard_report_path(out_dir, shard), json.dumps({"job": key, **report.to_json()}, indent=1))
    reports = []
    for index in range(shard.count):
        try:
            data = json.loads(shard_report_path(out_dir, Shard(index, shard.count)).read_text())
        except (OSError, ValueError):
            return None, None  # not finished yet (or unreadable: the shard that rewrites it merges)
        if data.get("job") != key:
            return None, None  # left by another job: that shard has yet to run for this one
        reports.append(BatchReport.from_json(data))
    merged = BatchReport.merge(reports)
    text = json.dumps({"job": key, "shards": shard.count, **merged.to_json()}, indent=1)
    return merged, write_text(out_dir / MERGED_REPORT, text)


def run_style_job(
    content: str | Path,
    styles: Sequence[str | Path],
    output: str | Path | None = None,
    options: StyleOptions | None = None,
    *,
    shard: Shard | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: Callable[[int, int, Path], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> StyleJob:
    """``dynast style``: :func:`run_style` on this process's share of the job, and the merged report.

    * alone (no ``shard``, no torchrun): :func:`run_style`; ``error``: its :class:`BatchError`, if any;
    * ``shard`` ``i/n`` (a job array: independent processes): this shard's files only; its report is
      written to ``OUT/.dynast-shards/report-i-of-n.json`` (failures included), and the shard that
      completes the set writes ``OUT/dynast-report.json`` (:func:`record_shard`). Each shard's
      ``error`` is its own (exit 5 when its files failed), so a scheduler reruns just that task
      (with ``resume``);
    * torchrun (``WORLD_SIZE`` > 1, :mod:`dynast_cli.distributed`): rank ``r`` takes shard
      ``r/WORLD_SIZE`` of a folder (a single file: rank 0 does it); the ranks check their outputs,
      then agree: when one refuses, none starts (nothing written). At the end rank 0 gathers every
      rank's report, writes ``OUT/dynast-report.json`` and its ``error`` names every rank's failed
      files (exit 5). The other ranks exit 0 after file failures (rank 0 reports them) and with
      their own code after an error that stopped them. A bug on one rank (not a
      :class:`DynastError`) is shown there only after every rank has its report (rank 0 lists it among
      the merged errors), so that no rank is left in a collective with one that is gone (gloo fails it
      with "Connection closed by peer", exit 70 and no merged report; on other transports it may wait
      for the timeout).

    Errors before any work (bad options, existing outputs, a missing style) are raised, as by
    :func:`run_style` (under torchrun, after the ranks agreed).
    """
    from dynast_cli.distributed import shard_from_env, world_from_env

    opts = options or StyleOptions()
    content = Path(content)
    world = world_from_env()
    shard = shard_from_env(shard)
    if not world.distributed:
        error = None
        try:
            ready = (lambda: forget_shard(content, output, shard)) if shard is not None and not shard.whole else None
            report = run_style(content, styles, output, opts, overwrite, progress, notify, shard=shard, resume=resume,
                               ready=ready)
        except BatchError as exc:
            report, error = exc.report, exc
        job = StyleJob(report, error=error, parts=shard.count if shard else 1)
        if shard is not None and not shard.whole:
            job.merged, job.merged_file = record_shard(content, styles, output, opts, report, shard)
        return job
    return _torchrun_style_job(content, styles, output, opts, world, shard, overwrite, resume, progress, notify)


def _torchrun_style_job(content, styles, output, opts, world, shard, overwrite, resume, progress, notify) -> StyleJob:
    import json

    from dynast_cli.distributed import barrier, gather, torchrun_group
    from dynast_cli.io.outputs import write_text

    with torchrun_group(resolve_device(opts.device)) as start:
        folder = content.is_dir()
        error: DynastError | None = None
        bug: Exception | None = None  # raised here once every rank has its report (none waits for this one)
        try:
            if folder or world.main:  # a single file: rank 0's
                report = run_style(content, styles, output, opts, overwrite, progress, notify,
                                   shard=shard if folder else None, resume=resume, ready=start.ready)
            else:
                start.ready()
                report = BatchReport()
        except BatchError as exc:
            report, error = exc.report, exc
        except Exception as exc:  # this rank's error (before the work: a refusal the others stop on), or a bug
            start.refuse(exc)
            if isinstance(exc, DynastError):
                report, error = BatchReport(errors=[str(exc)]), exc
            else:
                report, bug = BatchReport(errors=[f"rank {world.rank}: internal error: {exc!r}"]), exc
        report.shard = str(shard)
        reports = [BatchReport.from_json(data) for data in gather(report.to_json())]
        job = StyleJob(report, parts=world.size, torchrun=True, error=None if isinstance(error, BatchError) else error)
        try:
            if world.main and start.started:  # a refusal stops every rank before any work: nothing is written
                job.merged = BatchReport.merge(reports)
                if folder:
                    key = job_key(content, styles, output, opts)
                    text = json.dumps({"job": key, "ranks": world.size, **job.merged.to_json()}, indent=1)
                    job.merged_file = write_text(output_folder(content, output) / MERGED_REPORT, text)
                if job.error is None and (job.merged.failed or job.merged.errors):
                    job.error = batch_error(job.merged)
        finally:
            barrier()  # rank 0 too when its report failed: the others are waiting here
        if bug is not None:
            raise bug
        return job


def check_content_size(path: str | Path, hw: tuple[int, int], opts: StyleOptions) -> None:
    """Refuse a content image of ``hw`` ``(H, W)`` whose smaller side is, or is resized by --size/--max-size
    to, under :data:`MIN_SIDE` px (:class:`InputError` naming it)."""
    fitted = fit_size(*hw, opts.max_size, opts.size)
    option = f"--size {opts.size}" if opts.size and not (opts.max_size and opts.max_size < opts.size) \
        else f"--max-size {opts.max_size}"
    check_image_size(path, hw, MIN_SIDE, fitted, option)


def _plan_memory(
    method: StyleMethod, content_hws: Sequence[tuple[int, int]], styles: Sequence[torch.Tensor], opts: StyleOptions,
    device: torch.device, notify: Callable[[str], None] | None, refine: int = 0, work: int | None = None,
) -> None:
    """Plan the attention tiles for the largest content (after --size/--max-size, at the working size
    ``work`` when it is smaller) and apply them (with ``refine`` steps, the refinement's working memory
    counts too)."""
    from dynast_cli.memory import apply_style_plan, plan_style

    sizes = [fit_size(*hw, opts.max_size, opts.size) for hw in content_hws]
    if not sizes:
        return  # nothing readable: the loop reports the files
    def area(hw: tuple[int, int]) -> int:
        return hw[0] * hw[1]

    full = max(sizes, key=area)  # the largest output; the largest painting may be another content (a strip)
    largest = max((work_hw(hw, work) for hw in sizes), key=area) if work else full
    style_hws = [fit_size(*img.shape[-2:], max_size=opts.style_size) for img in styles]
    extra = refine_bytes(largest) if refine else 0
    plan = plan_style(opts.max_memory, method, largest, style_hws, device, extra_bytes=extra, full_hw=full)
    apply_style_plan(method, plan)
    for note in plan.notes:
        if notify:
            notify(note)
