"""The VGG-feature decoder of AdaAttN and StyA2K (official key layout).

``decoder_layer_1``: relu4_1-level features (512 ch) -> 256 ch at 2x. ``decoder_layer_2``: (optionally
concatenated with a 256-ch relu3_1-level skip) -> RGB at 8x the relu4_1 size. Keys match the official
``latest_net_decoder.pth`` files (AdaAttN: ``skip=True`` so ``decoder_layer_2.1`` takes 512 ch;
StyA2K: ``skip=False``). The same class is the project's *universal* decoder, trained to invert VGG16
features so that parameter-free attention transforms need no learned weights.

Unlike the official ``nn.Upsample(scale_factor=2)``, the upsampling here goes to the skip feature's
exact size when one is given, so odd feature sizes work; for even sizes the result is identical.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dynast_cli.nn.pad import ReflectionPad2d


def _conv(cin: int, cout: int, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)]
    return layers + [nn.ReLU()] if relu else layers


class _Up(nn.Module):
    """Nearest 2x upsampling (the official ``nn.Upsample(scale_factor=2, mode='nearest')``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")


class VGGDecoder(nn.Module):
    """relu4_1-level features (+ optional relu3_1 skip) -> image.

    forward(cs (B,512,h,w), skip (B,256,2h,2w) or None) -> (B,3,8h,8w); values roughly in [0,1]
    (no output activation, as in the official code; callers clamp).
    """

    def __init__(self, skip: bool = True):
        super().__init__()
        self.skip = skip
        self.decoder_layer_1 = nn.Sequential(*_conv(512, 256), _Up())
        self.decoder_layer_2 = nn.Sequential(
            *_conv(512 if skip else 256, 256),  # 0-2  (key .1)
            *_conv(256, 256),                   # 3-5  (key .4)
            *_conv(256, 256),                   # 6-8  (key .7)
            *_conv(256, 128),                   # 9-11 (key .10)
            _Up(),                              # 12
            *_conv(128, 128),                   # 13-15 (key .14)
            *_conv(128, 64),                    # 16-18 (key .17)
            _Up(),                              # 19
            *_conv(64, 64),                     # 20-22 (key .21)
            *_conv(64, 3, relu=False),          # 23-24 (key .24)
        )

    def forward(self, cs: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.decoder_layer_1[:-1](cs)
        if skip is not None:
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            if not self.skip:
                raise ValueError("this decoder was built without a skip input")
            x = torch.cat([x, skip], dim=1)
        else:
            x = self.decoder_layer_1[-1](x)
            if self.skip:
                raise ValueError("this decoder needs the relu3_1-level skip feature")
        if torch.is_grad_enabled():
            return self.decoder_layer_2(x)
        for layer in self.decoder_layer_2:  # inference: in-place ReLUs (each acts on a fresh conv output)
            x = torch.relu_(x) if isinstance(layer, nn.ReLU) else layer(x)
        return x
