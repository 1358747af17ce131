"""``dynast pose``: re-pose the person of a reference photo (DynaST, DeepFashion)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dynast_cli.cli.app import command, frame_rate


@command()
def pose(
    reference: Path = typer.Argument(..., help="Photo of the person (DeepFashion-like: full body, plain background)."),
    target_pose: Path = typer.Argument(
        ..., help="Target pose: OpenPose .json, *_candidate.txt/*_subset.txt, a photo (MediaPipe), or a folder of them "
        "(written as frames, a bad file or a frame that cannot be written is skipped and named at the end, exit 5; "
        "as a video, a bad file stops the job first)."
    ),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Output image; for a folder of poses, a folder of frames or a .mp4/.avi video."
    ),
    weights: Optional[Path] = typer.Option(
        None, "--weights", help="DynaST DeepFashion weights (default: weights/dynast_deepfashion.safetensors)."
    ),
    reference_pose: Optional[Path] = typer.Option(
        None, "--reference-pose", help="Keypoints of the reference (default: <reference>_candidate.txt beside it, else MediaPipe)."
    ),
    save_pose: Optional[Path] = typer.Option(
        None, "--save-pose", help="Also save the target pose map as a PNG (a folder for a sequence)."
    ),
    fps: float = typer.Option(25.0, "--fps", callback=frame_rate, help="Frame rate of a video output."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    max_memory: Optional[str] = typer.Option(
        None, "--max-memory", help="Peak memory budget, e.g. 2G: sets the attention chunk (same result); fails at once when too small."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the generator (CUDA only; a notice on CPU)."),
) -> None:
    """Re-pose the person in REFERENCE to TARGET_POSE."""
    from dynast_cli.cli.app import err_console
    from dynast_cli.memory import parse_memory
    from dynast_cli.pipelines.pose import run_pose

    from dynast_cli.errors import BatchError

    error = None
    try:
        written = run_pose(
            reference, target_pose, output, weights=weights, reference_pose=reference_pose,
            save_pose=save_pose, device=device, fps=fps, overwrite=overwrite,
            max_memory=parse_memory(max_memory), compile=compile_,
            notify=lambda line: err_console.print(line, markup=False, highlight=False),
        )
    except BatchError as exc:  # a folder of poses: the frames written, then one line naming the bad files
        written, error = exc.written, exc
    for path in written:
        typer.echo(f"wrote {path}")
    if error is not None:
        raise error
