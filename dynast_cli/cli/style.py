"""``dynast style``: stylise an image or a folder of images."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from dynast_cli.cli.app import command, err_console, late_help, strength


def parse_mix(mix: Optional[str]) -> Optional[list[float]]:
    """"0.7,0.3" -> [0.7, 0.3]; one-line error for anything else."""
    if not mix:
        return None
    try:
        return [float(x) for x in mix.split(",")]
    except ValueError:
        from dynast_cli.errors import DynastError

        raise DynastError(f"--mix takes comma-separated numbers, got '{mix}'") from None


def _method_help() -> str:
    from dynast_cli.styles.registry import method_help

    return method_help()


@command()
def style(
    content: Path = typer.Argument(..., help="Content image, or a folder of images (batch)."),
    styles: List[Path] = typer.Argument(..., help="One or more style images."),
    # a str, not a Path: a trailing "/" (a folder to write into) must reach the pipeline
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Output file, or a folder (an existing one, "
                                         "or a name ending in /; for a folder of contents always a folder)."),
    method: Optional[str] = typer.Option(None, "-m", "--method", show_default=False, help=late_help(_method_help)),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Weights file (safetensors); default: the bundled ones "
                                           "(dynast: feature warping 0.5, a texture seed and relu3_1 re-normalised to the style, on a decoder fine-tuned for it; --weights none: the AdaAttN transform of every match)."),
    vgg: Optional[Path] = typer.Option(None, "--vgg", envvar="DYNAST_VGG16", help="ImageNet VGG16 file (.whl/.onnx/.safetensors) for air-gapped use."),
    alpha: float = typer.Option(1.0, "-a", "--alpha", callback=strength, help="Style strength, 0 (content) to 1."),
    mix: Optional[str] = typer.Option(None, "--mix", help="Mixing weights for several styles, e.g. 0.7,0.3."),
    size: Optional[int] = typer.Option(None, "--size", min=17, help="Output long side in pixels (default: the content's)."),
    max_size: Optional[int] = typer.Option(None, "--max-size", min=17, help="Cap the output long side."),
    style_size: int = typer.Option(512, "--style-size", min=17, help="Long side the style image is resized to."),
    keep_color: bool = typer.Option(False, "--keep-color", help="Keep the content's colours (luminance-only transfer)."),
    steps: int = typer.Option(200, "--steps", min=1, help="Iterations for --method optimize."),
    refine: Optional[int] = typer.Option(None, "--refine", min=0, show_default=False,
                                         help="Steps of pixel refinement toward the style's VGG statistics after the "
                                         "method (default: 0, off)."),
    work_size: Optional[int] = typer.Option(None, "--work-size", min=0, show_default=False,
                                            help="Long side the method paints at; larger images are stylised at "
                                            "that size and upsampled; a long strip is shrunk only while its short "
                                            "side stays at a quarter of it or more (default: 512 with dynast, full "
                                            "size with the others; 0: always full size)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: Optional[str] = typer.Option(None, "--precision", show_default=False,
                                            help="auto (default: bf16 convolutions on CPUs with native bfloat16, such "
                                            "as Intel AMX; fp32 elsewhere), fp32 or bf16. Also $DYNAST_PRECISION."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    resume: bool = typer.Option(False, "--resume", help="Keep the outputs that exist (complete: files are written "
                                "atomically) and write the others: rerun a killed or failed batch or shard."),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="I/N",
                                        help="Do share I of N of a folder's files (0/4 ... 3/4): one task of a job "
                                        "array; under torchrun each rank takes RANK/WORLD_SIZE by itself."),
    max_memory: Optional[str] = typer.Option(
        None, "--max-memory", help="Peak memory budget, e.g. 4G or 500M: sets the attention tiles (same result); "
        "fails at once, naming the estimated minimum, when it cannot be met."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the networks (CUDA only; a notice on CPU)."),
) -> None:
    """Stylise CONTENT with STYLES; several styles are mixed (see --mix)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dynast_cli.distributed import parse_shard
    from dynast_cli.memory import parse_memory
    from dynast_cli.pipelines.style import StyleOptions, run_style_job
    from dynast_cli.runtime import set_precision, set_threads
    from dynast_cli.styles import DEFAULT_METHOD, method_options

    budget = parse_memory(max_memory)
    job_shard = parse_shard(shard)
    set_threads(threads)
    set_precision(precision)
    method = method or DEFAULT_METHOD
    opts = StyleOptions(
        method=method, weights=str(weights) if weights else None, vgg=str(vgg) if vgg else None,
        alpha=alpha, mix=parse_mix(mix), size=size, max_size=max_size, style_size=style_size,
        keep_color=keep_color, device=device,
        method_options=method_options(method, steps=steps),
        max_memory=budget, compile=compile_, refine=refine, work_size=work_size,
    )
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=not err_console.is_terminal,
    ) as bar:
        task = bar.add_task("stylising", total=None)

        def tick(i: int, n: int, path: Path) -> None:
            bar.update(task, completed=i, total=n, description=f"stylising {path.name}")

        job = run_style_job(content, styles, output, opts, shard=job_shard, overwrite=overwrite, resume=resume,
                            progress=tick, notify=lambda line: err_console.print(line, markup=False, highlight=False))
    # stdout: a "wrote PATH" line per file written (as ever); with shards or --resume, the counts too
    report = job.report
    for path in report.written:
        typer.echo(f"wrote {path}")
    if report.shard or resume:
        typer.echo((f"shard {report.shard}: " if report.shard else "") + report.counts())
    if job.merged is not None:
        parts = f"{job.parts} {'ranks' if job.torchrun else 'shards'}"
        typer.echo(f"all {parts}: {job.merged.counts()}" + (f"; report {job.merged_file}" if job.merged_file else ""))
    if job.error is not None:  # exit 5 when files failed: the line names each of them
        raise job.error

