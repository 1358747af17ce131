"""Memory budgets (``--max-memory``): parse a size, estimate the peak, choose the attention tiles.

The one memory model of the project lives here. A run's peak (resident memory on the CPU, allocated
memory on a GPU) is estimated as::

    peak = BASE + weights + styles + max(pixels * PER_PIXEL[model], style pixels * PER_PIXEL[model])
           + tile

- ``BASE``: Python, PyTorch and dynast loaded (measured, CPU only; 0 on a GPU);
- ``weights``: the parameters and buffers of the loaded model (exact, summed over its tensors);
- ``styles``: the prepared style states kept during stylisation (computed from the style sizes and
  the method's key/value widths, see :func:`style_state_bytes`);
- ``PER_PIXEL``: bytes per (padded) content pixel of the encoder, the feature maps kept for the
  attention levels, and the decoder: the activations, which no attention tile can shrink. Fitted to
  measured peaks by ``docs/bench/calibrate_memory.py`` (see :data:`PER_PIXEL`);
- ``tile``: the attention working set, the only part a budget can trade for speed. AdaAttN and
  StyA2K tile by score-matrix elements (``chunk_elements``: ``TILE_COPIES`` float32 copies of the
  scores are alive at once); DynaST (style and generator) by query positions (``chunk``), each query
  costing its candidate keys/values and scores (:func:`query_bytes`).

:func:`plan_style` / :func:`plan_generator` pick the largest tile (a power of two, at most the
method's default) whose estimate fits the budget. Tiles never change the result (queries are
processed independently; tests compare chunked with unchunked outputs). If even the smallest tile
does not fit, AdaAttN may keep fewer style key positions at relu4_1/relu5_1 (its official
``max_sample`` subsampling; the plan carries a note that the CLI prints); otherwise
:class:`MemoryBudgetError` says the estimated minimum before any work is done.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from dynast_cli.errors import EXIT_MEMORY, EXIT_USAGE, DynastError

FLOAT = 4  # bytes per float32
GiB, MiB = 1 << 30, 1 << 20

#: Resident memory of the process before any image work: interpreter, PyTorch, dynast imported
#: (``docs/bench/calibrate_memory.py``: intercept of the fit minus the weights).
BASE = 256 * MiB

#: Activation bytes per padded content pixel (the max over encoder, attention levels and decoder),
#: fitted on measured peak RSS at 512, 1024 and 1440 px with ``docs/bench/calibrate_memory.py``
#: (adaattn 934, a2k 1142, dynast 1040, adain 1024 B/px), then raised so that the estimate stays
#: above the measured 3840x2160 adaattn peak (8.09 GiB: 980 B/px) and above the fitted slopes.
#: For reference, one 64-channel float32 map at full resolution is 256 bytes per pixel.
PER_PIXEL = {
    "adaattn": 1000.0,
    "stya2k": 1200.0,
    "dynast": 1100.0,
    "adain": 1120.0,
}
#: Bytes per pixel per generator channel (``ngf``) of the DynaST generator (pose, face): measured
#: 2320 B/px with the face weights (ngf 16, peak RSS 414 MB at 256x256, 849 MB at 512x512), rounded
#: up; the per-``ngf`` scaling to the 92M-parameter pose model (ngf 64) is not measured.
GENERATOR_PER_PIXEL_PER_NGF = 150.0

#: Float32 copies of one score tile alive at once (scores, softmax weights, a transposed/strided copy).
TILE_COPIES = 3
#: Smallest and default tiles: score elements for AdaAttN/StyA2K, query positions for DynaST.
MIN_TILE_ELEMENTS, DEFAULT_TILE_ELEMENTS = 1 << 16, 1 << 24
MIN_CHUNK = 64
#: The fewest style key positions AdaAttN may be cut down to (relu4_1/relu5_1) to meet a budget.
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


def _level_sizes(hw: tuple[int, int], levels: tuple[int, ...] = (2, 3, 4)) -> list[int]:
    """Positions of VGG relu{l+1}_1 maps (ceil pooling) for an (H, W) input."""
    h, w = hw
    return [math.ceil(h / 2**i) * math.ceil(w / 2**i) for i in levels]


def _pad16(hw: tuple[int, int]) -> tuple[int, int]:
    return (-(-hw[0] // 16) * 16, -(-hw[1] // 16) * 16)


def style_state_bytes(kind: str, style_hw: tuple[int, int], max_sample: tuple[int, int] = (4096, 65536)) -> int:
    """Bytes of one prepared style (float32) for ``kind`` at a style of ``style_hw`` pixels.

    adaattn: keys (448/960/1472 wide) + values (256/512/512) at relu3_1/4_1/5_1, positions capped by
    ``max_sample`` = (relu3_1 cap, relu4_1/relu5_1 cap); stya2k: projected key and value maps plus
    block summaries; dynast: keys + (feature, feature^2) moments; adain: the three feature maps.
    """
    n3, n4, n5 = _level_sizes(_pad16(style_hw) if kind == "dynast" else style_hw)
    widths = (256, 512, 512)
    if kind == "adaattn":
        caps = (max_sample[0], max_sample[1], max_sample[1])
        return FLOAT * sum((k + v) * min(n, cap) for k, v, n, cap in zip((448, 960, 1472), widths, (n3, n4, n5), caps))
    if kind == "stya2k":
        return FLOAT * sum(2 * c * n + 2 * c * -(-n // 16) for c, n in zip(widths, (n3, n4, n5)))
    if kind == "dynast":
        return FLOAT * sum(3 * c * n for c, n in zip(widths, (n3, n4, n5)))
    return FLOAT * sum(c * n for c, n in zip(widths, (n3, n4, n5)))


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


def method_kind(method: Any) -> str:
    """The memory model's name for a style method object (adaattn, stya2k, dynast, adain)."""
    kind = getattr(method, "architecture", None) or getattr(method, "name", None)
    if kind not in PER_PIXEL:
        raise MemoryBudgetError(f"--max-memory is not supported with --method {kind or type(method).__name__}")
    return kind


def plan_style(
    budget: int,
    method: Any,
    content_hw: tuple[int, int],
    style_hws: list[tuple[int, int]],
    device: torch.device | str = "cpu",
    batch: int = 1,
    extra_bytes: int = 0,
) -> MemoryPlan:
    """Choose the attention tile (and, for AdaAttN only when unavoidable, fewer style keys) so that
    stylising a ``content_hw`` content (``batch`` of them at once: video frames) with styles of
    ``style_hws`` fits ``budget`` bytes.

    ``method``: the built style method (its weights are counted); ``extra_bytes``: more working memory
    counted as fixed (``--refine``: :func:`dynast_cli.pipelines.refine.refine_bytes`). Raises :class:`MemoryBudgetError`
    when even the smallest tile does not fit.
    """
    kind = method_kind(method)
    cuda = torch.device(device).type == "cuda"
    h, w = _pad16(content_hw)
    pixels = h * w * batch
    per_pixel = PER_PIXEL[kind]
    activations = per_pixel * max([pixels] + [a * b for a, b in style_hws])
    base = (0 if cuda else BASE) + model_bytes(method) + extra_bytes
    frames = f"{batch} frames of " if batch > 1 else "a "
    what = f"{frames}{content_hw[1]}x{content_hw[0]} content with {kind}"
    if extra_bytes:
        note = (f" (activations alone {format_bytes(activations)}, refinement {format_bytes(extra_bytes)}; "
                "try a smaller --max-size or --refine 0)")
    else:
        note = f" (activations alone {format_bytes(activations)}; try a smaller --max-size)"

    if kind in ("adaattn", "stya2k"):
        caps = _adaattn_caps(method) if kind == "adaattn" else (0, 0)
        states = sum(style_state_bytes(kind, s, caps) for s in style_hws)
        fixed = int(base + activations + states)
        tiles = _powers_down(min(getattr(method, "chunk_elements", DEFAULT_TILE_ELEMENTS), DEFAULT_TILE_ELEMENTS),
                             MIN_TILE_ELEMENTS)
        try:
            return _choose(budget, fixed, tiles, lambda t: batch * TILE_COPIES * FLOAT * t, what, note)
        except MemoryBudgetError:
            if kind != "adaattn":
                raise
        return _plan_fewer_keys(budget, int(base + activations), caps, style_hws, what, note, batch)

    if kind == "dynast":
        states = sum(style_state_bytes(kind, s) for s in style_hws)
        fixed = int(base + activations + states)
        coarse = max(_level_sizes(_pad16(s))[1] for s in style_hws)  # dense matching at relu4_1
        per_query = query_bytes(coarse, 5 * getattr(method, "top_k", 4), 256)
        tiles = _powers_down(max(getattr(method, "chunk", 1024), MIN_CHUNK), MIN_CHUNK)
        return _choose(budget, fixed, tiles, lambda t: batch * per_query * t, what, note)

    fixed = int(base + activations + sum(style_state_bytes(kind, s) for s in style_hws))
    if fixed > budget:
        raise MemoryBudgetError(
            f"--max-memory {format_bytes(budget)} is below the estimated minimum {format_bytes(fixed)} for {what}{note}"
        )
    return MemoryPlan(budget, fixed, 0, minimum=fixed)


def _adaattn_caps(method: Any) -> tuple[int, int]:
    layers = method._layers()
    return layers[0].max_sample, layers[1].max_sample


def _plan_fewer_keys(
    budget: int, fixed: int, caps: tuple[int, int], style_hws, what: str, note: str, batch: int = 1
) -> MemoryPlan:
    """AdaAttN: halve the relu4_1/relu5_1 style positions (smallest tile) until the plan fits."""
    tile_bytes = batch * TILE_COPIES * FLOAT * MIN_TILE_ELEMENTS
    largest = max(_level_sizes(s)[1] for s in style_hws)
    for cap in _powers_down(min(caps[1], largest), MIN_MAX_SAMPLE)[1:]:
        estimate = fixed + sum(style_state_bytes("adaattn", s, (min(caps[0], cap), cap)) for s in style_hws) + tile_bytes
        if estimate <= budget:
            notice = (f"--max-memory: AdaAttN keeps {cap} of the style's key positions at relu4_1/relu5_1 "
                      f"(was {min(caps[1], largest)}); a smaller --style-size keeps them all")
            return MemoryPlan(budget, int(estimate), MIN_TILE_ELEMENTS, int(estimate), cap, [notice])
    minimum = fixed + sum(style_state_bytes("adaattn", s, (MIN_MAX_SAMPLE, MIN_MAX_SAMPLE)) for s in style_hws)
    raise MemoryBudgetError(
        f"--max-memory {format_bytes(budget)} is below the estimated minimum {format_bytes(minimum + tile_bytes)} "
        f"for {what}{note}"
    )


def apply_style_plan(method: Any, plan: MemoryPlan) -> None:
    """Set the planned tile (and AdaAttN style key cap) on a style method built by the pipeline."""
    kind = method_kind(method)
    if kind in ("adaattn", "stya2k"):
        method.chunk_elements = plan.tile
    elif kind == "dynast":
        method.chunk = plan.tile
    if plan.max_sample is not None:
        layers = method._layers()
        layers[0].max_sample = min(layers[0].max_sample, plan.max_sample)
        for layer in layers[1:]:
            layer.max_sample = plan.max_sample


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
