"""``dynast bench``: speed and peak memory of the attention kernels (fast vs naive) and of style methods."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from dynast_cli.cli.app import command, err_console
from dynast_cli.errors import DynastError, OutputError
from dynast_cli.io.outputs import check_output, write_text


def _parse_sizes(text: str, option: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise DynastError(f"{option} takes comma-separated integers, got '{text}'") from None
    if not sizes or min(sizes) < 1:
        raise DynastError(f"{option} needs positive integers, got '{text}'")
    return sizes


def _fmt(value: Optional[float], digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{suffix}"


def results_table(results: list, title: str) -> tuple[Table, list[str]]:
    """The Rich table of :func:`dynast_cli.bench.run_benchmarks` results, and the numbered notes that
    explain its empty cells (skipped or unavailable measurements)."""
    table = Table(title=title, title_justify="left")
    for header in ("kernel", "size", "fast ms", "naive ms", "speed ratio", "fast MB", "naive MB", "memory ratio", "note"):
        table.add_column(header, justify="left" if header in ("kernel", "note") else "right")
    notes: list[str] = []
    for r in results:
        naive = r.naive
        marks = []
        for variant, m in (("fast", r.fast), ("naive", naive)):
            if m is not None and m.note:
                text = m.note if m.note.startswith("unavailable") else f"{variant}: {m.note}"
                if text not in notes:
                    notes.append(text)
                marks.append(f"[{notes.index(text) + 1}]")
        size = f"{r.size}²" if r.kind == "kernel" else f"{r.size}px"
        table.add_row(
            r.case, size, _fmt(r.fast.median_ms, 2), _fmt(naive.median_ms if naive else None, 2),
            _fmt(r.speed_ratio, 1, "x"), _fmt(r.fast.peak_mb), _fmt(naive.peak_mb if naive else None),
            _fmt(r.memory_ratio, 1, "x"), " ".join(dict.fromkeys(marks)),
        )
    return table, [f"[{i}] {text}" for i, text in enumerate(notes, 1)]


def _print_table(results: list, title: str) -> None:
    """The results table and its notes, on stdout."""
    table, notes = results_table(results, title)
    console = Console(width=None if sys.stdout.isatty() else 132)
    console.print(table)
    for line in notes:
        console.print(line, markup=False, highlight=False)


@command()
def bench(
    kernels: str = typer.Option("all", "--kernels", help="Comma-separated kernel names, or 'all'."),
    sizes: str = typer.Option("32,64,128,256", "--sizes", help="Kernel sizes n (n x n positions), comma-separated."),
    e2e: bool = typer.Option(False, "--e2e", help="Also time the style methods end to end."),
    image_sizes: str = typer.Option("512,1024", "--image-sizes", help="Content sides for --e2e, comma-separated."),
    repeat: int = typer.Option(5, "--repeat", min=1, help="Timed calls per measurement (the median is reported)."),
    warmup: int = typer.Option(1, "--warmup", min=1, help="Untimed calls before timing."),
    budget_mb: float = typer.Option(4096, "--budget-mb", min=0.001, help="Skip calls expected to need more memory."),
    max_call_s: float = typer.Option(30, "--max-call-s", min=0.1, help="Skip calls expected to take longer."),
    clock: str = typer.Option("wall", "--clock", help="wall, or cpu (process CPU time: steadier on a busy machine with --threads 1)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the results as JSON."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also plot the kernels' time and memory against size (PNG)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json or --plot file."),
) -> None:
    """Time the fast attention kernels against their naive twins (median ms, peak MB, ratios)."""
    from dynast_cli import bench as b
    from dynast_cli.runtime import set_threads

    names = None if kernels.strip() == "all" else [k.strip() for k in kernels.split(",") if k.strip()]
    if names == []:
        raise typer.BadParameter("names no kernel (give kernel names separated by commas, or 'all')",
                                 param_hint="--kernels")
    cases = b.select_cases(names)
    kernel_sizes = _parse_sizes(sizes, "--sizes")
    e2e_cases = b.select_cases([], e2e=True) if e2e else []
    e2e_sizes = _parse_sizes(image_sizes, "--image-sizes") if e2e else []
    if plot is not None and plot.suffix.lower() != ".png":
        raise OutputError("the plot is written as PNG (use a .png name)", plot)
    if json_path is not None and plot is not None and json_path.resolve() == plot.resolve():
        raise OutputError("named by both --json and --plot", plot)
    for path in (json_path, plot):  # before any measurement: exists without --overwrite, unwritable folder
        if path is not None:
            check_output(path, overwrite, create=False)
    if clock not in b.CLOCKS:
        raise DynastError(f"unknown --clock '{clock}' (use wall or cpu)")
    set_threads(threads)

    opts = b.BenchOptions(warmup=warmup, repeat=repeat, budget_mb=budget_mb, max_call_s=max_call_s, device=device,
                          clock=clock)
    env = b.environment(opts)
    title = f"dynast bench on {env['device']} ({env['threads']} threads, median {clock} time of {repeat})"
    results: list = []
    try:
        with err_console.status("benchmarking", spinner="dots") as status:

            def tick(what: str) -> None:
                status.update(f"benchmarking {what}")
                if not err_console.is_terminal:  # a log file gets one line per measurement instead of a spinner
                    err_console.print(f"benchmarking {what}", markup=False, highlight=False)

            results += b.run_benchmarks(cases, kernel_sizes, opts, tick)
            results += b.run_benchmarks(e2e_cases, e2e_sizes, opts, tick)
    except b.BenchInterrupted as exc:  # Ctrl-C: the rows measured so far, then exit 130 as usual
        results += exc.results
        if results:
            _print_table(results, f"{title}, interrupted after {len(results)} row(s)")
        raise KeyboardInterrupt from None

    _print_table(results, title)
    if json_path is not None:
        payload = {"environment": env, "results": [r.to_dict() for r in results]}
        write_text(json_path, json.dumps(payload, indent=2) + "\n")
        typer.echo(f"wrote {json_path}")
    if plot is not None:
        kernel_results = [r for r in results if r.kind == "kernel"]
        b.plot_results(
            kernel_results, plot, title=f"attention kernels on {env['device']}, {env['threads']} thread(s), {clock} time"
        )
        typer.echo(f"wrote {plot}")
