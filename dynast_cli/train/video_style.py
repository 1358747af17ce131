"""``dynast train style --video``: the learned AdaAttN video model, trained on simulated frame pairs.

AdaAttN's video extension (Liu et al. 2021) uses cosine attention scores and adds the cross-image
similarity loss (:func:`dynast_cli.nn.losses.cross_image_similarity_loss`) on pairs of nearby
frames. No video dataset is needed: as in the paper, a pair is two views of one content image, the
second one moved by a small random affine motion (shift, rotation, zoom), which simulates
consecutive frames. Both views are stylised with the same style (encoded once, as in
``dynast video``).

The model is :class:`~dynast_cli.models.adaattn.AdaAttNModel` (``learned=True``,
``attention="cosine"``). Its ``f``/``g``/``h`` and ``merge_conv`` start as identities and its
decoder as the universal decoder, so step 0 is exactly the parameter-free cosine AdaAttN that
``dynast video`` runs by default; training fine-tunes from there (a CPU-sized job). Objective:
the image task's terms (``content``, ``global``, ``local``, on both frames; the local target uses
cosine attention) + ``VIDEO_LOSS_WEIGHT * similarity``. Everything runs in the one
:func:`~dynast_cli.train.loop.train_loop` (resumable) and exports like the other style tasks.

Measured (docs/bench/video_train_eval.json): 100-400 CPU steps (128 px crops, 2 pairs a step) did
NOT beat the parameter-free cosine model on cutBunny's warping error (1.54e-3 vs 1.20e-3 after 400
steps) and drifted the colours (a blue cast); no trained video weights are shipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from dynast_cli.models.adaattn import AdaAttNLayer, AdaAttNModel, AdaAttNStyle, get_key
from dynast_cli.nn.decoders import VGGDecoder
from dynast_cli.nn.losses import (
    content_loss,
    cross_image_similarity_loss,
    local_feature_loss,
    style_loss,
)
from dynast_cli.ops import image_grid
from dynast_cli.train.data import RandomCrops
from dynast_cli.train.ddp import setup
from dynast_cli.train.style import (
    ATTENTION_LOSS_WEIGHTS,
    DEFAULT_LR,
    SAMPLE_COUNT,
    Encoder,
    Task,
    initial_decoder,
    run_task,
)

#: Weight of the cross-image similarity loss. The loss is a mean of normalised entries (~1/N each),
#: so its raw value is tiny (~5e-4 at the start, 128 px crops), while the official style terms on
#: ImageNet VGG16 features (caffe scale) are ~1e5-1e6: this weight makes the similarity term about
#: three quarters of the objective at the start of fine-tuning. (2e9, a quarter, let the style terms
#: win: after 100 CPU steps the warping error on cutBunny rose from 1.20e-3 to 2.02e-3.)
VIDEO_LOSS_WEIGHT = 2e10
#: Layers of the similarity loss: relu3_1, relu4_1.
SIMILARITY_LAYERS = (2, 3)
#: Simulated motion between the two frames: shift (fraction of the crop), rotation, zoom.
MAX_SHIFT = 1 / 24
MAX_ROTATE_DEG = 2.0
MAX_ZOOM = 0.03


def margin_for(size: int) -> int:
    """Border kept around a ``size`` crop so that the simulated motion never samples outside the image."""
    return size // 8


def shifted_pair(
    big: torch.Tensor, size: int, generator: torch.Generator, max_shift: float = MAX_SHIFT,
    max_rotate_deg: float = MAX_ROTATE_DEG, max_zoom: float = MAX_ZOOM, batch: int | None = None,
    part: slice = slice(None),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two "consecutive frames" from crops with a border: big (B, 3, S, S), S >= size -> two (B, 3, size, size).

    Frame 1 is the centre ``size`` crop; frame 2 the centre crop after a random affine motion of
    the whole crop (shift up to ``max_shift * size`` px per axis, rotation up to ``max_rotate_deg``,
    zoom up to ``1 +- max_zoom``), bilinear, one motion per sample drawn from ``generator``.
    ``batch``/``part``: ``big`` holds the items ``part`` of a batch of ``batch`` (a training rank's
    share); the motions are drawn for the whole batch and these items' taken.
    """
    b, _, s, _ = big.shape
    m = (s - size) // 2
    u = (torch.rand((batch or b, 4), generator=generator) * 2 - 1)[part]  # (B, 4) in [-1, 1]
    angle = u[:, 0] * math.radians(max_rotate_deg)
    zoom = 1.0 + u[:, 1] * max_zoom
    shift = u[:, 2:] * (max_shift * size) * 2 / s  # (B, 2) pixels -> normalised [-1, 1] units
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(big), list(big.shape), align_corners=False)  # (B, S, S, 2)
    moved = F.grid_sample(big, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    crop = (..., slice(m, m + size), slice(m, m + size))
    return big[crop].contiguous(), moved[crop].clamp(0.0, 1.0).contiguous()


def identity_init(model: AdaAttNModel) -> AdaAttNModel:
    """Set the learned ``f``, ``g``, ``h`` (1x1) and ``merge_conv`` (3x3) to identities, so the
    model computes exactly the parameter-free AdaAttN (same attention kind, same decoder)."""
    with torch.no_grad():
        for layer in model.attention_layers():
            for conv in (layer.f, layer.g, layer.h):
                conv.weight.copy_(torch.eye(conv.out_channels).view_as(conv.weight))
                conv.bias.zero_()
        merge = model.transformer.merge_conv
        merge.weight.zero_()
        merge.weight[:, :, 1, 1] = torch.eye(merge.out_channels)
        merge.bias.zero_()
    return model


def cosine_target(content_feats: Sequence[torch.Tensor], style_feats: Sequence[torch.Tensor], i: int) -> torch.Tensor:
    """The parameter-free cosine AdaAttN transform of layer ``i`` (the local feature loss target)."""
    layer = AdaAttNLayer(content_feats[i].shape[1], 0, max_sample=64 * 64, learned=False)
    key, value = layer.prepare(style_feats[i], get_key(style_feats, i), seed=None)
    return layer(content_feats[i], get_key(content_feats, i), key, value, kind="cosine")


def repeat_state(state: AdaAttNStyle, times: int) -> AdaAttNStyle:
    """A batch-B style state for a batch of ``times * B`` contents (the style encoded once)."""
    return AdaAttNStyle([(k.repeat(times, 1, 1), v.repeat(times, 1, 1)) for k, v in state.levels])


def video_task(encoder: Encoder, contents: RandomCrops, styles: RandomCrops, size: int, batch: int,
               device: torch.device, decoder: VGGDecoder | None, video_weight: float = VIDEO_LOSS_WEIGHT,
               part: slice = slice(None)) -> Task:
    """Learned cosine AdaAttN on (frame pair, style) batches; ``contents`` crops carry the motion border."""
    model = identity_init(AdaAttNModel(encoder, learned=True, attention="cosine", decoder=decoder)).to(device)
    sample_pair = shifted_pair(contents.center_crops(SAMPLE_COUNT), size, torch.Generator().manual_seed(0))
    sample_pair = tuple(x.to(device) for x in sample_pair)
    sample_style = styles.center_crops(SAMPLE_COUNT).to(device)
    w = {**ATTENTION_LOSS_WEIGHTS, "similarity": video_weight}

    def data(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        first, second = shifted_pair(contents.crops(batch, generator, part), size, generator, batch=batch, part=part)
        return first.to(device), second.to(device), styles.crops(batch, generator, part).to(device)

    def forward(net: AdaAttNModel, first: torch.Tensor, second: torch.Tensor, style: torch.Tensor):
        """-> both stylised frames (2B, 3, size, size) and the content features of [first; second]."""
        frames = torch.cat([first, second])  # (2B, 3, size, size)
        feats = encoder(frames)
        return net.decode(net.transform(feats, repeat_state(net.prepare_style(style), 2))), feats

    def loss_fn(net: nn.Module, batch_: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        first, second, style = batch_
        out, content_feats = forward(net, first, second, style)
        with torch.no_grad():
            style_feats = [f.repeat(2, 1, 1, 1) for f in encoder(style)]
        out_feats = encoder(out)
        n = first.shape[0]
        losses = {
            "content": content_loss(out_feats, content_feats, layers=(1, 2, 3, 4)),
            "global": style_loss(out_feats[1:], style_feats[1:]),
            "local": local_feature_loss(out_feats, content_feats, style_feats, cosine_target, layers=(1, 2, 3, 4)),
            "similarity": cross_image_similarity_loss(
                [f[:n] for f in content_feats], [f[n:] for f in content_feats],
                [f[:n] for f in out_feats], [f[n:] for f in out_feats], layers=SIMILARITY_LAYERS),
        }
        losses["total"] = sum(w[k] * v for k, v in losses.items())
        return losses

    def sample_fn(net: nn.Module) -> torch.Tensor:
        out = forward(net, *sample_pair, sample_style)[0].clamp(0, 1)
        a, b = out[:SAMPLE_COUNT], out[SAMPLE_COUNT:]
        rows = zip(sample_pair[0], sample_pair[1], sample_style, a, b)
        return image_grid([list(r) for r in rows], cell=size)

    return Task(model, loss_fn, data, sample_fn, name="adaattn_video_vgg16", architecture=model.architecture,
                config={**model.config(), "encoder": "vgg16"})


def train_video_style(
    content: Sequence[Path],
    style: Sequence[Path],
    steps: int = 1000,
    batch: int = 2,
    size: int = 192,
    lr: float = DEFAULT_LR,
    out: Path = Path("runs/style_video"),
    resume: bool = False,
    sample_every: int = 100,
    seed: int = 0,
    device: str | torch.device = "cpu",
    max_per_folder: int | None = None,
    encoder: Encoder | None = None,
    init_decoder: Path | None = None,
    ckpt_every: int = 100,
    video_weight: float = VIDEO_LOSS_WEIGHT,
    console: Console | None = None,
    time_limit_s: float | None = None,
    amp: bool | None = None,
) -> Path:
    """Train the AdaAttN video model and export ``<out>/adaattn_video_vgg16.safetensors`` (+ ``.json``).

    Same arguments as :func:`dynast_cli.train.style.train_style`; ``batch`` counts frame pairs.
    """
    world, dev, part = setup(device, batch)  # torchrun: this rank's device and share of the batch
    if encoder is None:
        from dynast_cli.weights.build import load_vgg16

        encoder = load_vgg16(device=dev)
    torch.manual_seed(seed)
    contents = RandomCrops(content, size=size + 2 * margin_for(size), max_per_folder=max_per_folder)
    styles = RandomCrops(style, size=size, max_per_folder=max_per_folder)
    task = video_task(encoder, contents, styles, size, batch, dev, initial_decoder(init_decoder, dev), video_weight,
                      part=part)
    weights = {**ATTENTION_LOSS_WEIGHTS, "similarity": video_weight}
    extra = {
        "batch": batch, "crop": size, "lr": lr, "optimizer": "Adam", "seed": seed,
        "loss": " + ".join(f"{v} * {k}" for k, v in weights.items()),
        "pairs": (f"two views of one content crop, the second moved by a random affine motion (shift <= "
                  f"{MAX_SHIFT * size:.0f} px, rotation <= {MAX_ROTATE_DEG} deg, zoom <= {MAX_ZOOM}); same style"),
        "init": "f/g/h/merge_conv identity (= parameter-free cosine AdaAttN), decoder from the universal decoder",
    }
    return run_task(task, steps, lr, out, resume, sample_every, seed, dev, ckpt_every, console,
                    contents.summary + styles.summary, extra, time_limit_s=time_limit_s, amp=amp)
