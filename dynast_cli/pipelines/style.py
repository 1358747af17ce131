"""Style transfer as an importable pipeline: ``stylize`` one image, ``run_style`` files and folders.

Every method follows one small protocol (:class:`StyleMethod`)::

    method = get_style_method("adaattn", weights=None, device="cpu")
    state = method.prepare_style(style)                 # style (1,3,h,w) [0,1] -> cached keys/values
    out = method.stylize(content, [state], mix=[1.0], alpha=1.0)   # (1,3,H,W) [0,1]

``prepare_style`` is separate so that a video (or a folder of contents) encodes its style once.
Content of any size and aspect ratio works: :func:`stylize` pads it to a multiple of 16 with
reflection and crops the result back, so the output has exactly the content's size. :func:`run_style`
refuses content and style images whose smaller side is (or is resized to) under :data:`MIN_SIDE` px.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch
import torch.nn.functional as F

from dynast_cli.errors import BatchError, DynastError, InputError, OutputError, UsageError
from dynast_cli.io.images import check_image_size, check_output_path, list_images, load_image, save_image
from dynast_cli.io.outputs import check_output
from dynast_cli.runtime import resolve_device

PAD_MULTIPLE = 16  # relu5_1 is at 1/16 of the input
#: Smallest side of a content or style image as given to the encoder (after --size/--max-size/--style-size):
#: relu5_1 is at 1/16 of the image (rounded up), so 17 px gives it at least 2x2 positions, the fewest its
#: per-channel mean and standard deviation can be computed on (16 px leaves one: NaN statistics, a
#: black output). Smaller images are refused with a one-line error.
MIN_SIDE = 17


class StyleMethod(Protocol):
    name: str

    def prepare_style(self, style: torch.Tensor) -> Any: ...

    def stylize(
        self, content: torch.Tensor, states: Sequence[Any], mix: Sequence[float], alpha: float = 1.0
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class MethodInfo:
    name: str
    summary: str
    factory: Callable[..., StyleMethod]


METHODS: dict[str, MethodInfo] = {}


def register_method(name: str, summary: str):
    """Decorator: ``@register_method("adain", "...")`` on a factory ``(weights, device, vgg) -> StyleMethod``."""

    def deco(factory: Callable[..., StyleMethod]) -> Callable[..., StyleMethod]:
        METHODS[name] = MethodInfo(name, summary, factory)
        return factory

    return deco


def get_style_method(
    name: str, weights: str | Path | None = None, device: str | torch.device = "cpu",
    vgg: str | Path | None = None, **options: Any,
) -> StyleMethod:
    """Build a style method by name (see :data:`METHODS`)."""
    _load_builtin_methods()
    if name not in METHODS:
        raise UsageError(f"unknown style method '{name}' (choose from {', '.join(sorted(METHODS))})")
    return METHODS[name].factory(weights=weights, device=torch.device(device), vgg=vgg, **options)


def parse_method_spec(spec: str) -> tuple[str, str | None, int | None]:
    """``METHOD[:WEIGHTS][+refineN]`` (``dynast eval style --methods``) -> (method, weights or None,
    refinement steps or None for the method's default). E.g. ``adain+refine10``, ``dynast:none+refine0``."""
    import re

    refine = None
    found = re.fullmatch(r"(.*)\+refine(\d+)", spec.strip())
    if found:
        spec, refine = found.group(1), int(found.group(2))
    method, _, weights = spec.strip().partition(":")
    return method, weights or None, refine


def _load_builtin_methods() -> None:
    # importing a module registers its methods
    import dynast_cli.pipelines.style_dynast  # noqa: F401
    import dynast_cli.pipelines.style_methods  # noqa: F401


# ---------------------------------------------------------------------------------------------
# one image
# ---------------------------------------------------------------------------------------------


def fit_size(h: int, w: int, max_size: int | None = None, size: int | None = None) -> tuple[int, int]:
    """Target (H, W) keeping the aspect ratio: ``size`` sets the long side, ``max_size`` caps it."""
    long_side = max(h, w)
    target = size or long_side
    if max_size:
        target = min(target, max_size)
    if target == long_side:
        return h, w
    scale = target / long_side
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize(image: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(B,3,H,W) -> (B,3,*hw), antialiased when shrinking."""
    if tuple(image.shape[-2:]) == tuple(hw):
        return image
    return F.interpolate(image, size=hw, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def pad_to_multiple(image: torch.Tensor, multiple: int = PAD_MULTIPLE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (B,C,H,W) on the bottom/right to multiples of ``multiple``; returns the original (H, W)."""
    h, w = image.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        image = F.pad(image, (0, pw, 0, ph), mode=mode)
    return image, (h, w)


_RGB_TO_YUV = torch.tensor([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]])


def preserve_color(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Keep the stylised luminance and the content's chrominance (YUV), both (B,3,H,W) in [0,1]."""
    m = _RGB_TO_YUV.to(stylized)
    y_s = torch.einsum("ij,bjhw->bihw", m, stylized)
    y_c = torch.einsum("ij,bjhw->bihw", m, content)
    yuv = torch.cat([y_s[:, :1], y_c[:, 1:]], dim=1)
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(m), yuv).clamp(0, 1)


@dataclass
class StyleOptions:
    method: str = "dynast"
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
    #: --refine: pixel-optimisation steps after the method (None: the method's default, see
    #: dynast_cli.pipelines.refine.DEFAULT_REFINE_STEPS)
    refine: int | None = None
    #: --work-size: long side the method works at; larger contents are stylised at that size and the
    #: result upsampled (bicubic) to the output size. None: the method's default (DEFAULT_WORK_SIZE),
    #: 0: always the full output size
    work_size: int | None = None


#: Working long side per method when ``--work-size`` is not given (others: full size). The default
#: ``dynast`` paints at 512 px, the size its settings were chosen at: above it the matching and the
#: decoder cost grow with the pixel count while the strokes (features at 1/8 and 1/16) shrink relative to
#: the picture, so a larger working size gives a slower *and* less painted result.
DEFAULT_WORK_SIZE = {"dynast": 512}


def work_size(method: str, requested: int | None) -> int | None:
    """The working long side for ``method``: ``requested`` (0: none) or the method's default."""
    if requested is None:
        return DEFAULT_WORK_SIZE.get(method)
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
    """Stylise one content image ``(3,H,W)`` or ``(1,3,H,W)`` in [0,1] -> same size, [0,1].

    ``work_size``: when the content's long side exceeds it, the method runs on the content resized to
    that long side and its output is upsampled (bicubic) to the content's size."""
    if not 0.0 <= alpha <= 1.0:
        raise DynastError(f"--alpha must be between 0 and 1, got {alpha}")
    mix = normalise_mix(mix, len(states))
    batch = content if content.dim() == 4 else content[None]
    full_hw = tuple(batch.shape[-2:])
    work = batch
    if work_size and max(full_hw) > work_size:
        work = resize(batch, fit_size(*full_hw, max_size=work_size))
    padded, (h, w) = pad_to_multiple(work)
    with torch.inference_mode():
        out = method.stylize(padded, states, mix, alpha)
    out = out[..., :h, :w].clamp(0, 1)
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


def normalise_mix(mix: Sequence[float] | None, n: int) -> list[float]:
    """Mixing weights for ``n`` styles: default equal, must be >= 0, normalised to sum 1."""
    if n == 0:
        raise DynastError("at least one style image is needed")
    if mix is None or len(mix) == 0:
        return [1.0 / n] * n
    if len(mix) != n:
        raise DynastError(f"--mix has {len(mix)} weight(s) for {n} style(s)")
    if any(m < 0 or not math.isfinite(m) for m in mix) or sum(mix) <= 0:
        raise DynastError("--mix weights must be non-negative and not all zero")
    total = float(sum(mix))
    return [float(m) / total for m in mix]


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
    mix = normalise_mix(opts.mix, len(style_paths))
    pairs = output_paths(content, style_paths, Path(output) if output else None)
    single = not content.is_dir()
    if single:
        check_output_path(pairs[0][1], overwrite)
    else:  # the output folder and every planned file, before any model is built
        check_output(pairs[0][1].parent, overwrite, kind="dir", files=[dst.name for _, dst in pairs])
    device = resolve_device(opts.device)
    style_images = [load_image(p) for p in style_paths]  # errors name the style file
    for path, img in zip(style_paths, style_images):
        hw = tuple(img.shape[-2:])
        check_image_size(path, hw, MIN_SIDE, fit_size(*hw, max_size=opts.style_size), f"--style-size {opts.style_size}")
    if single:
        hw = _content_hw(content)  # None: unreadable, reported by load_image in the loop
        if hw is not None:
            check_content_size(content, hw, opts)  # before the method is built
    method = get_style_method(opts.method, weights=opts.weights, device=device, vgg=opts.vgg, **opts.method_options)
    refine = refine_steps(opts.method, opts.refine)
    work = work_size(opts.method, opts.work_size)
    if opts.max_memory is not None:
        _plan_memory(method, [src for src, _ in pairs], style_images, opts, device, notify, refine, work)
    if opts.compile:
        from dynast_cli.runtime import compile_modules

        compile_modules(method, ("encoder", "decoder"), device, notify)
    if refine:
        from dynast_cli.pipelines.refine import with_refinement

        method = with_refinement(method, refine, device, opts.vgg)
    states = prepare_styles(method, style_images, opts.style_size, device)

    report = BatchReport()
    for i, (src, dst) in enumerate(pairs):
        if progress:
            progress(i, len(pairs), src)
        try:
            if not single:
                check_output_path(dst, overwrite)
            image = load_image(src)
            check_content_size(src, tuple(image.shape[-2:]), opts)
            image = resize(image[None], fit_size(*image.shape[-2:], opts.max_size, opts.size)).to(device)
            out = stylize(method, image, states, mix, opts.alpha, opts.keep_color, work)
            report.written.append(save_image(out, dst))
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


def check_content_size(path: Path, hw: tuple[int, int], opts: StyleOptions) -> None:
    """Refuse a content image of ``hw`` ``(H, W)`` whose smaller side is, or is resized by --size/--max-size
    to, under :data:`MIN_SIDE` px (:class:`InputError` naming it)."""
    fitted = fit_size(*hw, opts.max_size, opts.size)
    option = f"--size {opts.size}" if opts.size and not (opts.max_size and opts.max_size < opts.size) \
        else f"--max-size {opts.max_size}"
    check_image_size(path, hw, MIN_SIDE, fitted, option)


def _content_hw(path: Path) -> tuple[int, int] | None:
    """(H, W) of an image file from its header (EXIF rotation applied), None when unreadable."""
    from dynast_cli.io.images import read_image_size

    return read_image_size(path)


def refine_steps(method: str, refine: int | None) -> int:
    """``--refine`` resolved: the given steps, or the method's default (10 for ``dynast``, else 0)."""
    from dynast_cli.pipelines.refine import default_refine_steps

    if refine is None:
        return default_refine_steps(method)
    if refine < 0:
        raise UsageError(f"--refine takes a number of steps >= 0, got {refine}")
    return refine


def _plan_memory(
    method: StyleMethod, contents: Sequence[Path], styles: Sequence[torch.Tensor], opts: StyleOptions,
    device: torch.device, notify: Callable[[str], None] | None, refine: int = 0, work: int | None = None,
) -> None:
    """Plan the attention tiles for the largest content (after --size/--max-size, at the working size
    ``work`` when it is smaller) and apply them (with ``refine`` steps, the refinement's working memory
    counts too)."""
    from dynast_cli.memory import apply_style_plan, plan_style

    sizes = [fit_size(*hw, opts.max_size, opts.size) for hw in map(_content_hw, contents) if hw is not None]
    if work:
        sizes = [fit_size(*hw, max_size=work) for hw in sizes]
    if not sizes:
        return  # nothing readable: the loop reports the files
    largest = max(sizes, key=lambda hw: hw[0] * hw[1])
    style_hws = [fit_size(*img.shape[-2:], max_size=opts.style_size) for img in styles]
    extra = 0
    if refine:
        from dynast_cli.pipelines.refine import refine_bytes

        extra = refine_bytes(largest)
    plan = plan_style(opts.max_memory, method, largest, style_hws, device, extra_bytes=extra)
    apply_style_plan(method, plan)
    for note in plan.notes:
        if notify:
            notify(note)
