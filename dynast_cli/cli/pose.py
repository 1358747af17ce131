"""``dynast pose``: re-pose the person of a reference photo (DynaST, DeepFashion)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dynast_cli.cli.app import command


@command()
def pose(
    reference: Path = typer.Argument(..., help="Photo of the person (DeepFashion-like: full body, plain background)."),
    target_pose: Path = typer.Argument(
        ..., help="Target pose: OpenPose .json, *_candidate.txt/*_subset.txt, a photo (MediaPipe), or a folder of them."
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
    fps: float = typer.Option(25.0, "--fps", min=1.0, help="Frame rate of a video output."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Re-pose the person in REFERENCE to TARGET_POSE."""
    from dynast_cli.pipelines.pose import run_pose

    written = run_pose(
        reference, target_pose, output, weights=weights, reference_pose=reference_pose,
        save_pose=save_pose, device=device, fps=fps, overwrite=overwrite,
    )
    for path in written:
        typer.echo(f"wrote {path}")
