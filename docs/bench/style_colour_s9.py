"""Session 9 (issue #16): two colour probes on the session-8 harness (tried, not shipped: style_default_s9.md).

Variants, beside the harness's own (``peer``, ``default``, ``dynast{...}``):

* ``greymatch``: the default, but the matching (queries and keys) sees grey copies of the content and style
  (Rec. 601 luma on all three channels); the values, and the content features of the AdaAttN share, are the
  colour ones. The question: does the content's own hue pick style patches of that hue (a narrow palette)?
* ``colour{sigma=S}``: the default, then a local colour transfer towards the matched style pixels. The style's
  4x4-pixel block moments of YCbCr (mean and mean square, 6 channels on the relu3_1 grid) ride along as
  extra attention values at relu3_1, so every position gets the colour moments of the style pixels it
  matched, through the same sparse attention as its features. Both those and the decoded image's block
  moments are Gaussian-blurred (sigma S cells of 4 px) and upsampled; per YCbCr channel the decoded image
  is moved to the matched local mean and standard deviation (ratio clamped to [0.5, 2]).

Both compute the session-8 default's levels by hand (without session 10's re-normalisation, ``renorm``): their
``default`` rows came from the session-8 default (unchanged in session 9), which the harness now runs as
``dynast{renorm=0:0:0}``.

Run as the harness (``docs/bench/style_default_s8.py``), e.g.::

    python docs/bench/style_colour_s9.py --set val --peer eval/peer --variants 'peer,default,greymatch,colour{sigma=8}'
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from dynast_cli.models.dynast_style import LEVELS, DynastStyle, matching_features, moments_to_mean_std, texture_seed
from dynast_cli.nn.norm import mean_variance_norm
from dynast_cli.ops import PAD_MULTIPLE, finish_image, pad_to_multiple
from dynast_cli.styles import build_method

_spec = importlib.util.spec_from_file_location("style_default_s8", Path(__file__).with_name("style_default_s8.py"))
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

#: RGB -> YCbCr (JPEG's, without the offsets).
YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def to_ycc(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", YCC.to(x), x)


def from_ycc(y: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(YCC).to(y), y)


def grey(x: torch.Tensor) -> torch.Tensor:
    return (x * YCC[0].view(1, 3, 1, 1).to(x)).sum(1, keepdim=True).expand_as(x)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur, normalised at the borders (zero padding divided by the blurred ones)."""
    k = int(2 * round(3 * sigma) + 1)
    t = torch.arange(k, dtype=x.dtype) - k // 2
    g = torch.exp(-t * t / (2 * sigma * sigma))
    g = g / g.sum()

    def blur(y: torch.Tensor) -> torch.Tensor:
        c = y.shape[1]
        y = F.conv2d(F.pad(y, (k // 2, k // 2, 0, 0)), g.view(1, 1, 1, k).repeat(c, 1, 1, 1), groups=c)
        return F.conv2d(F.pad(y, (0, 0, k // 2, k // 2)), g.view(1, 1, k, 1).repeat(c, 1, 1, 1), groups=c)

    return blur(x) / blur(torch.ones_like(x[:, :1]))


def block_moments(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 6, H/4, W/4): 4x4 block means of YCbCr and of its square."""
    y = to_ycc(image)
    return F.avg_pool2d(torch.cat([y, y * y], 1), 4)


def local_mean_std(moments: torch.Tensor, sigma: float, size) -> tuple[torch.Tensor, torch.Tensor]:
    mean, square = F.interpolate(gaussian_blur(moments, sigma), size=size, mode="bilinear",
                                 align_corners=False).chunk(2, 1)
    return mean, (square - mean * mean).clamp_min(1e-6).sqrt()


def probe(kind: str, sigma: float = 8.0):
    method = build_method("dynast")
    model = method.model

    def fn(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        state = model.prepare_style(style)
        padded_style = pad_to_multiple(style, PAD_MULTIPLE)[0]
        if kind == "greymatch":
            keys = model.encoder(grey(padded_style))
            state = DynastStyle(keys=[matching_features(keys[i]) for i in LEVELS], moments=state.moments)
        else:
            state.moments[0] = torch.cat([state.moments[0], block_moments(padded_style)], 1)
        padded, size = pad_to_multiple(content, PAD_MULTIPLE)
        seeded = texture_seed(padded, model.noise)
        feats = model.encoder(seeded)
        matches = model.match(model.encoder(grey(seeded)) if kind == "greymatch" else feats, state)
        levels, colour = [], None
        for j, level in enumerate(LEVELS):
            moments = matches[level].output
            if j == 0 and kind == "colour":
                moments, colour = moments[:, :-6], moments[:, -6:]
            mean, std = moments_to_mean_std(moments)
            local = std * mean_variance_norm(feats[level]) + mean
            levels.append(model.warp * mean + (1 - model.warp) * local)
        decoded = model.decode(levels).clamp(0, 1)
        if colour is not None:
            y = to_ycc(decoded)
            target_mean, target_std = local_mean_std(colour, sigma, y.shape[-2:])
            own_mean, own_std = local_mean_std(block_moments(decoded), sigma, y.shape[-2:])
            decoded = from_ycc((y - own_mean) * (target_std / own_std).clamp(0.5, 2.0) + target_mean)
        return finish_image(decoded, size)

    return fn


_variant = harness.variant


def variant(spec: str):
    if spec == "greymatch":
        return probe("greymatch")
    if found := re.fullmatch(r"colour\{sigma=([0-9.]+)\}", spec):
        return probe("colour", float(found.group(1)))
    return _variant(spec)


harness.variant = variant

if __name__ == "__main__":
    harness.main()
