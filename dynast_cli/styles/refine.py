"""Pixel optimisation against the papers' style objective: the ``optimize`` method and ``--refine``.

One objective on an image's frozen VGG16 features (:func:`style_objective`), minimised with Adam on
the pixels (:func:`optimise_pixels`), serves two uses:

- ``--method optimize`` starts from the content and runs many steps (the training-free quality
  ceiling, :class:`~dynast_cli.styles.optimize.OptimizeMethod`);
- ``--refine N`` (:class:`RefinedMethod`) starts from a feed-forward method's output and runs a few
  steps against the two losses the papers evaluate with: the style's channel mean/std at
  relu1_1..relu5_1 and the content's normalised relu4_1/relu5_1. A feed-forward decoder does not
  reproduce the statistics it was asked for (the universal decoder's outputs keep far more of the
  content's texture statistics than AdaIN's target has, mostly at relu3_1/relu4_1); ten steps move them
  most of the way while the content term holds the structure. Measured in ``docs/bench/style_refine.md``.

Large images are refined at a working size (long side :data:`REFINE_MAX_SIDE`): the change found
there is upsampled and added to the full-size output, which bounds time and memory (a VGG16 backward
pass at full 4K would need tens of GB) and keeps the texture scale of a 512 px refinement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from dynast_cli.errors import UsageError
from dynast_cli.nn.losses import content_loss, statistics_loss
from dynast_cli.nn.norm import calc_mean_std
from dynast_cli.ops import blend, finish_image, fit_size, mix_weights, pad_to_multiple, resize
from dynast_cli.styles import base
from dynast_cli.styles.registry import get_spec

#: Adam learning rate on [0, 1] pixels.
REFINE_LR = 0.01
#: Weights of the style statistics (VGG16 relu1_1..relu5_1 mean/std MSE) and of the normalised content
#: term (relu4_1/relu5_1); the content term is ~1 and the style term ~1e4-1e5 on 0-255 VGG16 features.
REFINE_STYLE_WEIGHT = 1.0
REFINE_CONTENT_WEIGHT = 1e5
#: Long side (pixels) of the working size a larger image is refined at.
REFINE_MAX_SIDE = 512

#: Working memory of a refinement step (VGG16 forward + backward to relu5_1, Adam state) per pixel of the
#: working size: measured 2,640 B/px at 512x512 (peak RSS rise, 1 thread); raised so that the whole
#: ``--max-memory`` estimate of the default stays above its measured peak (1,106 MB RSS at 512x340).
REFINE_BYTES_PER_PIXEL = 3500

Stats = list[tuple[torch.Tensor, torch.Tensor]]


def refine_bytes(hw: tuple[int, int]) -> int:
    """Estimated working memory (bytes) of refining an (H, W) output (at its working size)."""
    h, w = fit_size(*hw, max_size=REFINE_MAX_SIDE)
    return REFINE_BYTES_PER_PIXEL * h * w


def refine_steps(method: str, refine: int | None) -> int:
    """``--refine`` resolved: the given steps, or the default of method ``method`` (its spec's ``refine``:
    0 for every method since session 6)."""
    if refine is None:
        return get_spec(method).refine
    if refine < 0:
        raise UsageError(f"--refine takes a number of steps >= 0, got {refine}")
    return refine


def blend_stats(per_style: Sequence[Stats], mix: Sequence[float]) -> Stats:
    """Per-style [(mean, std) per layer] -> the mix-weighted average of each."""
    return [tuple(blend([s[level][k] for s in per_style], mix) for k in (0, 1)) for level in range(len(per_style[0]))]


def toward(target: Stats, start: Stats, alpha: float) -> Stats:
    """``alpha * target + (1 - alpha) * start`` per layer (``--alpha`` on the statistics)."""
    if alpha == 1.0:
        return target
    return [(alpha * tm + (1 - alpha) * sm, alpha * ts + (1 - alpha) * ss) for (tm, ts), (sm, ss) in zip(target, start)]


def style_objective(
    feats: Sequence[torch.Tensor],
    stats: Stats,
    content_feats: Sequence[torch.Tensor],
    style_weight: float,
    content_weight: float,
    local: Sequence[torch.Tensor] | None = None,
    local_weight: float = 0.0,
) -> torch.Tensor:
    """The papers' losses on an image's features [relu1_1 .. relu5_1] (B, C_i, H_i, W_i), summed:

    ``style_weight * statistics_loss(feats, stats)`` (mean/std MSE over all five layers)
    ``+ content_weight * content_loss(feats, content_feats)`` (normalised relu4_1 and relu5_1)
    ``+ local_weight * sum MSE(feats[relu3_1..5_1], local)`` (AdaAttN's local feature loss; skipped
    without ``local``).
    """
    loss = style_weight * statistics_loss(feats, stats) + content_weight * content_loss(feats, content_feats)
    if local is not None and local_weight:
        loss = loss + sum(local_weight * F.mse_loss(feats[i], t) for i, t in zip((2, 3, 4), local))
    return loss


def optimise_pixels(
    encoder: Callable[[torch.Tensor], Sequence[torch.Tensor]],
    start: torch.Tensor,
    loss_fn: Callable[[Sequence[torch.Tensor]], torch.Tensor],
    steps: int,
    lr: float,
) -> torch.Tensor:
    """Adam on the pixels of ``start`` (B, 3, H, W) in [0, 1] for ``steps`` steps of ``loss_fn(encoder(x))``,
    clamped to [0, 1] after each step -> the optimised image (detached). Gradients are on even inside
    ``torch.no_grad``; ``start`` and every tensor ``loss_fn`` uses must be normal tensors, not inference
    tensors (made outside ``torch.inference_mode``, or cloned there with it disabled: :func:`clone_tree`)."""
    with torch.inference_mode(False), torch.enable_grad():
        x = start.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss_fn(encoder(x)).backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(0, 1)
        return x.detach()


def clone_tree(obj: Any) -> Any:
    """Copy tensors made under inference mode (nested in lists, tuples, dataclasses) so autograd may
    use them as constants."""
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone_tree(o) for o in obj)
    if hasattr(obj, "__dataclass_fields__"):
        return type(obj)(**{k: clone_tree(getattr(obj, k)) for k in obj.__dataclass_fields__})
    return obj


@dataclass
class RefineState:
    """A style prepared for :class:`RefinedMethod`: the base method's state and the style's VGG16
    (mean, std) at relu1_1..relu5_1, each (1, C, 1, 1)."""

    base: Any
    stats: Stats


class RefinedMethod:
    """A feed-forward style method followed by ``steps`` of pixel optimisation (``--refine``).

    ``base``: any style method; ``encoder``: the loss network (the ImageNet VGG16). The start is the
    base output for the content padded to :data:`~dynast_cli.ops.PAD_MULTIPLE` (as every method sees
    it); the objective is :func:`style_objective` with the style statistics (blended over the styles with
    ``mix``, and moved toward the content's by ``alpha`` like the features) and the content
    term, at a working size of long side ``max_side`` at most (the change is upsampled to full size);
    the result is cropped back to the content's size.
    """

    def __init__(self, base: Any, encoder: Any, steps: int, lr: float = REFINE_LR,
                 style_weight: float = REFINE_STYLE_WEIGHT, content_weight: float = REFINE_CONTENT_WEIGHT,
                 max_side: int = REFINE_MAX_SIDE):
        if steps < 0:
            raise ValueError(f"refinement steps must be >= 0, got {steps}")
        self.base, self.encoder, self.steps, self.lr = base, encoder, steps, lr
        self.style_weight, self.content_weight, self.max_side = style_weight, content_weight, max_side
        self.name = getattr(base, "name", type(base).__name__)

    def prepare_style(self, style: torch.Tensor) -> RefineState:
        return RefineState(self.base.prepare_style(style), [calc_mean_std(f) for f in self.encoder(style)])

    def stylize(self, content: torch.Tensor, states: Sequence[RefineState], mix: Sequence[float] | None = None,
                alpha: float = 1.0) -> torch.Tensor:
        """content (B, 3, H, W) in [0, 1] -> the base output refined, (B, 3, H, W) in [0, 1]."""
        content, hw = pad_to_multiple(content)
        return finish_image(self._refine(content, states, mix, alpha), hw)

    def _refine(self, content: torch.Tensor, states: Sequence[RefineState], mix: Sequence[float] | None,
                alpha: float) -> torch.Tensor:
        out = self.base.stylize(content, [s.base for s in states], mix, alpha).clamp(0, 1)
        if self.steps == 0:
            return out
        weights = mix_weights(None, len(states)) if mix is None else mix
        with torch.inference_mode(False):  # the pipeline runs methods under inference mode
            size = fit_size(*out.shape[-2:], max_size=self.max_side)
            small_out, small_content = clone_tree(resize(out, size)), clone_tree(resize(content, size))
            with torch.no_grad():
                content_feats = self.encoder(small_content)
            stats = blend_stats([clone_tree(s.stats) for s in states], weights)
            stats = toward(stats, [calc_mean_std(f) for f in content_feats], alpha)

            def loss_fn(feats: Sequence[torch.Tensor]) -> torch.Tensor:
                return style_objective(feats, stats, content_feats, self.style_weight, self.content_weight)

            refined = optimise_pixels(self.encoder, small_out, loss_fn, self.steps, self.lr)
            if refined.shape[-2:] == out.shape[-2:]:
                return refined
            change = F.interpolate(refined - small_out, size=out.shape[-2:], mode="bilinear", align_corners=False)
            return (out.clone() + change).clamp(0, 1)


def with_refinement(method: Any, steps: int, device: torch.device, vgg: Any = None) -> Any:
    """``method`` wrapped in :class:`RefinedMethod` (ImageNet VGG16 loss network) when ``steps`` > 0."""
    if steps <= 0:
        return method
    return RefinedMethod(method, base.vgg16(device, vgg), steps)
