"""The one path every style method runs, and the parts the methods share.

:meth:`StyleMethod.stylize`::

    pad the content to a multiple of 16 -> encode (VGG relu1_1..relu5_1)
    -> transform relu3_1, relu4_1, relu5_1 once per style (the method's own step)
    -> blend the styles with the mix weights, then move toward the content by alpha (once)
    -> decode (the universal decoder, or the method's own) -> crop to the content's size, clamp to [0, 1]

A method supplies ``prepare_style`` (a style encoded once: reused for every content and video
frame), ``transform(feats, state)`` and, if it has its own decoder, ``decode(levels)``. Shared parts:
the frozen ImageNet VGG16 encoder (:func:`vgg16`, cached per device), the project's universal decoder
(:func:`universal_decoder`), their inference layout, and :func:`learned_or_parameter_free` (the
``--weights`` rule of the attention methods). Tests replace :func:`vgg16` and :func:`universal_decoder`
here with small stand-ins: the method modules call them through this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import nn

from dynast_cli.models.decoder import decode_features
from dynast_cli.models.vgg import TRANSFORM_LEVELS
from dynast_cli.ops import finish_image, mix_levels, mix_weights, pad_to_multiple
from dynast_cli.styles.registry import MethodSpec

#: ``--weights`` value selecting a method's parameter-free model (with the universal decoder).
PARAMETER_FREE = "none"

#: Convolution weights of the inference encoder/decoder in channels-last layout: measured on a shared
#: 2-core CPU (adaattn, 1 thread, interleaved runs) 1.15x faster end to end at 512 and 1024 px with the
#: same peak memory; outputs differ by float rounding only (< 2e-4 on [0, 1] images).
CHANNELS_LAST = True

_ENCODERS: dict[tuple[str, str], Any] = {}


def inference_layout(module: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """``module`` (in place) with its conv weights channels-last when :data:`CHANNELS_LAST`, and its
    convolutions in bf16 where :func:`~dynast_cli.runtime.inference_precision` says so for ``device``
    (``--precision``; by default on CPUs with native bfloat16: measured 3.8x faster for the VGG16
    encoder at 512 px on this AMX CPU; the matching and everything between encoder and decoder stay fp32)."""
    from dynast_cli.runtime import inference_precision, run_in_bf16

    if CHANNELS_LAST:
        module = module.to(memory_format=torch.channels_last)
    if device is not None and inference_precision(device) == "bf16" and getattr(module, "precision", None) != "bf16":
        run_in_bf16(module, device)
    return module


def vgg16(device: torch.device, path: str | Path | None = None) -> nn.Module:
    """The frozen ImageNet VGG16 encoder, fetched once and cached per device and precision."""
    from dynast_cli.runtime import inference_precision
    from dynast_cli.weights.build import load_vgg16

    key = (str(path), str(device), inference_precision(device))
    if key not in _ENCODERS:
        _ENCODERS[key] = inference_layout(load_vgg16(path, device=device), device)
    return _ENCODERS[key]


def universal_decoder(device: torch.device, path: str | Path | None = None) -> nn.Module:
    """The project's VGG16 decoder (``weights/manifest.json``), see :mod:`dynast_cli.models.decoder`."""
    from dynast_cli.weights.build import load_universal_decoder

    return inference_layout(load_universal_decoder(path, device=device), device)


def resolve_weights(weights: str | Path | None, default_entry: str | None) -> str | Path | None:
    """``--weights`` -> a file or None: None gives the installed manifest entry ``default_entry`` (None
    when it is not installed), ``"none"`` (any case) gives None (the parameter-free model)."""
    from dynast_cli.weights.registry import installed

    if weights is None:
        return installed(default_entry) if default_entry else None
    return None if str(weights).lower() == PARAMETER_FREE else weights


def learned_or_parameter_free(
    architecture: str, weights: str | Path | None, device: torch.device, vgg: str | Path | None,
    parameter_free: Callable[[nn.Module, nn.Module], nn.Module], **options: Any,
) -> nn.Module:
    """An attention model (AdaAttN, StyA2K) from ``weights`` (already resolved, :func:`resolve_weights`):
    a model file of ``architecture`` (converted official checkpoint with its own VGG19, or trained by
    ``dynast train style`` on the ImageNet VGG16), or, for a decoder file or None,
    ``parameter_free(encoder, decoder)`` on the VGG16 with that decoder (default: the universal one)."""
    from dynast_cli.errors import WeightsError
    from dynast_cli.weights.io import config_from_metadata, read_metadata, tensor_names

    meta = read_metadata(weights) if weights else {}
    arch = meta.get("architecture")
    if arch not in (None, "decoder"):
        if arch != architecture:
            raise WeightsError(f"holds '{arch}' weights, but this method needs '{architecture}' (or a decoder)",
                               weights)
        from dynast_cli.weights.build import build_model

        own_encoder = "encoder.0.weight" in tensor_names(weights)
        if not own_encoder and config_from_metadata(meta).get("encoder") != "vgg16":
            # an official checkpoint converted without --vgg: its decoder was trained on the official VGG19,
            # and the ImageNet VGG16 would give other (wrong) outputs without a word
            raise WeightsError("holds no encoder: an official checkpoint needs its VGG19; convert it again with "
                               "--vgg vgg_normalised.pth", weights)
        encoder = None if own_encoder else vgg16(device, vgg)
        return build_model(weights, architecture, device, encoder=encoder, **options)
    return parameter_free(vgg16(device, vgg), universal_decoder(device, weights)).to(device).eval()


class StyleMethod:
    """Base of the registered style methods: the one path of the module docstring.

    Subclasses set ``encoder`` (and ``decoder`` when :meth:`decode` is not their own) and implement
    :meth:`prepare_style` and :meth:`transform`; ``spec`` is set by
    :func:`~dynast_cli.styles.registry.register_method`. ``tile`` (``--max-memory``): the attention
    working set the method's :class:`~dynast_cli.styles.registry.MemoryProfile` names, None without one.
    """

    spec: ClassVar[MethodSpec]
    encoder: nn.Module
    decoder: nn.Module | None = None
    tile: int | None = None
    #: The encoder levels (0 = relu1_1 .. 4 = relu5_1) that :meth:`transform` reads of the content; the others
    #: are not kept (``VGGEncoder(keep=...)``: less memory). None: all five.
    content_levels: ClassVar[tuple[int, ...] | None] = None

    @property
    def name(self) -> str:
        return self.spec.name

    def prepare_style(self, style: torch.Tensor) -> Any:
        """style (1, 3, h, w) in [0, 1] -> what :meth:`transform` needs of it (computed once per style)."""
        raise NotImplementedError

    def transform(self, feats: Sequence[torch.Tensor], state: Any) -> list[torch.Tensor | None]:
        """Content features [relu1_1 .. relu5_1] and one prepared style -> [relu3_1, relu4_1, relu5_1]
        transformed (None for a level the method does not produce)."""
        raise NotImplementedError

    def prepare_content(self, content: torch.Tensor, alpha: float) -> torch.Tensor:
        """The padded content (B, 3, H, W) in [0, 1] -> what the encoder sees (the same here; ``dynast`` seeds
        texture). It acts after padding, so a content padded beforehand (the refinement) gets the same."""
        return content

    def decode(self, levels: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Transformed [relu3_1, relu4_1, relu5_1] -> image (unclamped): the universal decoder's convention."""
        return decode_features(self.decoder, *levels)

    def stylize(self, content: torch.Tensor, states: Sequence[Any], mix: Sequence[float] | None = None,
                alpha: float = 1.0) -> torch.Tensor:
        """content (B, 3, H, W) in [0, 1], any size -> stylised (B, 3, H, W) in [0, 1].

        ``mix``: one weight per state, summing to 1 (:func:`dynast_cli.ops.mix_weights`, which
        :func:`dynast_cli.pipelines.style.stylize` applies to the user's weights); None: equal.
        ``alpha``: the style strength."""
        weights = mix_weights(None, len(states)) if mix is None else mix
        padded, size = pad_to_multiple(content)
        x = self.prepare_content(padded, alpha)
        feats = self.encoder(x) if self.content_levels is None else self.encoder(x, keep=self.content_levels)
        levels = mix_levels([self.transform(feats, state) for state in states],
                            [feats[i] for i in TRANSFORM_LEVELS], weights, alpha)
        return finish_image(self.decode(levels), size)


class ModelMethod(StyleMethod):
    """A style method around one network (``model``: an nn.Module with ``encoder``, ``decoder``,
    ``prepare_style``, ``transform`` and ``decode``): the attention methods. ``encoder``/``decoder`` are
    the model's own (``--compile`` replaces them there)."""

    def __init__(self, model: nn.Module):
        self.model = model

    @property
    def encoder(self) -> nn.Module:
        return self.model.encoder

    @encoder.setter
    def encoder(self, module: nn.Module) -> None:
        self.model.encoder = module

    @property
    def decoder(self) -> nn.Module:
        return self.model.decoder

    @decoder.setter
    def decoder(self, module: nn.Module) -> None:
        self.model.decoder = module

    def prepare_style(self, style: torch.Tensor) -> Any:
        return self.model.prepare_style(style)

    def transform(self, feats: Sequence[torch.Tensor], state: Any) -> list[torch.Tensor | None]:
        return self.model.transform(feats, state)

    def decode(self, levels: Sequence[torch.Tensor | None]) -> torch.Tensor:
        return self.model.decode(levels)
