"""Style training tasks, all run by :func:`dynast_cli.train.loop.train_loop`.

* ``decoder``: the universal decoder (:mod:`dynast_cli.models.decoder`) learns to invert frozen
  VGG16 features of random crops of every given folder (content and style alike):
  ``decode(relu3_1, relu4_1, relu5_1) ~ image``, reconstruction loss (pixel L1 + perceptual).
* ``adaattn`` / ``a2k``: the learned AdaAttN / StyA2K models (not trainable here yet).

:func:`train_style` builds a task, trains it and exports fp16 safetensors with the metadata and the
manifest entry (``<name>.json`` beside it) that ``weights/manifest.json`` records.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from rich.console import Console
from torch import nn

from dynast_cli.errors import InputError
from dynast_cli.models.decoder import decode_features
from dynast_cli.nn.decoders import VGGDecoder
from dynast_cli.train.data import RandomCrops
from dynast_cli.train.loop import DataFn, LossFn, SampleFn, TrainResult, train_loop
from dynast_cli.train.losses import reconstruction_loss
from dynast_cli.train.samples import image_grid
from dynast_cli.weights.io import save_weights, sha256_file

Encoder = Callable[..., list[torch.Tensor]]

STYLE_METHODS = ("decoder", "adaattn", "a2k")
SAMPLE_COUNT = 4


@dataclass
class Task:
    """Everything :func:`train_loop` needs, plus what the exported weights file records."""

    model: nn.Module
    loss_fn: LossFn
    data: DataFn
    sample_fn: SampleFn
    name: str
    architecture: str
    config: dict


def decoder_task(encoder: Encoder, crops: RandomCrops, batch: int, device: torch.device) -> Task:
    """The universal-decoder task: reconstruct crops from their frozen relu3_1/4_1/5_1 features."""
    model = VGGDecoder(skip=True).to(device)
    samples = crops.center_crops(SAMPLE_COUNT).to(device)

    def data(generator: torch.Generator) -> torch.Tensor:
        return crops.crops(batch, generator).to(device)

    def loss_fn(decoder: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            feats = encoder(images)
        out = decode_features(decoder, *feats[2:])
        return reconstruction_loss(out, images, encoder(out, upto=4), feats[:4])

    def sample_fn(decoder: nn.Module) -> torch.Tensor:
        out = decode_features(decoder, *encoder(samples)[2:]).clamp(0, 1)
        return image_grid([[s, o] for s, o in zip(samples, out)], cell=crops.size)

    return Task(model, loss_fn, data, sample_fn, name="decoder_vgg16", architecture="decoder",
                config={"skip": True})


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} thread(s)"


def export_weights(task: Task, result: TrainResult, out_dir: Path, data_summary: list[dict],
                   extra: dict, device: torch.device) -> Path:
    """Write ``<out_dir>/<name>.safetensors`` (fp16) and its manifest entry ``<name>.json``."""
    path = out_dir / f"{task.name}.safetensors"
    training = {
        "data": data_summary,
        "steps": result.step,
        "wall_s": round(result.wall_s, 1),
        "hardware": _hardware(device),
        "final_losses": {k: round(v, 5) for k, v in result.final_losses().items()},
        **extra,
    }
    save_weights(task.model.state_dict(), path, {"architecture": task.architecture, "config": task.config,
                                                 "training": training}, dtype=torch.float16)
    entry = {
        "name": task.name,
        "file": path.name,
        "architecture": task.architecture,
        "config": task.config,
        "sha256": sha256_file(path),
        "licence": "same as the dynast project",
        "training": training,
    }
    (out_dir / f"{task.name}.json").write_text(json.dumps(entry, indent=2) + "\n")
    return path


def train_style(
    content: Sequence[Path],
    style: Sequence[Path],
    method: str = "decoder",
    steps: int = 1000,
    batch: int = 4,
    size: int = 192,
    lr: float = 1e-4,
    out: Path = Path("runs/style"),
    resume: bool = False,
    sample_every: int = 100,
    seed: int = 0,
    device: str | torch.device = "cpu",
    max_per_folder: int | None = None,
    encoder: Encoder | None = None,
    ckpt_every: int = 100,
    console: Console | None = None,
) -> Path:
    """Train one style task and export its weights; returns the exported safetensors path.

    ``encoder`` defaults to the ImageNet VGG16 (:func:`dynast_cli.models.vgg.load_vgg16`); tests pass
    a small stand-in with the same interface.
    """
    if method not in STYLE_METHODS:
        raise InputError(f"unknown method '{method}' (choose from {', '.join(STYLE_METHODS)})", "--method")
    if method != "decoder":
        raise InputError(f"training '{method}' is not available yet: only 'decoder' can be trained", "--method")
    dev = torch.device(device)
    if encoder is None:
        from dynast_cli.models.vgg import load_vgg16

        encoder = load_vgg16(device=dev)
    crops = RandomCrops([*content, *style], size=size, max_per_folder=max_per_folder)
    torch.manual_seed(seed)
    task = decoder_task(encoder, crops, batch, dev)
    optimizer = torch.optim.Adam(task.model.parameters(), lr=lr)
    result = train_loop(task.model, task.loss_fn, task.data, optimizer, steps, out / "checkpoint", resume=resume,
                        sample_fn=task.sample_fn, sample_every=sample_every, seed=seed, device=dev,
                        ckpt_every=ckpt_every, console=console)
    summary = [{"folder": s.folder, "images": s.count} for s in crops.summary]
    extra = {"batch": batch, "crop": size, "lr": lr, "optimizer": "Adam", "seed": seed,
             "loss": "pixel L1 + perceptual (VGG16 relu1_1..relu4_1, energy-normalised MSE)"}
    return export_weights(task, result, out, summary, extra, dev)
