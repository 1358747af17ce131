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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from dynast_cli.errors import BatchError, DynastError, InputError, OutputError, UsageError
from dynast_cli.io.images import check_image_size, check_output_path, list_images, load_image, read_image_size, save_image
from dynast_cli.io.outputs import check_output
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
    that long side and its output is upsampled (bicubic) to the content's size."""
    if not 0.0 <= alpha <= 1.0:
        raise DynastError(f"--alpha must be between 0 and 1, got {alpha}")
    weights = mix_weights(mix, len(states))
    batch = content if content.dim() == 4 else content[None]
    full_hw = tuple(batch.shape[-2:])
    work = batch
    if work_size and max(full_hw) > work_size:
        work = resize(batch, fit_size(*full_hw, max_size=work_size))
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


@dataclass
class BatchReport:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def output_paths(content: Path, styles: Sequence[Path], output: Path | None, ext: str = ".png") -> list[tuple[Path, Path]]:
    """(content file, output file) pairs for a file or a folder of contents."""
    if content.is_dir():
        files = list_images(content)
        if not files:
            raise InputError("folder holds no images", content)
        out_dir = output or Path(f"{content.name}_stylized")
        if out_dir.exists() and not out_dir.is_dir():
            raise OutputError("exists and is not a folder (a folder of contents needs an output folder)", out_dir)
        return [(f, out_dir / f"{f.stem}{ext}") for f in files]
    if not content.exists():
        raise InputError("no such file", content)
    if output is None:
        output = Path(f"{content.stem}_{styles[0].stem}{ext}")
    elif output.is_dir():
        output = output / f"{content.stem}_{styles[0].stem}{ext}"
    return [(content, output)]


def run_style(
    content: str | Path,
    styles: Sequence[str | Path],
    output: str | Path | None = None,
    options: StyleOptions | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int, Path], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> BatchReport:
    """Stylise a content file or every image of a folder with one or more styles.

    Inputs and outputs are checked before any work; in a folder, a bad file is skipped and
    reported (the others are written) and :class:`BatchError` is raised at the end.
    ``options.max_memory``: the attention tiles are planned for the largest content before any work
    (:func:`dynast_cli.memory.plan_style`; a budget that cannot be met raises at once). ``notify``
    receives one-line notices (a budget that changed the method's settings, ``--compile`` on CPU).
    """
    opts = options or StyleOptions()
    content = Path(content)
    style_paths = [Path(s) for s in styles]
    mix_weights(opts.mix, len(style_paths))  # a bad --mix fails before any work (stylize normalises it)
    pairs = output_paths(content, style_paths, Path(output) if output else None)
    single = not content.is_dir()
    if single:
        check_output_path(pairs[0][1], overwrite)
    else:  # the output folder and every planned file, before any model is built
        check_output(pairs[0][1].parent, overwrite, kind="dir", files=[dst.name for _, dst in pairs])
    device = resolve_device(opts.device)
    style_images = load_styles(style_paths, opts)  # errors name the style file
    # (H, W) from the headers (None: unreadable, reported by load_image in the loop), for --max-memory
    content_hws = [] if not single and opts.max_memory is None else [
        hw for hw in (read_image_size(src) for src, _ in pairs) if hw is not None]
    if single and content_hws:
        check_content_size(content, content_hws[0], opts)  # before the method is built
    method, states = prepare_method(opts, style_images, content_hws, device, notify)

    report = BatchReport()
    for i, (src, dst) in enumerate(pairs):
        if progress:
            progress(i, len(pairs), src)
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
        progress(len(pairs), len(pairs), content)
    if report.failed:
        lines = "; ".join(msg for _, msg in report.failed)
        error = BatchError(f"{len(report.failed)} of {len(pairs)} file(s) failed: {lines}")
        error.report = report
        raise error
    return report


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
    if work:
        sizes = [fit_size(*hw, max_size=work) for hw in sizes]
    if not sizes:
        return  # nothing readable: the loop reports the files
    largest = max(sizes, key=lambda hw: hw[0] * hw[1])
    style_hws = [fit_size(*img.shape[-2:], max_size=opts.style_size) for img in styles]
    extra = refine_bytes(largest) if refine else 0
    plan = plan_style(opts.max_memory, method, largest, style_hws, device, extra_bytes=extra)
    apply_style_plan(method, plan)
    for note in plan.notes:
        if notify:
            notify(note)
