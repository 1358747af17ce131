"""``dynast style --method dynast``: DynaST coarse-to-fine matching for style transfer.

The parameter-free :class:`~dynast_cli.models.dynast_style.DynastStyleModel` on the frozen VGG16
encoder, decoded by the project's universal decoder (``--weights`` may name another decoder file).
"""

from __future__ import annotations

from typing import Any

import torch

from dynast_cli.models.dynast_style import DynastStyleModel
from dynast_cli.pipelines.style import register_method
from dynast_cli.pipelines.style_methods import universal_decoder, vgg16


@register_method("dynast", "DynaST coarse-to-fine sparse matching, AdaAttN transform on the matches (parameter-free + universal decoder)")
def _dynast(
    weights=None, device=torch.device("cpu"), vgg=None, top_k: int = 4, coarse: str = "relu4_1", **_: Any
) -> DynastStyleModel:
    model = DynastStyleModel(vgg16(device, vgg), universal_decoder(device, weights), top_k=top_k, coarse=coarse)
    return model.to(device).eval()
