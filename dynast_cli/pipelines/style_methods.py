"""The style methods behind ``dynast style --method``; each is registered on the style pipeline.

Feed-forward methods share the frozen ImageNet VGG16 encoder and one *universal decoder* trained
by the project to invert VGG16 features (``weights/decoder_vgg16.safetensors``). The attention
transforms then need no learned weights (AdaAttN*, A2K*, as in the papers' own local losses), and
the learned versions load converted official checkpoints or our trained attention layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from dynast_cli.errors import WeightsError
from dynast_cli.nn.decoders import VGGDecoder
from dynast_cli.nn.norm import adain
from dynast_cli.pipelines.style import register_method

_ENCODERS: dict[tuple[str, str], Any] = {}


def vgg16(device: torch.device, path: str | Path | None = None):
    """The frozen ImageNet VGG16 encoder, fetched once and cached per device."""
    from dynast_cli.models.vgg import load_vgg16

    key = (str(path), str(device))
    if key not in _ENCODERS:
        _ENCODERS[key] = load_vgg16(path, device=device)
    return _ENCODERS[key]


def universal_decoder(device: torch.device, path: str | Path | None = None) -> VGGDecoder:
    """The project's VGG16 decoder (``weights/manifest.json`` entry ``decoder``)."""
    from dynast_cli.weights.io import load_state, load_weights
    from dynast_cli.weights.registry import default_weights

    path = Path(path) if path else default_weights("decoder")
    if path is None:
        raise WeightsError(
            "no trained decoder found in weights/ (train one with `dynast train style --method decoder`, "
            "or use --method optimize, which needs no trained weights)"
        )
    tensors, meta = load_weights(path)
    if meta.get("architecture") != "decoder":
        raise WeightsError(f"holds '{meta.get('architecture')}' weights, not a decoder", path)
    decoder = load_state(VGGDecoder(skip=True), tensors, source=path)
    return decoder.to(device).eval()


def decode(decoder: VGGDecoder, t3: torch.Tensor, t4: torch.Tensor, t5: torch.Tensor) -> torch.Tensor:
    """Transformed relu3_1/4_1/5_1 features -> image, the universal decoder's input convention."""
    cs = t4 + F.interpolate(t5, size=t4.shape[-2:], mode="nearest")
    return decoder(cs, t3).clamp(0, 1)


def blend(features: Sequence[torch.Tensor], mix: Sequence[float]) -> torch.Tensor:
    """Weighted sum of per-style transformed features."""
    out = features[0] * mix[0]
    for f, m in zip(features[1:], mix[1:]):
        out = out + f * m
    return out


class AdaINMethod:
    """Global statistics baseline: AdaIN at relu3_1, relu4_1, relu5_1, then the universal decoder."""

    name = "adain"

    def __init__(self, encoder, decoder: VGGDecoder):
        self.encoder, self.decoder = encoder, decoder

    def prepare_style(self, style: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(style)[2:]

    def stylize(self, content, states, mix, alpha=1.0):
        c_feats = self.encoder(content)[2:]
        levels = []
        for i, c in enumerate(c_feats):
            t = blend([adain(c, s[i]) for s in states], mix)
            levels.append(alpha * t + (1 - alpha) * c)
        return decode(self.decoder, *levels)


@register_method("adain", "AdaIN global mean/std baseline (universal decoder)")
def _adain(weights=None, device=torch.device("cpu"), vgg=None, **_: Any):
    return AdaINMethod(vgg16(device, vgg), universal_decoder(device, weights))
