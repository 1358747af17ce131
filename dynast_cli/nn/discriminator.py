"""Multiscale PatchGAN discriminator, as the official DynaST / CoCosNet / SPADE ``MultiscaleDiscriminator``.

``num_d`` copies of an ``n_layers``-layer PatchGAN look at the input at full, 1/2, 1/4 ... resolution
(3x3 average pooling, stride 2, between them). Each returns its intermediate activations and, last,
its patch logits, so the generator can be trained with the hinge loss on the logits and with GAN
feature matching on the activations. The convolutions after the first are spectrally normalised and
followed by an affine-free instance norm and LeakyReLU(0.2) (the official ``spectralinstance``).
The official class also builds an unused segmentation decoder (``dec``); it is left out here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

KERNEL = 4
PADDING = 2  # ceil((4 - 1) / 2), as the official code


class NLayerDiscriminator(nn.Module):
    """PatchGAN: conv(s2) + ``n_layers - 1`` spectral-norm convs (the last with stride 1) + a 1-channel conv.

    ``forward(x (B, input_nc, H, W)) -> [activation_1, ..., activation_n, logits (B, 1, h, w)]``.
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 4):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(input_nc, ndf, KERNEL, stride=2, padding=PADDING), nn.LeakyReLU(0.2))
        ]
        nf = ndf
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            conv = spectral_norm(nn.Conv2d(nf_prev, nf, KERNEL, stride=stride, padding=PADDING))
            layers.append(nn.Sequential(conv, nn.InstanceNorm2d(nf), nn.LeakyReLU(0.2)))
        layers.append(nn.Conv2d(nf, 1, KERNEL, stride=1, padding=PADDING))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return outputs


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs on successively halved inputs.

    ``forward(x (B, input_nc, H, W)) -> [[activations..., logits] for each scale]`` (full scale first).
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 4, num_d: int = 2):
        super().__init__()
        self.scales = nn.ModuleList(NLayerDiscriminator(input_nc, ndf, n_layers) for _ in range(num_d))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for i, discriminator in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
            results.append(discriminator(x))
        return results
