"""``dynast train face`` and ``dynast train pose``: train a DynaST generator (GAN, official objectives)."""

from __future__ import annotations

from pathlib import Path

import typer

from dynast_cli.cli.app import command, main_echo, positive_float, train_app

SIZES = (128, 256)


def _run(source_factory, name: str, preset: str, steps: int, batch: int, lr: float, out: Path, resume: bool,
         sample_every: int, ckpt_every: int, seed: int, device: str, threads: int,
         max_minutes: float | None) -> None:
    """Shared tail of both commands: threads, device, training, export."""
    import torch

    from dynast_cli.distributed import destroy_process_group
    from dynast_cli.runtime import resolve_device
    from dynast_cli.train.generator import check_config, train_dynast
    from dynast_cli.train.loop import check_run_dir

    check_config(preset)
    check_run_dir(out, resume, samples=sample_every > 0)  # before the data set is read or a model built
    if threads:
        torch.set_num_threads(threads)
    path = train_dynast(source_factory(), name, preset=preset, steps=steps, batch=batch, lr=lr, out=out,
                        resume=resume, sample_every=sample_every, ckpt_every=ckpt_every, seed=seed,
                        device=resolve_device(device),
                        time_limit_s=None if max_minutes is None else 60.0 * max_minutes)
    main_echo(f"wrote {path}")
    destroy_process_group()  # torchrun: leave the process group (nothing without one)


def _check_size(size: int) -> None:
    from dynast_cli.errors import UsageError

    if size not in SIZES:
        raise UsageError(f"--size must be one of {', '.join(map(str, SIZES))}, got {size}")


@command(train_app, "face")
def train_face_command(
    faces: Path = typer.Option(..., "--faces", help="Folder of face crops (KaoKore: <class>--<id>.jpg)."),
    steps: int = typer.Option(2000, "--steps", min=1, help="Total steps (a resumed run counts its earlier ones)."),
    batch: int = typer.Option(4, "--batch", min=1, help="Pairs per step."),
    size: int = typer.Option(128, "--size", help="Training resolution: 128 or 256."),
    config: str = typer.Option("compact", "--config", help="Generator size: compact | official."),
    lr: float = typer.Option(2e-4, "--lr", callback=positive_float, help="Base learning rate (generator lr/2, discriminator 2*lr)."),
    max_faces: int = typer.Option(0, "--max-faces", min=0, help="Use at most N faces, evenly spread (0: all)."),
    out: Path = typer.Option(Path("runs/face"), "--out", help="Output folder (checkpoint/, samples, weights)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint."),
    sample_every: int = typer.Option(100, "--sample-every", min=0, help="Write a sample grid every N steps (0: never)."),
    ckpt_every: int = typer.Option(100, "--ckpt-every", min=1, help="Checkpoint every N steps."),
    seed: int = typer.Option(0, "--seed", help="Random seed (initialisation, pairs)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for torch (0: torch's default)."),
    max_minutes: float = typer.Option(None, "--max-minutes", min=0.0, show_default=False,
                                      help="Stop after this many minutes of training (checkpointed and exported "
                                      "as at the end; --resume goes on)."),
) -> None:
    """Train the edge-to-face generator (own Canny edges -> face, exemplar: another face) and export
    OUT/dynast_face.safetensors (fp16) with its manifest entry OUT/dynast_face.json."""
    from dynast_cli.train.face_data import FacePairs

    _check_size(size)
    _run(lambda: FacePairs(faces, size=size, max_faces=max_faces or None), "dynast_face", config, steps, batch,
         lr, out, resume, sample_every, ckpt_every, seed, device, threads, max_minutes)


@command(train_app, "pose")
def train_pose_command(
    pairs: Path = typer.Option(..., "--pairs", help="Pair list: 'target,reference[,...]' per line (DeepFashion layout)."),
    images: Path = typer.Option(..., "--images", help="Root the pair list's image paths are relative to."),
    poses: Path = typer.Option(..., "--poses", help="Keypoint root: <poses>/<path without img/>_candidate.txt or .json."),
    steps: int = typer.Option(2000, "--steps", min=1, help="Total steps (a resumed run counts its earlier ones)."),
    batch: int = typer.Option(4, "--batch", min=1, help="Pairs per step."),
    size: int = typer.Option(256, "--size", help="Training resolution: 128 or 256."),
    config: str = typer.Option("official", "--config", help="Generator size: compact | official."),
    lr: float = typer.Option(2e-4, "--lr", callback=positive_float, help="Base learning rate (generator lr/2, discriminator 2*lr)."),
    out: Path = typer.Option(Path("runs/pose"), "--out", help="Output folder (checkpoint/, samples, weights)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint."),
    sample_every: int = typer.Option(100, "--sample-every", min=0, help="Write a sample grid every N steps (0: never)."),
    ckpt_every: int = typer.Option(100, "--ckpt-every", min=1, help="Checkpoint every N steps."),
    seed: int = typer.Option(0, "--seed", help="Random seed (initialisation, pairs)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for torch (0: torch's default)."),
    max_minutes: float = typer.Option(None, "--max-minutes", min=0.0, show_default=False,
                                      help="Stop after this many minutes of training (checkpointed and exported "
                                      "as at the end; --resume goes on)."),
) -> None:
    """Train the pose-transfer generator on DeepFashion-style pairs and export OUT/dynast_pose.safetensors."""
    from dynast_cli.train.pose_data import PosePairs

    _check_size(size)
    _run(lambda: PosePairs(pairs, images, poses, size=size), "dynast_pose", config, steps, batch, lr, out, resume,
         sample_every, ckpt_every, seed, device, threads, max_minutes)
