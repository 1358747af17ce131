"""``dynast style --method dynast``: DynaST coarse-to-fine matching for style transfer.

:class:`~dynast_cli.models.dynast_style.DynastStyleModel` on the frozen VGG16 encoder, decoded by the
project's universal decoder or its own trained decoder. ``--weights`` chooses:

- default: the model installed in the registry (manifest entry ``dynast_style_vgg16``: a configuration-only
  file, the matching with every match kept, temperature 0.02 and feature warping 0.75 on the universal
  decoder), or the parameter-free model when none is installed;
- a ``dynast_style`` file: its learned prune mask (``dynast_prune_vgg16``) and/or its own decoder
  (``dynast train style --method dynast --train-decoder``), or its configuration alone;
- ``none``: the parameter-free model (every match kept);
- a ``decoder`` file: the parameter-free model with that decoder.
"""

from __future__ import annotations

from typing import Any

import torch

from dynast_cli.models.dynast_style import ARCHITECTURE, DynastStyleModel, load_dynast_style
from dynast_cli.pipelines.style import register_method
from dynast_cli.pipelines.style_methods import inference_layout, universal_decoder, vgg16

#: ``--weights`` value selecting the parameter-free model.
PARAMETER_FREE = "none"


def _prune_weights(weights) -> tuple[Any, Any]:
    """``--weights`` -> (learned prune mask file or None, decoder file or None)."""
    from dynast_cli.weights.io import read_metadata
    from dynast_cli.weights.registry import default_weights

    if weights is None:
        return default_weights("dynast"), None
    if str(weights).lower() == PARAMETER_FREE:
        return None, None
    if read_metadata(weights).get("architecture") == ARCHITECTURE:
        return weights, None
    return None, weights  # a decoder file (load_universal_decoder checks it)


@register_method("dynast", "DynaST coarse-to-fine sparse matching, AdaAttN transform on the matches "
                 "(default: the matched style features warped onto the content, 0.75, on the universal decoder; "
                 "--weights none: parameter-free with the universal decoder)")
def _dynast(
    weights=None, device=torch.device("cpu"), vgg=None, top_k: int = 4, coarse: str = "relu4_1", **_: Any
) -> DynastStyleModel:
    from dynast_cli.weights.io import tensor_names

    prune, decoder_path = _prune_weights(weights)
    encoder = vgg16(device, vgg)
    if prune is None:
        model = DynastStyleModel(encoder, universal_decoder(device, decoder_path), top_k=top_k, coarse=coarse)
        return model.to(device).eval()
    # a file with its own decoder (the default weights) needs no universal decoder loaded beside it
    own_decoder = any(name.startswith("decoder.") for name in tensor_names(prune))
    decoder = None if own_decoder else universal_decoder(device, decoder_path)
    model = load_dynast_style(prune, encoder, decoder, device, top_k=top_k, coarse=coarse)
    inference_layout(model.decoder)  # its own decoder too runs channels-last, like every inference decoder
    return model
