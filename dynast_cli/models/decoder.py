"""The universal decoder: VGG16 relu3_1/relu4_1/relu5_1 features -> image.

It is :class:`~dynast_cli.nn.decoders.VGGDecoder` (``skip=True``) trained by ``dynast train style
--method decoder`` to invert frozen ImageNet-VGG16 features, so that parameter-free transforms
(AdaIN, AdaAttN-style attention, all-to-key attention, DynaST-style matching) of those features can
be turned back into images without learned weights. Every such method decodes with
:func:`decode_features`: ``decoder(f4 + nearest_resize(f5), skip=f3)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from dynast_cli.errors import WeightsError
from dynast_cli.nn.decoders import VGGDecoder
from dynast_cli.weights.io import config_from_metadata, load_state, load_weights


def merge_deep(f4: torch.Tensor, f5: torch.Tensor) -> torch.Tensor:
    """relu4_1-level (B,512,h,w) + relu5_1-level (B,512,h',w') nearest-resized to (h, w)."""
    return f4 + F.interpolate(f5, size=f4.shape[-2:], mode="nearest")


def decode_features(
    decoder: VGGDecoder, f3: torch.Tensor, f4: torch.Tensor, f5: torch.Tensor
) -> torch.Tensor:
    """(relu3_1 (B,256,2h,2w), relu4_1 (B,512,h,w), relu5_1 (B,512,h/2,w/2)) -> image (B,3,4*2h,4*2w).

    Unclamped: training needs the raw output; callers that produce images clamp to [0, 1].
    """
    return decoder(merge_deep(f4, f5), skip=f3)


def load_universal_decoder(path: str | Path | None = None, device: str | torch.device = "cpu") -> VGGDecoder:
    """The universal decoder in eval mode, from ``path`` or the project's default weights
    (``weights/manifest.json`` entry ``decoder_vgg16``, sha256-verified)."""
    from dynast_cli.weights.registry import default_weights

    if path is None:
        path = default_weights("decoder")
        if path is None:
            raise WeightsError("no default universal decoder is installed (train one with `dynast train style`)",
                               "weights/manifest.json")
    tensors, meta = load_weights(path)
    if meta.get("architecture") != "decoder":
        raise WeightsError(f"is a '{meta.get('architecture', 'unknown')}' file, expected a decoder", path)
    decoder = VGGDecoder(**config_from_metadata(meta))
    load_state(decoder, tensors, source=path)
    return decoder.eval().requires_grad_(False).to(device)
