"""The universal decoder: VGG16 relu3_1/relu4_1/relu5_1 features -> image.

It is :class:`~dynast_cli.nn.decoders.VGGDecoder` (``skip=True``) trained by ``dynast train style
--method decoder`` to invert frozen ImageNet-VGG16 features, so that parameter-free transforms
(AdaIN, AdaAttN-style attention, all-to-key attention, DynaST-style matching) of those features can
be turned back into images without learned weights. Every such method decodes with
:func:`decode_features`: ``decoder(f4 + nearest_resize(f5), skip=f3)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dynast_cli.nn.decoders import VGGDecoder


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
