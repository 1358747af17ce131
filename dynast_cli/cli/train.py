"""``dynast train style``: train the universal decoder, AdaAttN, StyA2K or the DynaST prune mask."""

from __future__ import annotations

from pathlib import Path

import typer

from dynast_cli.cli.app import command, late_help, main_echo, positive_float, train_app


def _method_help() -> str:
    """``decoder | adaattn | a2k | dynast (the learned DynaST prune mask; frozen universal decoder).``"""
    from dynast_cli.styles import get_spec
    from dynast_cli.train.style import DECODER, train_methods

    names = [name if name == DECODER or not get_spec(name).training.note else f"{name} ({get_spec(name).training.note})"
             for name in train_methods()]
    return " | ".join(names) + "."


@command(train_app, "style")
def train_style_command(
    content: list[Path] = typer.Option(..., "--content", help="Folder of content images (repeatable)."),
    style: list[Path] = typer.Option(..., "--style", help="Folder of style images (repeatable)."),
    method: str = typer.Option("decoder", "--method", help=late_help(_method_help)),
    steps: int = typer.Option(1000, "--steps", min=1, help="Total steps (a resumed run counts its earlier ones)."),
    batch: int = typer.Option(4, "--batch", min=1, help="Images per step."),
    size: int = typer.Option(192, "--size", min=32, max=1024, help="Crop size in pixels (a multiple of 16, at most 1024: "
                             "a 4096 px crop of batch 1 used up 24 GB before the first step)."),
    lr: float = typer.Option(None, "--lr", callback=positive_float, show_default=False,
                             help="Adam learning rate (default 1e-4; dynast --train-decoder: 1e-5)."),
    out: Path = typer.Option(Path("runs/style"), "--out", help="Output folder (checkpoint/, samples, weights)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint."),
    sample_every: int = typer.Option(100, "--sample-every", min=0, help="Write a sample grid every N steps (0: never)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (initialisation, crops)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    max_per_folder: int = typer.Option(0, "--max-per-folder", min=0, help="Use at most N images per folder (0: all)."),
    init_decoder: Path = typer.Option(None, "--init-decoder",
                                      help="Decoder weights to start from (adaattn/a2k/dynast default: the installed universal "
                                      "decoder; decoder: continue training these weights with a fresh optimiser)."),
    init: Path = typer.Option(None, "--init", help="adaattn/a2k: a model file this method exported (e.g. "
                              "weights/adaattn_vgg16.safetensors) to continue from, with a fresh optimiser."),
    content_weight: float = typer.Option(None, "--content-weight", min=0.0, show_default=False,
                                         help="adaattn/a2k: weight of the normalised content loss (relu2_1..relu5_1; "
                                         "default 0, the papers'). Trades style strength for content."),
    train_decoder: bool = typer.Option(False, "--train-decoder", help="dynast: fine-tune the decoder for the "
                                       "parameter-free matching with --locality, instead of learning a prune mask."),
    locality: str = typer.Option("1,1,1", "--locality", help="dynast: share of the matched (local) statistics at "
                                 "relu3_1,relu4_1,relu5_1; the rest is the style's global statistics (AdaIN)."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for torch (0: torch's default)."),
    video: bool = typer.Option(False, "--video", help="adaattn: the video model (cosine attention + AdaAttN's "
                               "cross-image similarity loss on simulated frame pairs; --batch counts pairs)."),
    video_weight: float = typer.Option(None, "--video-weight", min=0.0, show_default=False,
                                       help="--video: weight of the cross-image similarity loss (default 2e10)."),
    max_minutes: float = typer.Option(None, "--max-minutes", min=0.0, show_default=False,
                                      help="Stop after this many minutes of training (checkpointed and exported "
                                      "as at the end; --resume goes on)."),
    precision: str = typer.Option("auto", "--precision",
                                  help="auto (bf16 autocast on CUDA, fp32 on CPU), bf16 or fp32."),
) -> None:
    """Train a style model on random crops and export fp16 safetensors to OUT."""
    import torch

    from dynast_cli.distributed import destroy_process_group
    from dynast_cli.errors import UsageError
    from dynast_cli.ops import PAD_MULTIPLE
    from dynast_cli.runtime import resolve_device
    from dynast_cli.train.loop import check_run_dir
    from dynast_cli.train.style import DEFAULT_LR, train_style

    if size % PAD_MULTIPLE:
        raise UsageError(f"--size must be a multiple of {PAD_MULTIPLE}, got {size}")
    if threads:
        torch.set_num_threads(threads)
    if precision not in ("auto", "bf16", "fp32"):
        raise UsageError(f"unknown --precision '{precision}' (choose from auto, bf16, fp32)")
    amp = None if precision == "auto" else precision == "bf16"
    time_limit_s = None if max_minutes is None else 60.0 * max_minutes
    if video_weight is not None and not video:
        raise UsageError("--video-weight only applies to --video training")
    if video and content_weight is not None:
        raise UsageError("--content-weight does not apply to --video training")
    from dynast_cli.styles.registry import methods_with

    localities = parse_locality(locality)
    for flag, option, given in (("--train-decoder", "train_decoder", train_decoder),
                                ("--locality", "locality", localities != (1.0, 1.0, 1.0))):
        if given and method not in methods_with(option):  # they were silently ignored
            raise UsageError(f"{flag} applies to --method {' or '.join(methods_with(option))} only, not '{method}'")
    if video:
        from dynast_cli.styles import get_spec
        from dynast_cli.styles.registry import methods_with

        video_method = methods_with("video")[0]
        if method != video_method:
            raise UsageError(f"--video trains the {get_spec(video_method).title} video model (use --method "
                             f"{video_method}, not '{method}')")
    check_run_dir(out, resume, samples=sample_every > 0)  # before any data or model is loaded
    if video:
        from dynast_cli.train.video_style import VIDEO_LOSS_WEIGHT, train_video_style

        path = train_video_style(content, style, steps=steps, batch=batch, size=size, out=out, resume=resume,
                                 lr=DEFAULT_LR if lr is None else lr,
                                 sample_every=sample_every, seed=seed, device=resolve_device(device),
                                 max_per_folder=max_per_folder or None, init_decoder=init_decoder,
                                 video_weight=VIDEO_LOSS_WEIGHT if video_weight is None else video_weight,
                                 time_limit_s=time_limit_s, amp=amp)
        main_echo(f"wrote {path}")
        destroy_process_group()  # torchrun: leave the process group (nothing without one)
        return
    path = train_style(content, style, method=method, steps=steps, batch=batch, size=size, lr=lr, out=out,
                       resume=resume, sample_every=sample_every, seed=seed, device=resolve_device(device),
                       max_per_folder=max_per_folder or None, init_decoder=init_decoder,
                       train_decoder=train_decoder, locality=localities, time_limit_s=time_limit_s,
                       amp=amp, init=init, content_weight=content_weight)
    main_echo(f"wrote {path}")
    destroy_process_group()


def parse_locality(text: str) -> tuple[float, float, float]:
    """"0.5,0,0" -> (0.5, 0.0, 0.0): three numbers in [0, 1], or a one-line error."""
    from dynast_cli.errors import UsageError

    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise UsageError(f"--locality takes three numbers in [0, 1] for relu3_1,relu4_1,relu5_1, got '{text}'")
    return values
