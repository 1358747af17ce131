"""DynaST training tasks (edge-to-face on face crops, pose transfer on DeepFashion pairs), run by the
shared :func:`dynast_cli.train.loop.train_loop`.

The loop trains one module with one optimiser, so the generator and the discriminator travel together
in :class:`DynastGAN` and the optimiser holds two parameter groups with the official TTUR settings
(generator lr/2, discriminator 2*lr, Adam betas (0, 0.9), generator eps 1e-3). One backward pass serves
both players without mixing their gradients: the generator's adversarial terms see the discriminator
with ``requires_grad`` off, and the discriminator's terms see the output detached. This equals the
official alternating G step then D step, which also scores the same fake with the same D.

Objectives: :mod:`dynast_cli.train.generator_losses` (per-block warping loss, VGG feature matching,
perceptual loss, hinge GAN with a multiscale discriminator and GAN feature matching; official weights).
:func:`train_dynast` builds a task, trains it and exports the generator as fp16 safetensors that
:func:`dynast_cli.weights.build.build_model` reads, plus its manifest entry (``<name>.json``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from rich.console import Console
from torch import nn

from dynast_cli.errors import InputError, UsageError
from dynast_cli.models.dynast import ARCHITECTURE, DynastConfig, DynastGenerator
from dynast_cli.nn.discriminator import MultiscaleDiscriminator
from dynast_cli.ops import image_grid
from dynast_cli.pipelines.pose import POSE_CHANNELS
from dynast_cli.train.generator_losses import (
    GENERATOR_LOSS_WEIGHTS,
    PERCEPTUAL_LAYER,
    VGG_FEATURE_SCALE,
    feature_matching_loss,
    gan_feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    warp_loss,
)
from dynast_cli.train.face_data import FaceBatch
from dynast_cli.train.ddp import setup
from dynast_cli.train.loop import train_loop
from dynast_cli.train.style import Task, export_weights

Encoder = Callable[..., list[torch.Tensor]]

#: Generator presets: the official DeepFashion size and a compact one that trains on a CPU.
CONFIGS = {
    "official": {"ngf": 64, "max_multi": 8, "pos_dim": 16, "prune_dim": 16},
    "compact": {"ngf": 16, "max_multi": 4, "pos_dim": 8, "prune_dim": 8},
}
#: Discriminator width per preset (official ndf 64, 4 layers, 2 scales).
DISCRIMINATOR_NDF = {"official": 64, "compact": 32}
SAMPLE_COUNT = 4


class PairSource(Protocol):
    """What a DynaST task draws from (:class:`dynast_cli.train.face_data.FacePairs`,
    :class:`dynast_cli.train.pose_data.PosePairs`)."""

    size: int

    def batch(self, size: int, generator: torch.Generator, part: slice = slice(None)) -> FaceBatch: ...

    def fixed_batch(self, count: int) -> FaceBatch: ...

    def summary(self) -> list[dict[str, Any]]: ...


class DynastGAN(nn.Module):
    """The generator and its discriminator, trained together (the checkpoint holds both)."""

    def __init__(self, generator: DynastGenerator, discriminator: MultiscaleDiscriminator):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """The state with every tensor cloned: the generator's shared PReLU weights (one tensor under
        two keys) would make safetensors refuse the checkpoint."""
        state = super().state_dict(*args, **kwargs)
        for key, value in state.items():
            state[key] = value.clone()
        return state

    def generator_state(self) -> dict[str, torch.Tensor]:
        """The generator's tensors under its own keys (what ``build_model(path, "dynast")`` reads)."""
        return {k: v.clone() for k, v in self.generator.state_dict().items()}


@dataclass
class DynastTask(Task):
    """A :class:`~dynast_cli.train.style.Task` whose export is the generator alone."""

    def export_state(self) -> dict[str, torch.Tensor]:
        return self.model.generator_state()


def semantic_preview(semantics: torch.Tensor) -> torch.Tensor:
    """A viewable (3, H, W) image of a (C, H, W) input: the RGB skeleton of a pose map, else the edge channel."""
    return semantics[:3] if semantics.shape[0] == POSE_CHANNELS else semantics[:1].expand(3, -1, -1)


def check_config(preset: str) -> None:
    """A :class:`UsageError` naming ``--config`` unless ``preset`` is one of :data:`CONFIGS`."""
    if preset not in CONFIGS:
        raise UsageError(f"unknown --config '{preset}' (choose from {', '.join(CONFIGS)})")


def build_config(preset: str, semantic_nc: int, size: int) -> DynastConfig:
    """The generator config of ``preset`` (``compact`` | ``official``) for ``semantic_nc`` channels at ``size``."""
    check_config(preset)
    return DynastConfig(**CONFIGS[preset], semantic_nc=semantic_nc, crop_size=size)


def dynast_objective(model: DynastGAN, batch: FaceBatch, encoder: Encoder,
                     weights: dict[str, float] = GENERATOR_LOSS_WEIGHTS) -> dict[str, torch.Tensor]:
    """Every generator and discriminator term (unweighted) and ``total``, the weighted sum of both players'."""
    out = model.generator(batch.query, batch.ref_image, batch.ref_semantics, return_all=True)
    fake, target = out["image"], batch.target
    with torch.no_grad():
        real_feats = [f * VGG_FEATURE_SCALE for f in encoder((target + 1) / 2)]
    fake_feats = [f * VGG_FEATURE_SCALE for f in encoder((fake + 1) / 2)]

    disc = model.discriminator
    disc.requires_grad_(False)  # the generator's adversarial terms must not train the discriminator
    pred_fake_g = disc(torch.cat([batch.query, fake], 1))
    disc.requires_grad_(True)
    pred_both = disc(torch.cat([torch.cat([batch.query, fake.detach()], 1), torch.cat([batch.query, target], 1)]))
    b = fake.shape[0]
    pred_fake_d = [[t[:b] for t in scale] for scale in pred_both]
    pred_real = [[t[b:] for t in scale] for scale in pred_both]

    d_fake, d_real = hinge_discriminator_loss(pred_fake_d, pred_real)
    losses = {
        "warp": warp_loss(out["warped"], target),
        "gan": hinge_generator_loss(pred_fake_g),
        "gan_feat": gan_feature_matching_loss(pred_fake_g, pred_real),
        "vgg": feature_matching_loss(fake_feats, real_feats),
        "perceptual": torch.nn.functional.mse_loss(fake_feats[PERCEPTUAL_LAYER], real_feats[PERCEPTUAL_LAYER]),
        "d_fake": d_fake,
        "d_real": d_real,
    }
    generator_total = sum(weights[k] * losses[k] for k in ("warp", "gan", "gan_feat", "vgg", "perceptual"))
    losses["total"] = generator_total + weights["gan"] * (d_fake + d_real)
    return losses


def generator_task(source: PairSource, config: DynastConfig, ndf: int, batch: int, encoder: Encoder,
                device: torch.device, name: str, part: slice = slice(None)) -> DynastTask:
    """The GAN task on ``source``'s pairs; samples are rows of (edges/pose, exemplar, output, target)."""
    generator = DynastGenerator(config)
    discriminator = MultiscaleDiscriminator(config.semantic_nc + 3, ndf=ndf)
    model = DynastGAN(generator, discriminator).to(device)
    samples = source.fixed_batch(SAMPLE_COUNT).to(device)

    def data(gen: torch.Generator) -> FaceBatch:
        return source.batch(batch, gen, part).to(device)

    def loss_fn(net: nn.Module, pair: FaceBatch) -> dict[str, torch.Tensor]:
        return dynast_objective(net, pair, encoder)

    def sample_fn(net: nn.Module) -> torch.Tensor:
        out = net.generator(samples.query, samples.ref_image, samples.ref_semantics)
        rows = [[semantic_preview(sem), (ref + 1) / 2, (o + 1) / 2, (t + 1) / 2]
                for sem, ref, o, t in zip(samples.query, samples.ref_image, out, samples.target)]
        return image_grid(rows, cell=source.size)

    return DynastTask(model, loss_fn, data, sample_fn, name=name, architecture=ARCHITECTURE, config=asdict(config))


def make_optimizer(model: DynastGAN, lr: float) -> torch.optim.Optimizer:
    """Adam with the official TTUR groups: generator lr/2 (eps 1e-3), discriminator 2*lr, betas (0, 0.9)."""
    return torch.optim.Adam(
        [
            {"params": model.generator.parameters(), "lr": lr / 2, "eps": 1e-3},
            {"params": model.discriminator.parameters(), "lr": lr * 2},
        ],
        betas=(0.0, 0.9),
    )


def train_dynast(
    source: PairSource,
    name: str,
    preset: str = "compact",
    steps: int = 1000,
    batch: int = 4,
    lr: float = 2e-4,
    out: Path = Path("runs/face"),
    resume: bool = False,
    sample_every: int = 100,
    seed: int = 0,
    device: str | torch.device = "cpu",
    encoder: Encoder | None = None,
    config: DynastConfig | None = None,
    ndf: int | None = None,
    ckpt_every: int = 100,
    console: Console | None = None,
    time_limit_s: float | None = None,
) -> Path:
    """Train a DynaST generator on ``source`` and export ``out/<name>.safetensors``; returns its path.
    ``time_limit_s``: stop early (checkpointed and exported as at the end), see :func:`train_loop`.

    ``preset`` picks the generator and discriminator sizes; ``config`` / ``ndf`` override them (tests
    use tiny ones); the config's ``crop_size`` is always the data's size. ``encoder`` defaults to the
    ImageNet VGG16 (:func:`dynast_cli.weights.build.load_vgg16`).
    """
    world, dev, part = setup(device, batch)  # torchrun: this rank's device and share of the batch
    sample = source.fixed_batch(1)
    config = config or build_config(preset, sample.query.shape[1], source.size)
    if config.semantic_nc != sample.query.shape[1]:
        raise InputError(f"config semantic_nc {config.semantic_nc} does not match the data's {sample.query.shape[1]}")
    config = replace(config, crop_size=source.size)
    if encoder is None:
        from dynast_cli.weights.build import load_vgg16

        encoder = load_vgg16(device=dev)
    torch.manual_seed(seed)
    task = generator_task(source, config, ndf or DISCRIMINATOR_NDF[preset], batch, encoder, dev, name, part)
    optimizer = make_optimizer(task.model, lr)
    result = train_loop(task.model, task.loss_fn, task.data, optimizer, steps, out / "checkpoint", resume=resume,
                        sample_fn=task.sample_fn, sample_every=sample_every, seed=seed, device=dev,
                        ckpt_every=ckpt_every, console=console, time_limit_s=time_limit_s)
    weights = ", ".join(f"{v:g} * {k}" for k, v in GENERATOR_LOSS_WEIGHTS.items())
    extra = {"batch": batch, "crop": source.size, "lr": lr, "optimizer": "Adam TTUR (G lr/2, D 2*lr, betas 0/0.9)",
             "seed": seed, "preset": preset, "discriminator_ndf": ndf or DISCRIMINATOR_NDF[preset],
             "loss": f"{weights}; discriminator hinge (real + fake) * gan"}
    if not world.main:  # rank 0 exports
        return out / f"{name}.safetensors"
    return export_weights(task, result, out, source.summary(), extra, dev)
