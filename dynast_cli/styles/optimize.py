"""``--method optimize``: training-free stylisation by optimising pixels (the quality ceiling; slow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from dynast_cli.errors import UsageError
from dynast_cli.models.adaattn import AdaAttNModel
from dynast_cli.models.vgg import TRANSFORM_LEVELS
from dynast_cli.nn.norm import calc_mean_std
from dynast_cli.ops import finish_image, mix_levels, mix_weights, pad_to_multiple
from dynast_cli.styles import base
from dynast_cli.styles.refine import blend_stats, clone_tree, optimise_pixels, style_objective, toward
from dynast_cli.styles.registry import register_method


@register_method(
    "optimize", "Pixel optimisation against the AdaAttN* target (no trained weights; slow)", title="pixel optimisation",
    options={"steps": "Adam steps on the pixels (200)"}, benchmark=False,
)
class OptimizeMethod(base.StyleMethod):
    """Training-free stylisation by optimising pixels.

    The image starts as the content and is optimised with Adam so that its VGG16 features match
    (i) the parameter-free AdaAttN target at relu3_1..relu5_1 (AdaAttN's local feature loss, the
    attention computed on normalised features: the "AdaAttN*" of the paper), (ii) the style's
    global mean/std at relu1_1..relu5_1, and (iii) the content's normalised relu4_1/relu5_1
    (:func:`~dynast_cli.styles.refine.style_objective`). The AdaAttN* targets of several styles are
    mixed, and moved toward the content's features by ``alpha``, as every method's (the base path's
    :func:`~dynast_cli.ops.mix_levels`); the statistics likewise. Instead of a decoder, the pixels.
    """

    def __init__(self, encoder: nn.Module, steps: int = 200, lr: float = 0.02,
                 local_weight: float = 3.0, global_weight: float = 10.0, content_weight: float = 1.0):
        self.encoder = encoder
        self.attn = AdaAttNModel(encoder, learned=False).eval()
        self.steps, self.lr = steps, lr
        self.weights = (local_weight, global_weight, content_weight)

    @classmethod
    def build(cls, weights: str | Path | None = None, device: torch.device = torch.device("cpu"),
              vgg: str | Path | None = None, steps: int = 200) -> OptimizeMethod:
        if weights is not None:  # it was silently ignored
            raise UsageError("--weights: the optimize method has no weights (it optimises the pixels against the "
                             "VGG16 statistics)")
        return cls(base.vgg16(device, vgg), steps=steps)

    def prepare_style(self, style: torch.Tensor):
        feats = self.encoder(style)
        return self.attn.prepare_style(style), [calc_mean_std(f) for f in feats]

    def transform(self, feats: Sequence[torch.Tensor], state: Any) -> list[torch.Tensor]:
        """The AdaAttN* target of one style."""
        return self.attn.transform(feats, state[0])

    def stylize(self, content: torch.Tensor, states: Sequence[Any], mix: Sequence[float] | None = None,
                alpha: float = 1.0) -> torch.Tensor:
        w_local, w_global, w_content = self.weights
        weights = mix_weights(None, len(states)) if mix is None else mix
        padded, size = pad_to_multiple(content)
        with torch.inference_mode(False):
            padded, states = padded.clone(), clone_tree(list(states))
            with torch.no_grad():
                c_feats = self.encoder(padded)
                local = mix_levels([self.transform(c_feats, s) for s in states], [c_feats[i] for i in TRANSFORM_LEVELS],
                                   weights, alpha)
            stats = toward(blend_stats([s[1] for s in states], weights), [calc_mean_std(f) for f in c_feats], alpha)

            def loss_fn(feats):
                return style_objective(feats, stats, c_feats, w_global, w_content, local, w_local)

            return finish_image(optimise_pixels(self.encoder, padded, loss_fn, self.steps, self.lr), size)
