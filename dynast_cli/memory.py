"""Memory budgets (``--max-memory``): parse a size, estimate the peak, choose the attention tiles.

The one memory model of the project lives here. A run's peak (resident memory on the CPU, allocated
memory on a GPU) is estimated as::

    peak = BASE + weights + styles + max(pixels, style pixels) * bytes_per_pixel + tile

- ``BASE``: Python, PyTorch and dynast loaded (measured, CPU only; 0 on a GPU);
- ``weights``: the parameters and buffers of the loaded model (exact, summed over its tensors);
- ``styles``: the prepared style states kept during stylisation (from the style sizes and the
  method's key/value widths: its profile's ``style_bytes``);
- ``bytes_per_pixel``: bytes per (padded) content pixel of the encoder, the feature maps kept for the
  attention levels, and the decoder: the activations, which no attention tile can shrink. Fitted to
  measured peaks by ``docs/bench/calibrate_memory.py`` (for reference, one 64-channel float32 map at
  full resolution is 256 bytes per pixel);
- ``tile``: the attention working set, the only part a budget can trade for speed. By score-matrix
  elements (AdaAttN, StyA2K: ``TILE_COPIES`` float32 copies of the scores are alive at once) or by
  query positions (DynaST style and generator), each query costing its candidate keys/values and
  scores (:func:`query_bytes`).

What a style method contributes is its :class:`~dynast_cli.styles.registry.MemoryProfile`, declared
in its own module (``method.spec.memory``); nothing here names a method. :func:`plan_style` /
:func:`plan_generator` pick the largest tile (a power of two, at most the method's default) whose
estimate fits the budget. Tiles never change the result (queries are processed independently; tests
compare chunked with unchunked outputs). If even the smallest tile does not fit, a method whose profile
allows it keeps fewer style key positions at relu4_1/relu5_1 (AdaAttN's official ``max_sample``
subsampling; the plan carries a note that the CLI prints); otherwise :class:`MemoryBudgetError` says
the estimated minimum before any work is done.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from dynast_cli.errors import EXIT_MEMORY, EXIT_USAGE, DynastError
from dynast_cli.ops import PAD_MULTIPLE
from dynast_cli.runtime import compile_module

FLOAT = 4  # bytes per float32
GiB, MiB = 1 << 30, 1 << 20

#: Resident memory of the process before any image work: interpreter, PyTorch, dynast imported
#: (``docs/bench/calibrate_memory.py``: intercept of the fit minus the weights; session 12, bf16 convolutions:
#: 145-411 MB across methods and runs, rounded up from the attention methods' so that with their
#: ``bytes_per_pixel`` every calibrated size is estimated at or above its measured peak).
BASE = 352 * MiB
#: Peak bytes per output pixel of the full-size images around a method that paints at a smaller working
#: size (the content at full size, the upsampled output, the 8-bit copy written): measured 20-21 B/px on
#: this project's CPU box (peak RSS of `dynast style --size 2000 / 4000` minus `--size 512`), with margin.
FULL_SIZE_BYTES_PER_PIXEL = 32

#: Bytes per pixel per generator channel (``ngf``) of the DynaST generator (pose, face): measured
#: 2320 B/px with the face weights (ngf 16, peak RSS 414 MB at 256x256, 849 MB at 512x512), rounded
#: up; the per-``ngf`` scaling to the 92M-parameter pose model (ngf 64) is not measured.
GENERATOR_PER_PIXEL_PER_NGF = 150.0

#: Float32 copies of one score tile alive at once (scores, softmax weights, a transposed/strided copy).
TILE_COPIES = 3
#: Smallest and default tiles: score elements (AdaAttN, StyA2K), query positions (DynaST).
MIN_TILE_ELEMENTS, DEFAULT_TILE_ELEMENTS = 1 << 16, 1 << 24
MIN_CHUNK = 64
#: The fewest style key positions a method may be cut down to (relu4_1/relu5_1) to meet a budget.
MIN_MAX_SAMPLE = 1024

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class MemoryBudgetError(DynastError):
    """The memory budget cannot be met (exit 6)."""

    exit_code = EXIT_MEMORY


class MemorySizeError(MemoryBudgetError):
    """``--max-memory`` was not understood (``abc``, below 1 MiB): a usage error (exit 1), not a budget
    that cannot be met. A :class:`MemoryBudgetError` still, for callers that catch budget problems."""

    exit_code = EXIT_USAGE


def parse_memory(text: str | int | None) -> int | None:
    """``"4G"`` -> 4 GiB in bytes; ``"500M"``, ``"1.5GB"``, ``"512MiB"``, ``"2000000000"`` (bytes).

    Units are binary (K = 1024). ``None`` / ``""`` -> None (no budget). Anything else, or a size
    below 1 MiB, raises :class:`MemorySizeError` (a usage error) with a one-line message.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtKMGT]?)(?:i?[bB])?\s*", text)
        if not m:
            raise MemorySizeError(f"--max-memory takes a size like 4G, 500M or 1.5GB, got '{text}'")
        value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value < MiB:
        raise MemorySizeError(f"--max-memory must be at least 1M, got '{text}'")
    return value


def format_bytes(n: float) -> str:
    """1.5 * 2**30 -> '1.5 GB' (binary units, one decimal; MB below 1 GB)."""
    return f"{n / GiB:.1f} GB" if n >= GiB else f"{n / MiB:.0f} MB"


@dataclass
class MemoryPlan:
    """What a budget decided. ``tile``: score elements per AdaAttN/StyA2K chunk, or query positions
    per DynaST chunk; ``max_sample``: AdaAttN relu4_1/relu5_1 style positions when the budget cut
    them (else None); ``estimate``: the estimated peak with these settings, ``minimum``: with the
    smallest tile (bytes)."""

    budget: int
    estimate: int
    tile: int
    minimum: int = 0
    max_sample: int | None = None
    notes: list[str] = field(default_factory=list)


def model_bytes(model: Any) -> int:
    """Bytes of the parameters and buffers of a module, or of every module attribute of a method
    object (shared tensors counted once)."""
    modules = [model] if isinstance(model, torch.nn.Module) else [
        v for v in vars(model).values() if isinstance(v, torch.nn.Module)
    ]
    seen: dict[int, int] = {}
    for module in modules:
        for t in list(module.parameters()) + list(module.buffers()):
            seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


def level_sizes(hw: tuple[int, int], levels: tuple[int, ...] = (2, 3, 4)) -> list[int]:
    """Positions of VGG relu{l+1}_1 maps (ceil pooling) for an (H, W) input: relu3_1, relu4_1, relu5_1."""
    h, w = hw
    return [math.ceil(h / 2**i) * math.ceil(w / 2**i) for i in levels]


def padded(hw: tuple[int, int]) -> tuple[int, int]:
    """(H, W) padded to the multiple every method works at (:data:`dynast_cli.ops.PAD_MULTIPLE`)."""
    return (-(-hw[0] // PAD_MULTIPLE) * PAD_MULTIPLE, -(-hw[1] // PAD_MULTIPLE) * PAD_MULTIPLE)


def query_bytes(n_keys: int, candidates: int, channels: int) -> int:
    """Working bytes per query of a DynaST attention chunk: a dense row over ``n_keys`` keys
    (``TILE_COPIES`` copies) or ``candidates`` gathered sparse keys/values of ``channels`` (x3: key,
    value and the (feature, feature^2) value moments), whichever is larger."""
    return FLOAT * max(TILE_COPIES * n_keys, 3 * candidates * channels)


def _powers_down(start: int, stop: int) -> list[int]:
    """start, start/2, ... down to (and including) stop; powers of two when start is one."""
    out = [start]
    while out[-1] // 2 >= stop:
        out.append(out[-1] // 2)
    if out[-1] != stop:
        out.append(stop)
    return out


def _choose(budget: int, fixed: int, tiles: list[int], tile_bytes, what: str, minimum_note: str) -> MemoryPlan:
    """Largest tile of ``tiles`` (descending) with fixed + tile_bytes(tile) <= budget."""
    minimum = int(fixed + tile_bytes(tiles[-1]))
    for tile in tiles:
        estimate = int(fixed + tile_bytes(tile))
        if estimate <= budget:
            return MemoryPlan(budget, estimate, tile, minimum=minimum)
    raise MemoryBudgetError(
        f"--max-memory {format_bytes(budget)} is below the estimated minimum {format_bytes(minimum)} "
        f"for {what}{minimum_note}"
    )


def memory_profile(method: Any) -> Any:
    """The :class:`~dynast_cli.styles.registry.MemoryProfile` of a built style method (its spec's), or a
    :class:`MemoryBudgetError` saying ``--max-memory`` does not support it."""
    spec = getattr(method, "spec", None)
    if spec is None or spec.memory is None:
        name = getattr(method, "name", None) or type(method).__name__
        raise MemoryBudgetError(f"--max-memory is not supported with --method {name}")
    return spec.memory


def plan_style(
    budget: int,
    method: Any,
    content_hw: tuple[int, int],
    style_hws: list[tuple[int, int]],
    device: torch.device | str = "cpu",
    batch: int = 1,
    extra_bytes: int = 0,
    full_hw: tuple[int, int] | None = None,
) -> MemoryPlan:
    """Choose the attention tile (and, only when unavoidable and the method allows it, fewer style keys)
    so that stylising a ``content_hw`` content (``batch`` of them at once: video frames) with styles of
    ``style_hws`` fits ``budget`` bytes.

    ``method``: the built style method (its weights are counted, its spec's memory profile is used);
    ``extra_bytes``: more working memory counted as fixed (``--refine``:
    :func:`dynast_cli.styles.refine.refine_bytes`). Raises :class:`MemoryBudgetError` when even the
    smallest tile does not fit. ``full_hw``: the output's (H, W) when the method paints the content at a
    smaller working size (``content_hw``) and upsamples: its full-size copies count too
    (:data:`FULL_SIZE_BYTES_PER_PIXEL` each of ``batch``).
    """
    profile = memory_profile(method)
    cuda = torch.device(device).type == "cuda"
    h, w = padded(content_hw)
    activations = profile.bytes_per_pixel * max([h * w * batch] + [a * b for a, b in style_hws])
    full = 0
    if full_hw is not None and tuple(full_hw) != tuple(content_hw):
        full = int(FULL_SIZE_BYTES_PER_PIXEL * full_hw[0] * full_hw[1] * batch)
    base = (0 if cuda else BASE) + model_bytes(method) + extra_bytes + full
    frames = f"{batch} frames of " if batch > 1 else "a "
    what = f"{frames}{content_hw[1]}x{content_hw[0]} content with {method.name}"
    if full:
        what = (f"{frames}{full_hw[1]}x{full_hw[0]} content with {method.name} (painted at "
                f"{content_hw[1]}x{content_hw[0]}; the full-size images {format_bytes(full)})")
    if extra_bytes:
        note = (f" (activations alone {format_bytes(activations)}, refinement {format_bytes(extra_bytes)}; "
                "try a smaller --max-size or --refine 0)")
    else:
        note = f" (activations alone {format_bytes(activations)}; try a smaller --max-size)"
    fixed = int(base + activations + sum(profile.style_bytes(method, s) for s in style_hws))

    if profile.tile is None:
        if fixed > budget:
            raise MemoryBudgetError(f"--max-memory {format_bytes(budget)} is below the estimated minimum "
                                    f"{format_bytes(fixed)} for {what}{note}")
        return MemoryPlan(budget, fixed, 0, minimum=fixed)
    if profile.tile == "elements":  # score-matrix elements per chunk
        tiles = _powers_down(min(method.tile, DEFAULT_TILE_ELEMENTS), MIN_TILE_ELEMENTS)
        per_tile = batch * TILE_COPIES * FLOAT
    else:  # "queries": query positions per chunk
        tiles = _powers_down(max(method.tile, MIN_CHUNK), MIN_CHUNK)
        per_tile = batch * profile.query_bytes(method, style_hws)
    try:
        return _choose(budget, fixed, tiles, lambda t: per_tile * t, what, note)
    except MemoryBudgetError:
        if not profile.cut_keys:
            raise
    fixed = int(base + activations)
    return _plan_fewer_keys(budget, fixed, method, profile, style_hws, what, note, per_tile * tiles[-1], tiles[-1])


def _plan_fewer_keys(budget: int, fixed: int, method: Any, profile: Any, style_hws, what: str, note: str,
                     tile_bytes: int, tile: int) -> MemoryPlan:
    """Halve the relu4_1/relu5_1 style key positions (smallest tile) until the plan fits."""
    caps = method.key_caps
    largest = max(level_sizes(s)[1] for s in style_hws)
    for cap in _powers_down(min(caps[1], largest), MIN_MAX_SAMPLE)[1:]:
        cut = (min(caps[0], cap), cap)
        estimate = fixed + sum(profile.style_bytes(method, s, cut) for s in style_hws) + tile_bytes
        if estimate <= budget:
            notice = (f"--max-memory: {method.spec.title} keeps {cap} of the style's key positions at "
                      f"relu4_1/relu5_1 (was {min(caps[1], largest)}); a smaller --style-size keeps them all")
            return MemoryPlan(budget, int(estimate), tile, int(estimate), cap, [notice])
    fewest = (MIN_MAX_SAMPLE, MIN_MAX_SAMPLE)
    minimum = fixed + sum(profile.style_bytes(method, s, fewest) for s in style_hws)
    raise MemoryBudgetError(
        f"--max-memory {format_bytes(budget)} is below the estimated minimum {format_bytes(minimum + tile_bytes)} "
        f"for {what}{note}"
    )


def apply_style_plan(method: Any, plan: MemoryPlan) -> None:
    """Set the planned tile (and style key cap) on a style method built by the pipeline."""
    if memory_profile(method).tile is not None:
        method.tile = plan.tile
    if plan.max_sample is not None:
        method.limit_keys(plan.max_sample)


def plan_generator(
    budget: int, generator: Any, hw: tuple[int, int], device: torch.device | str = "cpu", default_chunk: int | None = None
) -> MemoryPlan:
    """Chunk (query positions) for a DynaST generator (pose, face) at an (H, W) output."""
    cfg = generator.config
    cuda = torch.device(device).type == "cuda"
    h, w = hw
    pixels = h * w
    activations = GENERATOR_PER_PIXEL_PER_NGF * cfg.ngf * pixels
    fixed = int((0 if cuda else BASE) + model_bytes(generator) + activations)
    dense = (h // 8) * (w // 8)
    per_query = query_bytes(dense, 5 * cfg.top_k, cfg.ngf + cfg.pos_dim)
    start = default_chunk or generator.chunk
    tiles = _powers_down(max(start, MIN_CHUNK), MIN_CHUNK)
    what = f"a {w}x{h} DynaST generation (ngf {cfg.ngf})"
    return _choose(budget, fixed, tiles, lambda t: per_query * t, what, f" (activations alone {format_bytes(activations)})")


def budget_generator(generator: Any, hw: tuple[int, int], budget: int | None, device: torch.device | str = "cpu") -> MemoryPlan | None:
    """Plan a DynaST generator's attention chunk for an (H, W) output under ``budget`` bytes and set
    it on the generator (``generator.chunk``); None without a budget."""
    if budget is None:
        return None
    plan = plan_generator(budget, generator, hw, device)
    generator.chunk = plan.tile
    return plan


def prepare_generator(generator: torch.nn.Module, size: tuple[int, int], max_memory: int | None = None,
                      compile: bool = False, notify=None) -> torch.nn.Module:
    """``--max-memory`` / ``--compile`` for a DynaST generator producing (H, W) = ``size`` images:
    the attention chunk planned under the budget (:func:`budget_generator`, raises
    when it cannot be met), then :func:`compile_module`. Returns the generator to call."""
    device = next(generator.parameters()).device
    if max_memory is not None:
        budget_generator(generator, size, max_memory, device)
    return compile_module(generator, device, notify) if compile else generator


def plan_video(
    budget: int, method: Any, frame_hw: tuple[int, int], style_hws: list[tuple[int, int]], batch: int,
    device: torch.device | str = "cpu",
) -> tuple[MemoryPlan, int]:
    """:func:`plan_style` for ``batch`` frames at once, halving the batch (frames are independent, so
    the result is the same) until the plan fits -> (plan, batch); a smaller batch adds a note."""
    sizes = _powers_down(batch, 1)
    for i, b in enumerate(sizes):
        try:
            plan = plan_style(budget, method, frame_hw, style_hws, device, batch=b)
        except MemoryBudgetError:
            if i == len(sizes) - 1:
                raise
            continue
        if b != batch:
            plan.notes.append(f"--max-memory: {b} frame(s) at a time instead of --batch {batch}")
        return plan, b
    raise AssertionError("unreachable")
