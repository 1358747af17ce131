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

from dynast_cli.nn.norm import adain
from dynast_cli.pipelines.style import register_method

_ENCODERS: dict[tuple[str, str], Any] = {}

#: Convolution weights of the inference encoder/decoder in channels-last layout: measured on a shared
#: 2-core CPU (adaattn, 1 thread, interleaved runs) 1.15x faster end to end at 512 and 1024 px with the
#: same peak memory; outputs differ by float rounding only (< 2e-4 on [0, 1] images).
CHANNELS_LAST = True


def inference_layout(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with its conv weights channels-last when :data:`CHANNELS_LAST` (in place)."""
    return module.to(memory_format=torch.channels_last) if CHANNELS_LAST else module


def vgg16(device: torch.device, path: str | Path | None = None):
    """The frozen ImageNet VGG16 encoder, fetched once and cached per device."""
    from dynast_cli.models.vgg import load_vgg16

    key = (str(path), str(device))
    if key not in _ENCODERS:
        _ENCODERS[key] = inference_layout(load_vgg16(path, device=device))
    return _ENCODERS[key]


def universal_decoder(device: torch.device, path: str | Path | None = None):
    """The project's VGG16 decoder (``weights/manifest.json``), see :mod:`dynast_cli.models.decoder`."""
    from dynast_cli.models.decoder import load_universal_decoder

    return inference_layout(load_universal_decoder(path, device=device))


def decode(decoder, t3: torch.Tensor, t4: torch.Tensor, t5: torch.Tensor) -> torch.Tensor:
    """Transformed relu3_1/4_1/5_1 features -> image in [0, 1] (the universal decoder's convention)."""
    from dynast_cli.models.decoder import decode_features

    return decode_features(decoder, t3, t4, t5).clamp(0, 1)


def blend(features: Sequence[torch.Tensor], mix: Sequence[float]) -> torch.Tensor:
    """Weighted sum of per-style transformed features."""
    out = features[0] * mix[0]
    for f, m in zip(features[1:], mix[1:]):
        out = out + f * m
    return out


class AdaINMethod:
    """Global statistics baseline: AdaIN at relu3_1, relu4_1, relu5_1, then the universal decoder."""

    name = "adain"

    def __init__(self, encoder, decoder):
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


#: ``--weights`` value selecting the parameter-free attention model with the universal decoder.
PARAMETER_FREE = "none"


def _attention_model(kind: str, weights, device, vgg, **options: Any):
    """A learned model from a converted/trained file, or the parameter-free one + universal decoder.

    ``weights``: a model file; a decoder file (parameter-free with that decoder); ``"none"``
    (parameter-free with the universal decoder); None: the installed default of ``kind`` (the
    project's learned AdaAttN, for softmax attention only: it was trained with it), else parameter-free.
    A converted official checkpoint carries its own VGG19 (``encoder.*``); otherwise the ImageNet
    VGG16 encoder is used.
    """
    from dynast_cli.weights.io import read_metadata, tensor_names
    from dynast_cli.weights.registry import default_weights

    if weights is None and options.get("attention", "softmax") == "softmax":
        weights = default_weights(kind)
    elif weights is not None and str(weights).lower() == PARAMETER_FREE:
        weights = None
    arch = read_metadata(weights).get("architecture") if weights else None
    if arch not in (None, "decoder"):
        if arch != kind:
            from dynast_cli.errors import WeightsError

            raise WeightsError(f"holds '{arch}' weights, but this method needs '{kind}' (or a decoder)", weights)
        from dynast_cli.weights.convert import load_style_model

        own_encoder = "encoder.0.weight" in tensor_names(weights)
        encoder = None if own_encoder else vgg16(device, vgg)
        return load_style_model(weights, encoder=encoder, device=device, **options).to(device).eval()
    decoder = universal_decoder(device, weights)
    encoder = vgg16(device, vgg)
    if kind == "adaattn":
        from dynast_cli.models.adaattn import AdaAttNModel

        return AdaAttNModel(encoder, learned=False, decoder=decoder, **options).to(device).eval()
    from dynast_cli.models.stya2k import StyA2KModel

    # residual=False: the official parameter-free Z = c + 2 attentions is off the decoder's input scale
    return StyA2KModel(encoder, learned=False, decoder=decoder, residual=False, **options).to(device).eval()


@register_method("adaattn", "AdaAttN attention-weighted mean/std (the project's learned AdaAttN by default; "
                 "--weights none: parameter-free with the universal decoder)")
def _adaattn(weights=None, device=torch.device("cpu"), vgg=None, attention: str = "softmax", **_: Any):
    return _attention_model("adaattn", weights, device, vgg, attention=attention)


@register_method("a2k", "StyA2K all-to-key attention (parameter-free + universal decoder, or --weights: learned)")
def _a2k(weights=None, device=torch.device("cpu"), vgg=None, **_: Any):
    return _attention_model("stya2k", weights, device, vgg)


class OptimizeMethod:
    """Training-free stylisation by optimising pixels (the quality ceiling; slow).

    The image starts as the content and is optimised with Adam so that its VGG16 features match
    (i) the parameter-free AdaAttN target at relu3_1..relu5_1 (AdaAttN's local feature loss, the
    attention computed on normalised features: the "AdaAttN*" of the paper), (ii) the style's
    global mean/std at relu1_1..relu5_1, and (iii) the content's normalised relu4_1/relu5_1
    (:func:`~dynast_cli.pipelines.refine.style_objective`). ``alpha`` < 1 moves both targets toward the
    content's features.
    """

    name = "optimize"

    def __init__(self, encoder, steps: int = 200, lr: float = 0.02,
                 local_weight: float = 3.0, global_weight: float = 10.0, content_weight: float = 1.0):
        from dynast_cli.models.adaattn import AdaAttNModel

        self.encoder = encoder
        self.attn = AdaAttNModel(encoder, learned=False).eval()
        self.steps, self.lr = steps, lr
        self.weights = (local_weight, global_weight, content_weight)

    def prepare_style(self, style: torch.Tensor):
        from dynast_cli.nn.norm import calc_mean_std

        feats = self.encoder(style)
        return self.attn.prepare_style(style), [calc_mean_std(f) for f in feats]

    def stylize(self, content, states, mix, alpha=1.0):
        from dynast_cli.nn.norm import calc_mean_std
        from dynast_cli.pipelines.refine import blend_stats, clone_tree, optimise_pixels, style_objective, toward

        w_local, w_global, w_content = self.weights
        with torch.inference_mode(False):
            content, states = content.clone(), clone_tree(list(states))
            with torch.no_grad():
                c_feats = self.encoder(content)
                local = self.attn.transform(c_feats, [s[0] for s in states], mix, alpha)
            stats = toward(blend_stats([s[1] for s in states], mix), [calc_mean_std(f) for f in c_feats], alpha)

            def loss_fn(feats):
                return style_objective(feats, stats, c_feats, w_global, w_content, local, w_local)

            return optimise_pixels(self.encoder, content, loss_fn, self.steps, self.lr)


@register_method("optimize", "Pixel optimisation against the AdaAttN* target (no trained weights; slow)")
def _optimize(weights=None, device=torch.device("cpu"), vgg=None, steps: int = 200, **_: Any):
    return OptimizeMethod(vgg16(device, vgg), steps=steps)
