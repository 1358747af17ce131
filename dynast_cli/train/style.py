"""Style training tasks, all run by :func:`dynast_cli.train.loop.train_loop`.

* ``decoder``: the universal decoder (:mod:`dynast_cli.models.decoder`) learns to invert frozen
  VGG16 features of random crops of every given folder (content and style alike):
  ``decode(relu3_1, relu4_1, relu5_1) ~ image``, reconstruction loss (pixel L1 + perceptual).
The style methods say whether and how they train (their spec's
:class:`~dynast_cli.styles.registry.Training`: the task below, and which options apply):

* ``attention`` (``adaattn`` / ``a2k``): the learned AdaAttN / StyA2K models (:mod:`dynast_cli.models.adaattn`,
  :mod:`dynast_cli.models.stya2k`) on (content crop, style crop) pairs with the papers' objective:
  ``content * L_content + global * L_style + local * L_local`` (AdaAttN's local feature loss against
  the parameter-free AdaAttN target). Their decoder starts from the universal decoder when one is
  installed; the frozen encoder is not exported.
* ``prune_mask`` (``dynast``): the learned prune mask of :class:`~dynast_cli.models.dynast_style.DynastStyleModel`
  (its ``prune.*`` embeddings only; encoder and universal decoder frozen and not exported: the
  decoder is loaded from the registry at run time) with the unified unsupervised objective
  ``content * L_content + global * L_style + local * L_local``, the local target being the
  parameter-free DynaST transform of the same pair (every match kept).

:func:`train_style` builds a task, trains it and exports fp16 safetensors with the metadata and the
manifest entry (``<name>.json`` beside it) that ``weights/manifest.json`` records.
"""

from __future__ import annotations

import copy
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from dynast_cli.errors import UsageError
from dynast_cli.io.outputs import write_text
from dynast_cli.models.decoder import decode_features
from dynast_cli.nn.decoders import VGGDecoder
from dynast_cli.nn.losses import (content_loss, gram_loss, local_feature_loss, low_pass_loss, reconstruction_loss,
                                  style_loss)
from dynast_cli.ops import image_grid
from dynast_cli.train.data import RandomCrops
from dynast_cli.train.ddp import current_world, setup
from dynast_cli.train.loop import DataFn, LossFn, SampleFn, TrainResult, train_loop, use_amp
from dynast_cli.weights.io import save_weights, sha256_file

Encoder = Callable[..., list[torch.Tensor]]

#: ``--method decoder``: the universal decoder every parameter-free method decodes with (not a style method).
DECODER = "decoder"
SAMPLE_COUNT = 4
#: Loss weights of the attention models (the official AdaAttN / StyA2K training options).
ATTENTION_LOSS_WEIGHTS = {"content": 0.0, "global": 10.0, "local": 3.0}
#: Loss weights of the DynaST prune mask (``dynast``): the papers' unified unsupervised objective with
#: their global:local ratio 10:3. The normalised content term is ~1.6 while the others, on VGG16 features
#: in the caffe range, are ~1e5 (192 px crops): a content weight of 1 would be inert, 3e4 makes it ~10%
#: of the global term at initialisation.
PRUNE_MASK_LOSS_WEIGHTS = {"content": 3e4, "global": 10.0, "local": 3.0}
#: Loss weights of ``dynast --train-decoder`` (the decoder fine-tuned for the default's transform, session 11):
#: the papers' content (~2.3 at 192 px; x 2e5), global (~5e4) and local (~3e5; x 0.1) terms, plus Gram texture
#: at relu1_1..relu4_1 (~6e9; x 5e-5), the fine-scale target (~5e4; x 2) and the low-pass anchor to the
#: starting decoder's output (0 at the start, ~3e-4 after a few steps; x 1e8). Sessions 3 and 8 fine-tuned
#: without the last three: the decoder satisfied the VGG statistics with colours the style does not have.
#: Session 11 chose Gram 5e-5 over 1.5e-5 and step 400 on the val/val2 pairs (docs/bench/style_default_s11.md);
#: that run is the default's decoder (weights/manifest.json).
#: The fine-tune wants a small learning rate (:data:`DYNAST_DECODER_LR`): at 1e-4 one Adam step moved the
#: 1/8-scale output by 0.2 RMS.
#: Adam learning rate of ``dynast train style`` unless given.
DEFAULT_LR = 1e-4
#: ... and of ``dynast --train-decoder`` (see above).
DYNAST_DECODER_LR = 1e-5
DYNAST_DECODER_LOSS_WEIGHTS = {"content": 2e5, "global": 1.0, "local": 0.1, "gram": 5e-5, "fine": 2.0, "anchor": 1e8}
#: The matching ``--train-decoder`` fine-tunes the decoder for: the shipped default's (the config of
#: ``dynast_style_vgg16`` in weights/manifest.json; a test keeps the two equal). The texture seed acts on
#: the image before encoding, outside what the training steps run; it is exported so that the trained file
#: runs seeded as the default does.
DYNAST_DECODER_MATCHING = {"smooth": 0.02, "warp": 0.5, "noise": 0.1, "renorm": (1.0, 0.0, 0.0)}
#: Width of the learned prune embeddings of ``dynast``.
DYNAST_PRUNE_DIM = 8


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
    frozen: tuple[str, ...] = ("encoder.",)

    def export_state(self) -> dict[str, torch.Tensor]:
        """The trained tensors, without the frozen parts held under the ``frozen`` prefixes (the encoder)."""
        return {k: v for k, v in self.model.state_dict().items() if not k.startswith(self.frozen)}


def decoder_task(encoder: Encoder, crops: RandomCrops, batch: int, device: torch.device,
                 init: VGGDecoder | None = None, part: slice = slice(None)) -> Task:
    """The universal-decoder task: reconstruct crops from their frozen relu3_1/4_1/5_1 features
    (starting from ``init``, e.g. the committed decoder, or from a fresh decoder)."""
    model = (init if init is not None else VGGDecoder(skip=True)).to(device).train().requires_grad_(True)
    samples = crops.center_crops(SAMPLE_COUNT).to(device)

    def data(generator: torch.Generator) -> torch.Tensor:
        return crops.crops(batch, generator, part).to(device)

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


def adaattn_target(content_feats: Sequence[torch.Tensor], style_feats: Sequence[torch.Tensor], i: int) -> torch.Tensor:
    """The parameter-free AdaAttN transform of layer ``i`` (the local feature loss target)."""
    from dynast_cli.models.adaattn import AdaAttNLayer, get_key

    layer = AdaAttNLayer(content_feats[i].shape[1], 0, max_sample=64 * 64, learned=False)
    key, value = layer.prepare(style_feats[i], get_key(style_feats, i), seed=None)
    return layer(content_feats[i], get_key(content_feats, i), key, value)


def attention_task(method: str, encoder: nn.Module, contents: RandomCrops, styles: RandomCrops, batch: int,
                   device: torch.device, decoder: VGGDecoder | None, init: Path | None = None,
                   weights: dict[str, float] | None = None, part: slice = slice(None)) -> Task:
    """The learned AdaAttN (``adaattn``) or StyA2K (``a2k``) model trained on content x style crops,
    starting from ``init`` (a file this task exported: every trained layer) when given.
    ``weights``: the loss weights (default :data:`ATTENTION_LOSS_WEIGHTS`, the papers')."""
    from dynast_cli.errors import WeightsError
    from dynast_cli.styles import get_spec
    from dynast_cli.weights.build import build_model

    training = get_spec(method).training
    model_class = training.model
    model = model_class(encoder, learned=True, decoder=decoder).to(device)
    if init is not None:
        loaded = build_model(init, model_class.architecture, device, encoder=encoder,
                             context=f"to continue --method {method}")
        if loaded.config() != model.config():  # e.g. the cosine-attention video model
            raise WeightsError(f"was trained with config {loaded.config()}, this task builds {model.config()}", init)
        model = loaded
    sample_content = contents.center_crops(SAMPLE_COUNT).to(device)
    sample_style = styles.center_crops(SAMPLE_COUNT).to(device)
    w = ATTENTION_LOSS_WEIGHTS if weights is None else weights

    def data(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return contents.crops(batch, generator, part).to(device), styles.crops(batch, generator, part).to(device)

    def forward(net: nn.Module, content: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, list]:
        feats = encoder(content)
        return net.decode(net.transform(feats, net.prepare_style(style))), feats

    def loss_fn(net: nn.Module, pair: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        content, style = pair
        out, content_feats = forward(net, content, style)
        with torch.no_grad():
            style_feats = encoder(style)
        out_feats = encoder(out)
        losses = {
            # the official training ranges: relu2_1..relu5_1 for every term
            "content": content_loss(out_feats, content_feats, layers=(1, 2, 3, 4)),
            "global": style_loss(out_feats[1:], style_feats[1:]),
            "local": local_feature_loss(out_feats, content_feats, style_feats, adaattn_target, layers=(1, 2, 3, 4)),
        }
        losses["total"] = sum(w[k] * v for k, v in losses.items())
        return losses

    def sample_fn(net: nn.Module) -> torch.Tensor:
        out = forward(net, sample_content, sample_style)[0].clamp(0, 1)
        return image_grid([[c, s, o] for c, s, o in zip(sample_content, sample_style, out)], cell=contents.size)

    return Task(model, loss_fn, data, sample_fn, name=training.export, architecture=model_class.architecture,
                config={**model.config(), "encoder": "vgg16"})


def prune_mask_task(encoder: nn.Module, contents: RandomCrops, styles: RandomCrops, batch: int, device: torch.device,
                    decoder: VGGDecoder | None, seed: int = 0, train_decoder: bool = False,
                    locality: Sequence[float] = (1.0, 1.0, 1.0), part: slice = slice(None)) -> Task:
    """The learned prune mask of DynaST style matching; only ``prune.*`` is trained and exported.

    ``train_decoder``: instead, the parameter-free matching (every match kept) with ``locality`` (see
    :class:`~dynast_cli.models.dynast_style.DynastStyleModel`) and the decoder fine-tuned from ``decoder``
    with :data:`DYNAST_DECODER_LOSS_WEIGHTS`; ``decoder.*`` is exported with the config.

    Each step matches every content crop (with the model's texture seed, as the style method adds it) to
    its own style crop. Losses on the frozen encoder:
    ``content`` (normalised relu4_1/relu5_1), ``global`` (mean/std relu1_1..relu5_1) and ``local``
    (relu3_1..relu5_1 against the parameter-free transform, which equals the model at initialisation);
    ``kept`` (logged, not optimised) is the mean attention mass the gate keeps over the three levels.
    """
    from dynast_cli.models.dynast_style import LEVELS, DynastStyleModel, texture_seed, warp_finer

    decoder = (decoder if decoder is not None else VGGDecoder(skip=True)).to(device).requires_grad_(train_decoder)
    # the decoder as it starts, frozen: the low-pass anchor of the fine-tune (not a part of the model: not exported)
    reference = copy.deepcopy(decoder).eval().requires_grad_(False) if train_decoder else None
    matching = DYNAST_DECODER_MATCHING if train_decoder else {}
    model = DynastStyleModel(encoder, decoder, prune_dim=None if train_decoder else DYNAST_PRUNE_DIM, seed=seed,
                             locality=locality, **matching).to(device)
    sample_content = contents.center_crops(SAMPLE_COUNT).to(device)
    sample_style = styles.center_crops(SAMPLE_COUNT).to(device)
    w = DYNAST_DECODER_LOSS_WEIGHTS if train_decoder else PRUNE_MASK_LOSS_WEIGHTS

    def data(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return contents.crops(batch, generator, part).to(device), styles.crops(batch, generator, part).to(device)

    def loss_fn(net: nn.Module, pair: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        content, style = pair
        with torch.no_grad():
            content_feats, style_feats = encoder(content), encoder(style)
            # the matching sees the content as the style method gives it: with the texture seed (the
            # fine-tuned decoder then learns the features it will decode); the losses keep the plain content
            seeded = encoder(texture_seed(content, net.noise)) if net.noise > 0 else content_feats
        if train_decoder:
            return decoder_losses(net, content_feats, style_feats, seeded, style)
        state = net.prepare_style(style)
        matches = net.match(seeded, state)  # once: the transform and the logged kept mass share it
        transformed = net.transform(seeded, state, matches=matches)
        with torch.no_grad():
            targets = net.transform(seeded, state, prune=False)
        out_feats = encoder(net.decode(transformed))
        losses = {
            "content": content_loss(out_feats, content_feats),
            "global": style_loss(out_feats, style_feats),
            "local": local_feature_loss(out_feats, content_feats, style_feats,
                                        lambda _c, _s, i: targets[LEVELS.index(i)], layers=LEVELS),
        }
        losses["total"] = sum(w[k] * v for k, v in losses.items())
        losses["kept"] = torch.stack([m.conf.detach().mean() for m in matches.values()]).mean()
        return losses

    def decoder_losses(net: nn.Module, content_feats: list[torch.Tensor], style_feats: list[torch.Tensor],
                       seeded: list[torch.Tensor], style: torch.Tensor) -> dict[str, torch.Tensor]:
        """The decoder fine-tune: the default's transform (no gradient) decoded, with the papers' content,
        global and local terms, plus Gram texture at relu1_1..relu4_1, the style's relu1_1/relu2_1 under each
        relu3_1 position's best match ("fine") and the starting decoder's output at 1/8 scale ("anchor": the
        colours and layout the default already has; a fine-tune without it drifted to colours the style lacks)."""
        # the matching in fp32 under --precision bf16 too, as the default runs it (encoder and decoder: bf16)
        with torch.no_grad(), torch.autocast(style.device.type, enabled=False):
            seeded = [f.float() for f in seeded]
            state = net.prepare_style(style)
            matches = net.match(seeded, state)
            transformed = net.transform(seeded, state, matches=matches)
            best = matches[LEVELS[0]].top_k[..., 0]  # (B, H3*W3): each relu3_1 position's best style position
            grid = tuple(seeded[LEVELS[0]].shape[-2:])
            fine = [warp_finer(style_feats[i], best, grid, 2 ** (LEVELS[0] - i)) for i in range(LEVELS[0])]
            anchor = decode_features(reference, *transformed)
        out = net.decode(transformed)
        out_feats = [f.float() for f in encoder(out)]
        losses = {
            "content": content_loss(out_feats, content_feats),
            "global": style_loss(out_feats, style_feats),
            "local": local_feature_loss(out_feats, content_feats, style_feats,
                                        lambda _c, _s, i: transformed[LEVELS.index(i)], layers=LEVELS),
            "gram": gram_loss(out_feats, style_feats),
            "fine": sum(F.mse_loss(out_feats[i], f) for i, f in enumerate(fine)),
            "anchor": low_pass_loss(out.float(), anchor.float()),
        }
        losses["total"] = sum(w[k] * v for k, v in losses.items())
        return losses

    def sample_fn(net: nn.Module) -> torch.Tensor:
        state = net.prepare_style(sample_style)
        feats = encoder(texture_seed(sample_content, net.noise))  # as the loss and the style method see it
        learned = net.decode(net.transform(feats, state)).clamp(0, 1)
        free = net.decode(net.transform(feats, state, prune=False)).clamp(0, 1)
        return image_grid([list(row) for row in zip(sample_content, sample_style, free, learned)], cell=contents.size)

    if train_decoder:
        return Task(model, loss_fn, data, sample_fn, name="dynast_style_vgg16", architecture="dynast_style",
                    config={**model.config(), "encoder": "vgg16"}, frozen=("encoder.",))
    return Task(model, loss_fn, data, sample_fn, name="dynast_prune_vgg16", architecture="dynast_style",
                config={**model.config(), "encoder": "vgg16", "decoder": "decoder_vgg16"},
                frozen=("encoder.", "decoder."))


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
    save_weights(task.export_state(), path, {"architecture": task.architecture, "config": task.config,
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
    write_text(out_dir / f"{task.name}.json", json.dumps(entry, indent=2) + "\n")
    return path


def initial_decoder(path: Path | None, device: torch.device) -> VGGDecoder | None:
    """A trainable copy of the decoder at ``path`` (or the installed universal one); None if neither."""
    from dynast_cli.weights.build import load_universal_decoder
    from dynast_cli.weights.registry import default_weights

    if path is None and default_weights("decoder") is None:
        return None
    return load_universal_decoder(path, device=device).requires_grad_(True)


def train_style(
    content: Sequence[Path],
    style: Sequence[Path],
    method: str = "decoder",
    steps: int = 1000,
    batch: int = 4,
    size: int = 192,
    lr: float | None = None,
    out: Path = Path("runs/style"),
    resume: bool = False,
    sample_every: int = 100,
    seed: int = 0,
    device: str | torch.device = "cpu",
    max_per_folder: int | None = None,
    encoder: Encoder | None = None,
    init_decoder: Path | None = None,
    ckpt_every: int = 100,
    console: Console | None = None,
    train_decoder: bool = False,
    locality: Sequence[float] = (1.0, 1.0, 1.0),
    time_limit_s: float | None = None,
    amp: bool | None = None,
    init: Path | None = None,
    content_weight: float | None = None,
) -> Path:
    """Train one style task and export its weights; returns the exported safetensors path.

    ``encoder`` defaults to the ImageNet VGG16 (:func:`dynast_cli.weights.build.load_vgg16`); tests pass
    a small stand-in with the same interface. ``init_decoder``: decoder weights to start from; for the
    attention and dynast tasks by default the installed universal decoder (else a fresh one), for
    ``decoder`` a fresh decoder unless given (continuing a decoder with a fresh optimiser; ``resume``
    continues a checkpoint exactly).
    ``time_limit_s`` / ``amp``: see :func:`~dynast_cli.train.loop.train_loop`. ``init`` (adaattn/a2k): a
    model file this method exported, to continue with a fresh optimiser (its decoder replaces ``init_decoder``).
    ``content_weight`` (adaattn/a2k): the weight of the normalised content loss (default 0, the papers').
    ``lr``: default :data:`DEFAULT_LR`, or :data:`DYNAST_DECODER_LR` with ``train_decoder``.
    """
    from dynast_cli.styles import get_spec
    from dynast_cli.styles.registry import methods_with

    if method not in train_methods():
        raise UsageError(f"unknown --method '{method}' (choose from {', '.join(train_methods())})")
    training = None if method == DECODER else get_spec(method).training
    if init is not None and method not in methods_with("init"):
        raise UsageError(f"--init continues a trained {' or '.join(methods_with('init'))} model, not --method {method}")
    if content_weight is not None and method not in methods_with("content_weight"):
        raise UsageError(f"--content-weight weights the {'/'.join(methods_with('content_weight'))} objective's "
                         f"content term, not --method {method}'s")
    if lr is None:
        lr = DYNAST_DECODER_LR if train_decoder else DEFAULT_LR
    world, dev, part = setup(device, batch)  # torchrun: this rank's device and share of the batch
    if encoder is None:
        from dynast_cli.weights.build import load_vgg16

        encoder = load_vgg16(device=dev)
    torch.manual_seed(seed)
    if training is None:
        crops = RandomCrops([*content, *style], size=size, max_per_folder=max_per_folder)
        summaries = crops.summary
        start = None
        if init_decoder is not None:
            from dynast_cli.weights.build import load_universal_decoder

            start = load_universal_decoder(init_decoder, device=dev)
        task = decoder_task(encoder, crops, batch, dev, start, part=part)
        loss_text = "pixel L1 + perceptual (VGG16 relu1_1..relu4_1, energy-normalised MSE)"
    else:
        contents = RandomCrops(content, size=size, max_per_folder=max_per_folder)
        styles = RandomCrops(style, size=size, max_per_folder=max_per_folder)
        summaries = contents.summary + styles.summary
        task, weights = TASKS[training.task](
            method, encoder, contents, styles, batch, dev, init_decoder=init_decoder, seed=seed,
            train_decoder=train_decoder, locality=locality, init=init, content_weight=content_weight, part=part)
        loss_text = " + ".join(f"{v} * {k}" for k, v in weights.items())
    extra = {"batch": batch, "crop": size, "lr": lr, "optimizer": "Adam", "seed": seed, "loss": loss_text}
    if init is not None:
        extra["init"] = f"{Path(init).name} (sha256 {sha256_file(init)[:16]})"
    elif init_decoder is not None:
        extra["init_decoder"] = f"{Path(init_decoder).name} (sha256 {sha256_file(init_decoder)[:16]})"
    return run_task(task, steps, lr, out, resume, sample_every, seed, dev, ckpt_every, console, summaries, extra,
                    time_limit_s=time_limit_s, amp=amp)


def train_methods() -> list[str]:
    """What ``dynast train style --method`` accepts: ``decoder`` and every style method whose spec trains."""
    from dynast_cli.styles.registry import trainable_methods

    return [DECODER, *trainable_methods()]


def _attention(method: str, encoder: Encoder, contents: RandomCrops, styles: RandomCrops, batch: int,
               device: torch.device, init_decoder: Path | None = None, init: Path | None = None,
               content_weight: float | None = None, part: slice = slice(None), **_: object) -> tuple[Task, dict[str, float]]:
    weights = dict(ATTENTION_LOSS_WEIGHTS)
    if content_weight is not None:
        weights["content"] = content_weight
    decoder = None if init is not None else initial_decoder(init_decoder, device)
    return attention_task(method, encoder, contents, styles, batch, device, decoder, init, weights, part), weights


def _prune_mask(method: str, encoder: Encoder, contents: RandomCrops, styles: RandomCrops, batch: int,
                device: torch.device, init_decoder: Path | None = None, seed: int = 0, train_decoder: bool = False,
                locality: Sequence[float] = (1.0, 1.0, 1.0), part: slice = slice(None),
                **_: object) -> tuple[Task, dict[str, float]]:
    # frozen decoder: the universal one (or init_decoder), a fresh one if neither
    task = prune_mask_task(encoder, contents, styles, batch, device, initial_decoder(init_decoder, device), seed,
                           train_decoder=train_decoder, locality=locality, part=part)
    return task, DYNAST_DECODER_LOSS_WEIGHTS if train_decoder else PRUNE_MASK_LOSS_WEIGHTS


#: The training tasks a style method's spec may name (``Training.task``) -> (task, loss weights) makers.
TASKS = {"attention": _attention, "prune_mask": _prune_mask}


def run_task(task: Task, steps: int, lr: float, out: Path, resume: bool, sample_every: int, seed: int,
             device: torch.device, ckpt_every: int, console: Console | None, summaries: Sequence,
             extra: dict, time_limit_s: float | None = None, amp: bool | None = None) -> Path:
    """Adam on the task's trainable parameters through :func:`train_loop`, then :func:`export_weights`
    (``summaries``: the data folders' summaries; ``extra``: what the manifest entry records besides, to
    which the precision is added; ``amp``: see :func:`train_loop`)."""
    amp = use_amp(device, amp)
    extra = {**extra, "precision": "bf16 autocast" if amp else "fp32"}
    optimizer = torch.optim.Adam([p for p in task.model.parameters() if p.requires_grad], lr=lr)
    result = train_loop(task.model, task.loss_fn, task.data, optimizer, steps, out / "checkpoint", resume=resume,
                        sample_fn=task.sample_fn, sample_every=sample_every, seed=seed, device=device,
                        ckpt_every=ckpt_every, console=console, time_limit_s=time_limit_s, amp=amp)
    summary = [{"folder": s.folder, "images": s.count} for s in summaries]
    if not current_world().main:  # rank 0 exports
        return out / f"{task.name}.safetensors"
    return export_weights(task, result, out, summary, extra, device)
