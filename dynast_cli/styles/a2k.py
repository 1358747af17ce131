"""``--method a2k``: StyA2K all-to-key attention (Zhu et al., ICCV 2023).

The model is :class:`~dynast_cli.models.stya2k.StyA2KModel`. ``--weights``: by default (and ``none``)
the official parameter-free A2K on the universal decoder (each level the mean of the distributed and
progressive attentions, AdaIN-matched to the style: the official residual sum is off that decoder's
input scale); a decoder file: the same with that decoder; a ``stya2k`` file: a converted official
checkpoint or a model trained by ``dynast train style --method a2k``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dynast_cli.memory import FLOAT, level_sizes
from dynast_cli.models.stya2k import StyA2KModel
from dynast_cli.styles import base
from dynast_cli.styles.registry import MemoryProfile, Training, register_method


def style_bytes(method: Any, style_hw: tuple[int, int], caps: Any = None) -> int:
    """One prepared style: projected key and value maps plus their block summaries at relu3_1/4_1/5_1."""
    return FLOAT * sum(2 * c * n + 2 * c * -(-n // 16) for c, n in zip((256, 512, 512), level_sizes(style_hw)))


@register_method(
    "a2k", "StyA2K all-to-key attention (parameter-free + universal decoder, or --weights: learned)",
    title="StyA2K",
    # measured 1142 B/px (docs/bench/calibrate_memory.py), rounded up
    memory=MemoryProfile(bytes_per_pixel=1200.0, style_bytes=style_bytes, tile="elements"),
    training=Training("attention", model=StyA2KModel, export="stya2k_vgg16", options=("init", "content_weight")),
)
class StyA2KMethod(base.ModelMethod):
    """StyA2K through the one style-method path; ``tile``: score elements per attention chunk."""

    model: StyA2KModel

    @classmethod
    def build(cls, weights: str | Path | None = None, device: torch.device = torch.device("cpu"),
              vgg: str | Path | None = None) -> StyA2KMethod:
        # residual=False: the official parameter-free Z = c + 2 attentions is off the decoder's input scale
        model = base.learned_or_parameter_free(
            "stya2k", base.resolve_weights(weights, cls.spec.default_weights), device, vgg,
            lambda encoder, decoder: StyA2KModel(encoder, learned=False, decoder=decoder, residual=False))
        return cls(model)

    @property
    def tile(self) -> int:
        return self.model.chunk_elements

    @tile.setter
    def tile(self, elements: int) -> None:
        self.model.chunk_elements = elements
