"""``--method adaattn``: AdaAttN (Liu et al., ICCV 2021), attention-weighted mean and standard deviation.

The model is :class:`~dynast_cli.models.adaattn.AdaAttNModel`. ``--weights``: by default the project's
learned AdaAttN (manifest entry ``adaattn_vgg16``, trained with softmax attention, so used for it only);
``none``: parameter-free ("AdaAttN*", the attention on normalised features) with the universal decoder;
a decoder file: parameter-free with that decoder; an ``adaattn`` file: a converted official checkpoint
(with its own VGG19) or a model trained by ``dynast train style --method adaattn``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dynast_cli.memory import FLOAT, level_sizes
from dynast_cli.models.adaattn import AdaAttNModel
from dynast_cli.styles import base
from dynast_cli.styles.registry import MemoryProfile, Training, register_method

#: Widths of the keys (relu1_1.. concatenated) and values at relu3_1, relu4_1, relu5_1.
KEY_WIDTHS, VALUE_WIDTHS = (448, 960, 1472), (256, 512, 512)


def style_bytes(method: Any, style_hw: tuple[int, int], caps: tuple[int, int] | None = None) -> int:
    """One prepared style: keys + values at relu3_1/4_1/5_1, positions capped by ``caps`` = (relu3_1 cap,
    relu4_1/relu5_1 cap), by default the method's own ``max_sample`` caps."""
    cap3, cap = caps or method.key_caps
    sizes = level_sizes(style_hw)
    return FLOAT * sum((k + v) * min(n, c) for k, v, n, c in zip(KEY_WIDTHS, VALUE_WIDTHS, sizes, (cap3, cap, cap)))


@register_method(
    "adaattn", "AdaAttN attention-weighted mean/std (the project's learned AdaAttN by default; "
    "--weights none: parameter-free with the universal decoder)",
    title="AdaAttN", default_weights="adaattn_vgg16",
    # docs/bench/calibrate_memory.py: 934 B/px in an early fit (980 at 3840x2160); session 12, the learned model,
    # fp32 and bf16 alike: 1511-1558 B/px (1000 estimated 0.70-0.88x the measured peaks at 512-2048 px); 1600
    # estimates them at 1.05-1.14x, and 3840x2160 (12.1 GiB) at 1.07x
    memory=MemoryProfile(bytes_per_pixel=1600.0, style_bytes=style_bytes, tile="elements", cut_keys=True),
    options={"attention": "softmax (the papers') or cosine (the video model's bounded scores)"},
    training=Training("attention", model=AdaAttNModel, export="adaattn_vgg16",
                      options=("init", "content_weight", "video")),
)
class AdaAttNMethod(base.ModelMethod):
    """AdaAttN through the one style-method path; ``tile``: score elements per attention chunk."""

    model: AdaAttNModel

    @classmethod
    def build(cls, weights: str | Path | None = None, device: torch.device = torch.device("cpu"),
              vgg: str | Path | None = None, attention: str = "softmax") -> AdaAttNMethod:
        # the learned default was trained with softmax attention: cosine (the video model) stays parameter-free
        default = cls.spec.default_weights if attention == "softmax" else None
        model = base.learned_or_parameter_free(
            "adaattn", base.resolve_weights(weights, default), device, vgg,
            lambda encoder, decoder: AdaAttNModel(encoder, learned=False, decoder=decoder, attention=attention),
            attention=attention)
        return cls(model)

    @property
    def tile(self) -> int:
        return self.model.chunk_elements

    @tile.setter
    def tile(self, elements: int) -> None:
        self.model.chunk_elements = elements

    @property
    def key_caps(self) -> tuple[int, int]:
        """Style key positions kept at (relu3_1, relu4_1/relu5_1)."""
        layers = self.model.attention_layers()
        return layers[0].max_sample, layers[1].max_sample

    def limit_keys(self, cap: int) -> None:
        """Keep at most ``cap`` style key positions at every level (``--max-memory``)."""
        layers = self.model.attention_layers()
        layers[0].max_sample = min(layers[0].max_sample, cap)
        for layer in layers[1:]:
            layer.max_sample = cap
