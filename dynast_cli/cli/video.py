"""``dynast video`` (stylise a video) and ``dynast eval video`` (temporal consistency and speed)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional

import typer

from dynast_cli.cli.app import command, debug_enabled, err_console, eval_app, strength
from dynast_cli.cli.style import parse_mix
from dynast_cli.errors import DynastError


class Interrupted(DynastError):
    """Ctrl-C: the one-line message says where the work done is kept (exit 130, as for SIGINT)."""

    exit_code = 130


def _frame_progress():
    """A Rich progress bar on stderr with frames done, frames/s and ETA (off when not a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class FramesPerSecond(ProgressColumn):
        def render(self, task) -> Text:
            return Text("-- frames/s" if task.speed is None else f"{task.speed:.2f} frames/s")

    return Progress(
        TextColumn("[bold]stylising"), BarColumn(), MofNCompleteColumn(), FramesPerSecond(),
        TextColumn("ETA"), TimeRemainingColumn(),
        console=err_console, transient=True, disable=not err_console.is_terminal,
    )


def _ticker(bar, task) -> Callable[[int, Optional[int]], None]:
    """The pipeline's progress callback; frames kept from an interrupted run do not count in the speed."""
    started = []

    def tick(done: int, total: Optional[int]) -> None:
        if not started:
            bar.reset(task, total=total, completed=done)
            started.append(done)
        else:
            bar.update(task, completed=done, total=total)

    return tick


@command()
def video(
    input: Path = typer.Argument(..., help="Video file (.mp4, .avi, ...) or a folder of frame images."),
    styles: List[Path] = typer.Argument(..., help="One or more style images."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output .mp4/.avi, or a folder for PNG frames."),
    method: str = typer.Option("dynast", "-m", "--method", help="Style method (see `dynast style --help`)."),
    attention: Optional[str] = typer.Option(
        None, "--attention", show_default=False, help="dynast and adaattn only: cosine (default: the temporal variant, "
        "steadier in video) or softmax (the image one)."),
    batch: int = typer.Option(4, "--batch", min=1, help="Frames stylised together."),
    start: Optional[float] = typer.Option(None, "--start", min=0.0, help="Start of the cut, in seconds."),
    end: Optional[float] = typer.Option(None, "--end", min=0.0, help="End of the cut, in seconds."),
    max_size: Optional[int] = typer.Option(None, "--max-size", min=17, help="Cap the frames' long side in pixels."),
    work_size: Optional[int] = typer.Option(None, "--work-size", min=0, show_default=False,
                                            help="Long side the method paints at; larger frames are stylised at that "
                                            "size and upsampled, as in `dynast style` (a long strip is shrunk only "
                                            "while its short side stays at a quarter of it or more; default: 512 "
                                            "with dynast, full size with the others; 0: always full size)."),
    alpha: float = typer.Option(1.0, "-a", "--alpha", callback=strength, help="Style strength, 0 (content) to 1."),
    mix: Optional[str] = typer.Option(None, "--mix", help="Mixing weights for several styles, e.g. 0.7,0.3."),
    style_size: int = typer.Option(512, "--style-size", min=17, help="Long side the style image is resized to."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run, keeping the frames it wrote."),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="I/N",
                                        help="Stylise share I of N of the frames (whole batches) into OUTPUT.partial/ "
                                        "(or the frame folder) without encoding; then --join. Under torchrun each "
                                        "rank takes RANK/WORLD_SIZE and rank 0 joins."),
    join: bool = typer.Option(False, "--join", help="Check that the shards wrote every frame and encode the video "
                              "(same options as the shards; audio kept)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: Optional[str] = typer.Option(None, "--precision", show_default=False,
                                            help="auto (default: bf16 convolutions on CPUs with native bfloat16, such "
                                            "as Intel AMX; fp32 elsewhere), fp32 or bf16. Also $DYNAST_PRECISION."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Weights file (safetensors); default: the bundled ones."),
    vgg: Optional[Path] = typer.Option(None, "--vgg", envvar="DYNAST_VGG16", help="ImageNet VGG16 file for air-gapped use."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads."),
    max_memory: Optional[str] = typer.Option(
        None, "--max-memory", help="Peak memory budget, e.g. 4G: sets the attention tiles and, if needed, a smaller "
        "--batch (same frames); fails at once when too small."),
) -> None:
    """Stylise the video INPUT with STYLES; the style is encoded once, the audio track kept."""
    from dynast_cli.distributed import parse_shard
    from dynast_cli.memory import parse_memory
    from dynast_cli.pipelines.video import check_attention, run_video_job
    from dynast_cli.runtime import set_precision, set_threads

    check_attention(method, attention)
    attention = "cosine" if attention is None else attention
    budget = parse_memory(max_memory)
    job_shard = parse_shard(shard)
    set_threads(threads)
    set_precision(precision)
    try:
        with _frame_progress() as bar:
            reports = run_video_job(
                input, styles, output, shard=job_shard, join=join, method=method, attention=attention, batch=batch,
                start=start, end=end, max_size=max_size, overwrite=overwrite, resume=resume,
                progress=_ticker(bar, bar.add_task("video")), weights=weights, vgg=vgg, device=device, alpha=alpha,
                mix=parse_mix(mix), style_size=style_size, max_memory=budget, work_size=work_size,
                warn=lambda notice: err_console.print(f"warning: {notice}", markup=False),
            )
    except KeyboardInterrupt as exc:
        if debug_enabled():
            raise
        raise Interrupted(str(exc) or "interrupted") from None
    for report in reports:
        for note in report.notes:
            err_console.print(f"note: {note}", markup=False)
        size = f"{report.size[0]}x{report.size[1]}, {report.fps:g} fps"
        if report.joined:
            typer.echo(f"wrote {report.output} (joined {report.frames} frames, {size})")
            continue
        resumed = report.frames - report.computed
        part = ""
        if report.shard:
            first, stop = report.span
            part = f"shard {report.shard}: " + (f"frames {first + 1}-{stop} of {report.total}, " if stop > first
                                                 else f"none of the {report.total} frames, ")
        typer.echo(
            f"wrote {report.output} ({part}{report.frames} frames, {size}; {report.frames_per_second:.2f} frames/s"
            + (f"; {resumed} resumed" if resumed else "")
            + (f"; {len(report.repeated)} repeated" if report.repeated else "") + ")"
        )


@command(eval_app, "video")
def eval_video(
    input: Path = typer.Argument(..., help="Video file or folder of frames."),
    style: Path = typer.Argument(..., help="Style image."),
    methods: str = typer.Option(
        "dynast:softmax,dynast:cosine,adaattn:cosine", "--methods",
        help="Comma-separated variants, method[:attention], e.g. dynast:cosine,adain; the per-frame row runs the "
        "first one as `dynast style` would, frame by frame.",
    ),
    max_frames: int = typer.Option(30, "--max-frames", min=2, help="Frames from the start to evaluate."),
    max_size: int = typer.Option(256, "--max-size", min=17, help="Long side the frames are resized to."),
    per_frame: bool = typer.Option(True, "--per-frame/--no-per-frame", help="Also time per-frame image stylisation."),
    flow: str = typer.Option("dis", "--flow", help="Optical flow of the source frames: dis or farneback."),
    batch: int = typer.Option(4, "--batch", min=1, help="Frames stylised together."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="JSON report (default: <input>_temporal.json)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Weights file (safetensors)."),
    vgg: Optional[Path] = typer.Option(None, "--vgg", envvar="DYNAST_VGG16", help="ImageNet VGG16 file."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads."),
) -> None:
    """Temporal consistency (warping error, lower is steadier), stylisation (texture and palette distance of the
    frames to the style, lower is closer) and frames/s of style methods on a video."""
    from rich.console import Console
    from rich.table import Table

    from dynast_cli.pipelines.video import evaluate_video
    from dynast_cli.runtime import set_threads
    from dynast_cli.temporal import FLOW_METHODS

    if flow not in FLOW_METHODS:
        raise typer.BadParameter(f"choose from {', '.join(FLOW_METHODS)}", param_hint="--flow")
    set_threads(threads)
    output = output or Path(f"{input.stem}_temporal.json")  # checked by evaluate_video before any work
    with err_console.status("evaluating") as status:
        report = evaluate_video(
            input, style, [m.strip() for m in methods.split(",") if m.strip()], max_frames=max_frames,
            max_size=max_size, per_frame=per_frame, flow=flow, batch=batch, weights=weights, vgg=vgg,
            device=device, output=output, progress=lambda name: status.update(f"evaluating {name}"),
            overwrite=overwrite, notice=lambda line: err_console.print(f"note: {line}", markup=False),
        )
    table = Table(title=f"{input.name}: {report.frames} frames, {report.size[0]}x{report.size[1]}, {report.flow} flow")
    table.add_column("variant")
    table.add_column("warping error (x1e-3) ↓", justify="right")
    table.add_column("texture ↓", justify="right")
    table.add_column("palette ↓", justify="right")
    table.add_column("frames/s", justify="right")
    for row in report.rows:
        fps = "-" if row.frames_per_second is None else f"{row.frames_per_second:.2f}"
        texture = "-" if row.texture is None else f"{row.texture:.3f}"
        table.add_row(row.name, f"{row.warping_error * 1e3:.3f}", texture, f"{row.palette:.2f}", fps)
    Console().print(table)
    typer.echo(f"wrote {output}")
