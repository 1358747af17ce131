"""Speed and peak memory of the attention kernels (fast vs naive twin) and of whole style methods.

A *case* turns a size into zero-argument callables, one per variant (``fast`` and, where the kernel
has one, its ``naive`` twin from :mod:`dynast_cli.attention.reference`)::

    results = run_benchmarks(select_cases(["dense", "inner"]), sizes=[32, 64, 128])
    for r in results:
        print(r.case, r.size, r.fast.median_ms, r.naive.median_ms, r.speed_ratio, r.memory_ratio)

For a kernel case the size ``n`` means an ``n x n`` grid of positions (``N = n*n`` queries and as
many keys) with the channel count the real models use at that level (256 at relu3_1, 512 at
relu4_1); for an end-to-end case it is the side of the content image.

Timing: the median of ``repeat`` calls after ``warmup`` calls, all under ``torch.inference_mode``
(CUDA is synchronised around each call), in wall-clock time or, with ``clock="cpu"``, in CPU time
of the process (see :func:`time_call`).

Peak memory: the largest number of bytes the call holds above what was allocated when it started
(its output included). On CUDA that is ``torch.cuda.max_memory_allocated``. On the CPU it is read
from the PyTorch profiler's allocator trace (``profile_memory=True``): every allocation and free of
the CPU allocator is recorded in order, and the peak is the maximum of their running sum. This was
chosen over the peak resident set (``ru_maxrss`` of a fresh spawned process) because it is exact to
the byte, deterministic from run to run, blind to glibc's caching and page granularity and to the
other processes of a shared machine, needs no subprocess (hence no ~2 s interpreter start per
measurement), and counts the same thing as the CUDA figure. What it misses is memory allocated behind
PyTorch's back (BLAS scratch, the allocator's fragmentation). A cross-check against the ``ru_maxrss``
increase of fresh single-thread processes at 64x64: naive full attention 132.0 MB both ways, fast
inner-scale 126.0 vs 126.4 MB, fast progressive 64.2 vs 96.1 MB (fragmentation), naive inner-scale
202.1 vs 135.1 MB (RSS misses what glibc re-used from earlier frees).

The profiler keeps a record of every operator, ~15 kB each: a call running more than
:data:`MAX_PROFILED_OPS` operators (a naive twin looping in Python) is timed, and its peak memory is
left out with a note, rather than measured at the cost of gigabytes of profiler records.

Growth guard: the sizes run in increasing order and, before each call, the time and memory of the
previous size are extrapolated as if the variant were quadratic in the number of positions (a
factor ``(n / n_prev) ** 4``). A call expected to exceed ``budget_mb`` or ``max_call_s`` is skipped
and the result says so (``note``), instead of exhausting a shared machine's memory. When the smallest size
asked for is above 16, each kernel is first called, unreported, at 8 and 16 (:data:`PROBE_SIZES`), so that
the first size is guarded too.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from dynast_cli.errors import DynastError
from dynast_cli.io.outputs import save_figure
from dynast_cli.runtime import silenced_stderr

MB = 1024 * 1024
#: The CPU profiler keeps ~15 kB per operator: calls running more (naive twins that loop over
#: positions or blocks in Python) get a time but no peak memory.
MAX_PROFILED_OPS = 50_000

Variant = Callable[[], Any]


class BenchInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_benchmarks`; :attr:`results` holds the rows measured before it (a row
    being measured is left out)."""

    def __init__(self, results: list["BenchResult"]):
        super().__init__("interrupted")
        self.results = results


class Unavailable(Exception):
    """A case cannot run here (its kernel is not written yet, weights are missing, ...)."""


@dataclass(frozen=True)
class BenchCase:
    """A named benchmark: ``prepare(size, device)`` -> ``{"fast": call, "naive": call}`` (naive optional).

    ``prepare`` raises :class:`Unavailable` with a one-line reason when the case cannot run.
    """

    name: str
    summary: str
    kind: str  # "kernel" or "e2e"
    prepare: Callable[[int, torch.device], dict[str, Variant]]
    twin: bool = False  # prepare gives a "naive" variant too: a row measuring nothing gives it the row's note


@dataclass
class Measurement:
    """One variant at one size: median time, peak memory, or why it was not measured."""

    median_ms: float | None = None
    peak_mb: float | None = None
    times_ms: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.median_ms is not None


@dataclass
class BenchResult:
    """One case at one size: the fast variant and, for kernels, the naive twin."""

    case: str
    kind: str
    size: int
    fast: Measurement
    naive: Measurement | None = None  # None: the case has no naive twin

    @property
    def speed_ratio(self) -> float | None:
        """naive time / fast time (> 1: the fast kernel is faster)."""
        if self.naive is None or not (self.fast.ok and self.naive.ok) or not self.fast.median_ms:
            return None
        return self.naive.median_ms / self.fast.median_ms

    @property
    def memory_ratio(self) -> float | None:
        """naive peak / fast peak (> 1: the fast kernel needs less memory)."""
        if self.naive is None or self.naive.peak_mb is None or not self.fast.peak_mb:
            return None
        return self.naive.peak_mb / self.fast.peak_mb

    def to_dict(self) -> dict[str, Any]:
        naive = self.naive or Measurement(note="no naive twin")
        return {
            "case": self.case, "kind": self.kind, "size": self.size,
            "fast_ms": self.fast.median_ms, "naive_ms": naive.median_ms, "speed_ratio": self.speed_ratio,
            "fast_peak_mb": self.fast.peak_mb, "naive_peak_mb": naive.peak_mb, "memory_ratio": self.memory_ratio,
            "fast_times_ms": self.fast.times_ms, "naive_times_ms": naive.times_ms,
            "fast_note": self.fast.note, "naive_note": naive.note,
        }


# ---------------------------------------------------------------------------------------------
# measuring one call
# ---------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def time_call(fn: Variant, device: torch.device, warmup: int = 1, repeat: int = 5, clock: str = "wall") -> list[float]:
    """Milliseconds of ``repeat`` calls of ``fn`` after ``warmup`` untimed ones.

    ``clock``: ``wall`` (elapsed time) or ``cpu`` (CPU time of this process, all its threads): on a
    shared, oversubscribed machine with one thread, ``cpu`` leaves out the time spent waiting for a core.
    """
    now = CLOCKS[clock]
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        _sync(device)
        times = []
        for _ in range(repeat):
            start = now()
            fn()
            _sync(device)
            times.append((now() - start) * 1e3)
    return times




def peak_memory_bytes(fn: Variant, device: torch.device) -> int:
    """Peak bytes allocated by one call of ``fn`` above the level at its start (see the module docstring)."""
    with torch.inference_mode():
        if device.type == "cuda":
            _sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            fn()
            _sync(device)
            return torch.cuda.max_memory_allocated(device) - base
        from torch.profiler import ProfilerActivity, profile

        with silenced_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    cpu = torch.autograd.DeviceType.CPU
    # the raw allocator records; the public FunctionEvent view aggregates them per operator
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type() == cpu]
    running = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        running += event.nbytes()
        peak = max(peak, running)
    return peak


# ---------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------

CASES: dict[str, BenchCase] = {}


def register(case: BenchCase) -> BenchCase:
    CASES[case.name] = case
    return case


def _load(target: str) -> Any:
    """``"package.module:name"`` -> the function (or constant), or :class:`Unavailable` if it does not exist yet."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise Unavailable(f"{module_name} is not available ({exc.name} missing)") from None
    if not hasattr(module, attr):
        raise Unavailable(f"{module_name} has no {attr}")
    return getattr(module, attr)


def kernel_case(
    name: str, summary: str, make_inputs: Callable[[int, torch.device, torch.Generator], dict[str, Any]],
    fast: str, naive: str | None, fast_options: Callable[[int], dict[str, Any]] | None = None,
) -> BenchCase:
    """Register an attention kernel. ``make_inputs(n, device, generator)`` -> keyword arguments shared
    by ``fast`` and ``naive`` (both ``"module:function"``); ``fast_options(n)`` -> extra keyword
    arguments of the fast function only (its ``chunk``, set as the models set it)."""

    def prepare(size: int, device: torch.device) -> dict[str, Variant]:
        functions = {"fast": _load(fast)} | ({"naive": _load(naive)} if naive else {})
        inputs = make_inputs(size, device, torch.Generator().manual_seed(size))
        extra = {"fast": fast_options(size) if fast_options else {}, "naive": {}}
        return {variant: functools.partial(fn, **inputs, **extra[variant]) for variant, fn in functions.items()}

    return register(BenchCase(name, summary, "kernel", prepare, twin=naive is not None))


def features(c: int, n: int, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """A random feature map (1, c, n, n) on ``device``."""
    return torch.randn(1, c, n, n, generator=generator).to(device)


def tokens(c: int, n: int, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """Random tokens (1, n*n, c) on ``device``."""
    return features(c, n, device, generator).flatten(2).transpose(1, 2).contiguous()


def naive_full_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(c)) v with the (B, H, N, M) score matrix materialised. q (B,H,N,C), k/v (B,H,M,C)."""
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    return scores.softmax(dim=-1) @ v


def full_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """PyTorch's fused ``scaled_dot_product_attention`` (flash attention on a CPU for 4-D inputs), the
    same maths as :func:`naive_full_attention`."""
    return F.scaled_dot_product_attention(q, k, v)


def _model_chunk(n: int, rows_per_query: int = 1) -> dict[str, int]:
    """The ``chunk`` the style models pass: at most ``CHUNK_ELEMENTS`` score elements at once."""
    from dynast_cli.models.adaattn import CHUNK_ELEMENTS

    return {"chunk": max(1, CHUNK_ELEMENTS // (rows_per_query * n * n))}


kernel_case(
    "full", "baseline: torch SDPA vs materialised softmax(QK^T)V, 256 ch",
    lambda n, device, g: {key: tokens(256, n, device, g)[:, None] for key in "qkv"},
    fast=f"{__name__}:full_attention", naive=f"{__name__}:naive_full_attention",
)

# AdaAttN at relu4_1: keys are relu1_1..relu4_1 concatenated (64+128+256+512 = 960 ch), values 512 ch
kernel_case(
    "adaattn", "AdaAttN attention-weighted mean/std (softmax), keys 960 ch, values 512 ch",
    lambda n, device, g: {
        "query": features(960, n, device, g).flatten(2), "key": features(960, n, device, g).flatten(2),
        "value": features(512, n, device, g).flatten(2),
    },
    fast="dynast_cli.attention.adaattn:adaattn_stats", naive="dynast_cli.attention.reference:adaattn_stats_naive",
    fast_options=_model_chunk,
)

A2K_BLOCK, A2K_HEADS = 8, 8  # the official relu4_1 level: 8x8 blocks, 8 heads, 512 channels


def a2k_distributed(
    aggregate: Callable[..., tuple[torch.Tensor, torch.Tensor]], attend: Callable[..., torch.Tensor],
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, **attend_options: Any,
) -> torch.Tensor:
    """StyA2K's distributed attention as a model runs it: aggregate the style blocks, then attend.

    query (B, C, N) content, key / value (B, C, h, w) style -> (B, C, N).
    """
    k_agg, v_agg = aggregate(key, value, A2K_BLOCK, A2K_HEADS, 1.0, 0.0)
    return attend(query, k_agg, v_agg, A2K_HEADS, **attend_options)


def a2k_distributed_fast(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """:func:`a2k_distributed` with :mod:`dynast_cli.attention.all_to_key`."""
    from dynast_cli.attention import all_to_key as a2k

    return a2k_distributed(a2k.aggregate_blocks, a2k.distributed_attention, query, key, value, chunk=chunk)


def a2k_distributed_naive(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """:func:`a2k_distributed` with the naive twins."""
    from dynast_cli.attention import reference as ref

    return a2k_distributed(ref.aggregate_blocks_naive, ref.distributed_attention_naive, query, key, value)


kernel_case(
    "a2k-dist", "StyA2K distributed attention (block aggregation + point-to-block), 512 ch, 8x8 blocks, 8 heads",
    lambda n, device, g: {
        "query": features(512, n, device, g).flatten(2), "key": features(512, n, device, g),
        "value": features(512, n, device, g),
    },
    fast=f"{__name__}:a2k_distributed_fast", naive=f"{__name__}:a2k_distributed_naive",
    fast_options=lambda n: _model_chunk(math.ceil(n / A2K_BLOCK), A2K_HEADS),
)
kernel_case(
    "a2k-prog", "StyA2K progressive attention (block matching + point attention), 512 ch, 8x8 blocks, 8 heads",
    lambda n, device, g: {
        "query": features(512, n, device, g), "key": features(512, n, device, g),
        "value": features(512, n, device, g), "block": A2K_BLOCK, "heads": A2K_HEADS,
    },
    fast="dynast_cli.attention.all_to_key:progressive_attention",
    naive="dynast_cli.attention.reference:progressive_attention_naive",
)

# DynaST widths (official DeepFashion generator): the dense 1/8 level has q/k 640, prune 128, values
# 512 ch; the sparse cases use the 1/4 level's 320 / 64 / 256 ch at every size, top-k K = 4.
DYNAST_TOP_K = 4


def _dynast_inputs(c: int, p: int, cv: int, n: int, device: torch.device, g: torch.Generator) -> dict[str, Any]:
    return {
        "q": features(c, n, device, g), "k": features(c, n, device, g), "q_prune": features(p, n, device, g),
        "k_prune": features(p, n, device, g), "v": features(cv, n, device, g),
    }


def _sparse_inputs(n: int, device: torch.device, g: torch.Generator, coarse: bool, style: bool) -> dict[str, Any]:
    """Inputs of a sparse kernel at n x n; ``prev_top_k`` indexes the (n/2)^2 grid (inter) or n^2 (inner).

    ``style``: as the style default (:class:`~dynast_cli.models.dynast_style.DynastStyleModel`) calls the kernels
    at relu3_1: 256-ch keys, constant 1-ch prune embeddings, 512-ch values (the matched features and their
    squares), temperature 0.02, all channels-last as the inference encoder gives them; otherwise the DynaST
    generator's 1/4 level."""
    grid = (n // 2) ** 2 if coarse else n * n
    prev = torch.randint(0, grid, (1, grid, DYNAST_TOP_K), generator=g).to(device)
    if not style:
        return _dynast_inputs(320, 64, 256, n, device, g) | {"prev_top_k": prev, "smooth": 320**0.5}
    inputs = {k: v.contiguous(memory_format=torch.channels_last) for k, v in _dynast_inputs(256, 1, 512, n, device, g).items()}
    inputs["q_prune"], inputs["k_prune"] = torch.ones_like(inputs["q_prune"]), torch.ones_like(inputs["k_prune"])
    return inputs | {"prev_top_k": prev, "smooth": 0.02}


kernel_case(
    "dense", "DynaST dense attention with prune mask (1/8 level: 640/128/512 ch), top-4 for the next scale",
    lambda n, device, g: _dynast_inputs(640, 128, 512, n, device, g) | {"top_k": DYNAST_TOP_K},
    fast="dynast_cli.attention.dense:dense_attention", naive="dynast_cli.attention.reference:dense_attention_naive",
    fast_options=lambda n: {"chunk": _load("dynast_cli.attention.sparse:DEFAULT_CHUNK")},  # as the DynaST model
)
# the generator's sparse levels, then the same kernels as the style default calls them
_SPARSE = {"inter": ("inter_scale_sparse_attention", True, "2x2 children of 4 coarse matches"),
           "inner": ("inner_scale_sparse_attention", False, "own + 4 neighbours' matches, K=4")}
for _style in (False, True):
    for _kind, (_fn, _coarse, _what) in _SPARSE.items():
        kernel_case(
            f"{_kind}-style" if _style else _kind,
            f"{_kind}-scale as the style default calls it (256/1/512 ch, channels-last)" if _style
            else f"DynaST {_kind}-scale sparse attention ({_what}; 320/64/256 ch)",
            lambda n, device, g, coarse=_coarse, style=_style: _sparse_inputs(n, device, g, coarse, style),
            fast=f"dynast_cli.attention.sparse:{_fn}",
            naive=f"dynast_cli.attention.reference:{_fn}_naive",
        )


# ---------------------------------------------------------------------------------------------
# end-to-end: a style method on a content image of the given side
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _style_method(name: str, device: torch.device) -> Any:
    """The method as ``dynast style`` runs it: with its default ``--refine`` steps."""
    from dynast_cli.styles import build_method
    from dynast_cli.styles.refine import refine_steps, with_refinement

    try:
        return with_refinement(build_method(name, device=device), refine_steps(name, None), device)
    except DynastError as exc:
        raise Unavailable(str(exc)) from None


def e2e_case(method: str) -> BenchCase:
    """``dynast style --method <method>`` on a size x size content with a style at the default style size."""

    def prepare(size: int, device: torch.device) -> dict[str, Variant]:
        from dynast_cli.pipelines.style import StyleOptions, stylize

        style_method = _style_method(method, device)
        g = torch.Generator().manual_seed(size)
        side = StyleOptions().style_size
        content = torch.rand(1, 3, size, size, generator=g).to(device)
        with torch.inference_mode():
            state = style_method.prepare_style(torch.rand(1, 3, side, side, generator=g).to(device))
        return {"fast": functools.partial(stylize, style_method, content, [state])}

    return register(BenchCase(f"e2e:{method}", f"dynast style --method {method}", "e2e", prepare))


def e2e_methods() -> list[str]:
    """Style methods worth timing end to end (the registered ones whose spec says ``benchmark``: all but
    the slow pixel optimisation)."""
    from dynast_cli.styles import METHODS

    return sorted(name for name, spec in METHODS.items() if spec.benchmark)


def select_cases(names: Sequence[str] | None = None, e2e: bool = False) -> list[BenchCase]:
    """Kernel cases by name (``None`` or ``["all"]``: all), plus every end-to-end case with ``e2e``."""
    kernels = {name: case for name, case in CASES.items() if case.kind == "kernel"}
    if names is None or list(names) == ["all"]:
        chosen = list(kernels.values())
    else:
        unknown = [n for n in names if n not in kernels]
        if unknown:
            raise DynastError(f"unknown kernel '{unknown[0]}' (choose from all, {', '.join(kernels)})")
        chosen = [kernels[n] for n in names]
    if e2e:
        chosen += [CASES.get(f"e2e:{m}") or e2e_case(m) for m in e2e_methods()]
    return chosen


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------


@dataclass
class BenchOptions:
    warmup: int = 1
    repeat: int = 5
    budget_mb: float = 4096.0  # skip a call expected to need more
    max_call_s: float = 30.0  # skip a call expected to take longer
    device: str = "cpu"
    clock: str = "wall"  # or "cpu", see time_call


class _OpCounter(TorchDispatchMode):
    """Counts the ATen operators a call runs."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        self.ops += 1
        return func(*args, **(kwargs or {}))


def _measure(fn: Variant, device: torch.device, opts: BenchOptions) -> Measurement:
    try:
        with torch.inference_mode(), _OpCounter() as counter:
            fn()  # lazy initialisation of the libraries is not the call's memory
        too_many = device.type == "cpu" and counter.ops > MAX_PROFILED_OPS
        peak = None if too_many else peak_memory_bytes(fn, device) / MB
        times = time_call(fn, device, max(opts.warmup - 1, 0), opts.repeat, opts.clock)
    except (torch.OutOfMemoryError, MemoryError):
        return Measurement(note="out of memory")
    except RuntimeError as exc:  # a kernel that fails at this size is reported, the others still run
        return Measurement(note=f"error: {str(exc).splitlines()[0][:300]}")
    note = f"peak memory not measured: {counter.ops:,} operators (a Python loop)" if too_many else ""
    return Measurement(statistics.median(times), peak, [round(t, 3) for t in times], note)


def _extrapolate(history: list[tuple[int, float]], size: int) -> float:
    """Value expected at ``size`` from the (size, value) points measured so far (ascending sizes).

    The growth exponent in the side n is fitted on the last two points and kept between 2 (linear in
    the positions n*n) and 4 (quadratic); with a single point it is 4, the worst case.
    """
    s1, v1 = history[-1]
    exponent = 4.0
    if len(history) > 1 and history[-2][1] > 0 and v1 > 0:
        s0, v0 = history[-2]
        exponent = min(4.0, max(2.0, math.log(v1 / v0) / math.log(s1 / s0)))
    return v1 * (size / s1) ** exponent


def _guard(history: list[Measurement], sizes: list[int], size: int, opts: BenchOptions) -> str:
    """Why a call at ``size`` should be skipped, given the measurements at the smaller ``sizes``."""
    if not history:
        return ""
    with_peak = [(s, m.peak_mb) for s, m in zip(sizes, history) if m.peak_mb is not None]
    mb = _extrapolate(with_peak, size) if with_peak else 0.0
    if mb > opts.budget_mb:
        return f"skipped: ~{mb:,.0f} MB expected > budget {opts.budget_mb:,.0f} MB"
    seconds = _extrapolate([(s, m.median_ms) for s, m in zip(sizes, history)], size) / 1e3
    if seconds > opts.max_call_s:
        return f"skipped: ~{seconds:,.0f} s per call expected > {opts.max_call_s:g} s"
    return ""


def run_benchmarks(
    cases: Sequence[BenchCase],
    sizes: Sequence[int],
    options: BenchOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Measure every case at every size (ascending), fast and naive variants; see the module docstring.

    Ctrl-C raises :class:`BenchInterrupted` (a ``KeyboardInterrupt``) holding the rows measured so far."""
    from dynast_cli.runtime import resolve_device

    opts = options or BenchOptions()
    device = resolve_device(opts.device)
    if opts.clock == "cpu" and device.type != "cpu":
        raise DynastError("--clock cpu measures CPU time, which leaves out the GPU's work (use --clock wall)")
    results: list[BenchResult] = []
    try:
        _run_cases(cases, sizes, opts, device, progress, results)
    except KeyboardInterrupt:
        raise BenchInterrupted(results) from None
    return results


def _run_cases(
    cases: Sequence[BenchCase], sizes: Sequence[int], opts: BenchOptions, device: torch.device,
    progress: Callable[[str], None] | None, results: list[BenchResult],
) -> None:
    """The loop of :func:`run_benchmarks`: appends one row per case and size to ``results``."""
    for case in cases:
        done: dict[str, tuple[list[int], list[Measurement]]] = {}  # variant -> sizes, measurements
        if case.kind == "kernel" and min(sizes) > PROBE_SIZES[-1]:
            _probe(case, device, opts, done)
        for size in sorted(set(sizes)):
            notes = {variant: _guard(past, past_sizes, size, opts) for variant, (past_sizes, past) in done.items()}
            if "fast" in notes and all(notes.values()):  # every variant skipped: not even its inputs are made
                results.append(_unmeasured(case, size, notes["fast"], notes.get("naive")))
                continue
            try:
                variants = case.prepare(size, device)
            except Unavailable as exc:
                results.append(_unmeasured(case, size, f"unavailable: {exc}"))
                continue
            except (MemoryError, RuntimeError) as exc:  # the inputs alone do not fit: the allocator's refusal
                # (a first size has nothing smaller to extrapolate from: --sizes 100000 ended in exit 70)
                message = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                results.append(_unmeasured(case, size, f"error: {message}"))
                continue
            measured: dict[str, Measurement] = {}
            for variant, fn in variants.items():
                past_sizes, past = done.setdefault(variant, ([], []))
                note = _guard(past, past_sizes, size, opts)
                if note:
                    measured[variant] = Measurement(note=note)
                    continue
                if progress:
                    progress(f"{case.name} {variant} {size}")
                m = measured[variant] = _measure(fn, device, opts)
                if m.ok:
                    past_sizes.append(size)
                    past.append(m)
            del variants
            results.append(BenchResult(case.name, case.kind, size, measured["fast"], measured.get("naive")))


#: Sizes a kernel is first called at, unreported, when the smallest size asked for is larger: the growth guard
#: then has something to extrapolate from (``--sizes 100000`` went straight to the allocator).
PROBE_SIZES = (8, 16)


def _probe(case: BenchCase, device: torch.device, opts: BenchOptions,
           done: dict[str, tuple[list[int], list[Measurement]]]) -> None:
    """One call of each variant at each of :data:`PROBE_SIZES` into ``done`` (the guard's history); a probe
    that fails is left out (the real sizes then run unguarded, as before)."""
    probe_opts = BenchOptions(warmup=1, repeat=1, budget_mb=opts.budget_mb, max_call_s=opts.max_call_s,
                              device=opts.device, clock=opts.clock)
    for size in PROBE_SIZES:
        try:
            variants = case.prepare(size, device)
        except (Unavailable, MemoryError, RuntimeError):
            return
        for variant, fn in variants.items():
            m = _measure(fn, device, probe_opts)
            if m.ok and m.peak_mb is not None:
                past_sizes, past = done.setdefault(variant, ([], []))
                past_sizes.append(size)
                past.append(m)
        del variants


def _unmeasured(case: BenchCase, size: int, note: str, naive_note: str | None = None) -> BenchResult:
    """A row where nothing ran: a kernel with a naive twin gives the twin ``naive_note`` or the row's note
    (its JSON said "no naive twin" for a skipped or unavailable kernel)."""
    naive = Measurement(note=naive_note or note) if case.twin else None
    return BenchResult(case.name, case.kind, size, Measurement(note=note), naive)


def environment(opts: BenchOptions) -> dict[str, Any]:
    """What the numbers depend on, for the JSON report."""
    from dynast_cli.runtime import resolve_device

    device = resolve_device(opts.device)
    info = {
        "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "warmup": opts.warmup, "repeat": opts.repeat, "clock": opts.clock,
        "budget_mb": opts.budget_mb, "max_call_s": opts.max_call_s,
        "memory_method": "cuda.max_memory_allocated" if device.type == "cuda" else "profiler allocator trace",
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# ---------------------------------------------------------------------------------------------
# plot
# ---------------------------------------------------------------------------------------------


def _guide_lines(ax: Any, sizes: list[int]) -> None:
    """Grey lines of linear and quadratic growth in the number of positions, from the lowest first point."""
    if len(sizes) < 2 or not ax.lines:
        return
    start = min(line.get_ydata()[0] for line in ax.lines)
    first = min(line.get_xdata()[0] for line in ax.lines)
    xs = [n for n in sizes if n >= first]
    for exponent, style, label in ((2, ":", "∝ positions"), (4, "-.", "∝ positions²")):
        ax.plot(xs, [start * (n / first) ** exponent for n in xs], style, color="grey", lw=1, label=label)


def plot_results(results: Sequence[BenchResult], path: str | os.PathLike, title: str = "") -> None:
    """Time and peak memory against positions per side, log-log; fast solid, naive dashed, one colour per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(14, 5.5), constrained_layout=True)
    names = list(dict.fromkeys(r.case for r in results))
    colours = plt.get_cmap("tab10")
    for i, name in enumerate(names):
        rows = [r for r in results if r.case == name]
        for variant, style in (("fast", "-"), ("naive", "--")):
            measured = [(r.size, m) for r in rows if (m := getattr(r, variant)) is not None and m.ok]
            label = f"{name} ({variant})"
            for ax, values in ((ax_t, [(n, m.median_ms) for n, m in measured]),
                               (ax_m, [(n, m.peak_mb) for n, m in measured if m.peak_mb is not None])):
                if values:
                    xs, ys = zip(*values)
                    ax.plot(xs, ys, style, marker="o", color=colours(i % 10), label=label)
    sizes = sorted({r.size for r in results})
    for ax, ylabel in ((ax_t, "median time (ms)"), (ax_m, "peak memory (MB)")):
        _guide_lines(ax, sizes)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [f"{n}²" for n in sizes])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("positions (an n x n grid)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_m.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    ax_t.legend(handles=ax_t.lines[-2:], fontsize=7, loc="upper left")
    fig.suptitle(f"{title}: fast (solid) vs naive (dashed)" if title else "fast (solid) vs naive (dashed)")
    try:
        save_figure(fig, path, dpi=110)  # atomic; an unwritable path is an OutputError naming it
    finally:
        plt.close(fig)
