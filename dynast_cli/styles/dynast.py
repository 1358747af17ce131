"""``--method dynast`` (the default): DynaST coarse-to-fine sparse matching for style transfer.

The model is :class:`~dynast_cli.models.dynast_style.DynastStyleModel` on the frozen VGG16 encoder,
decoded by the project's universal decoder or its own trained decoder; contents larger than 512 px are
painted at 512 px and upsampled (``--work-size``). ``--weights`` chooses:

- default: the model installed in the registry (manifest entry ``dynast_style_vgg16``: the matching with
  every match kept, temperature 0.02, feature warping 0.5, a texture seed of 0.1 and the relu3_1 output
  re-normalised to the style's channel statistics, and its own decoder, the universal decoder fine-tuned
  for that transform by ``--train-decoder``), or the parameter-free model when none is installed;
- a ``dynast_style`` file: its learned prune mask (``dynast_prune_vgg16``) and/or its own decoder
  (``dynast train style --method dynast --train-decoder``), or its configuration alone;
- ``none``: the parameter-free model (every match kept);
- a ``decoder`` file: the parameter-free model with that decoder.

``attention`` (the option ``dynast video --attention`` reaches): ``softmax`` (default, what ``dynast style``
runs) or ``cosine``, the temporal variant ``dynast video`` runs by default: the same matching on cosine
similarities, but a softer softmax over them (temperature :data:`VIDEO_SMOOTH` instead of the weights'
0.02), more matches carried from level to level (:data:`VIDEO_TOP_K` instead of 4), feature warping
:data:`VIDEO_WARP` for a model file (the image default's 0.5 flickers more; the parameter-free model keeps
its 0) and no texture seed, so that a small change of a frame moves the attention a little instead of
switching its near-argmax to another style patch (and no seed fixed to the screen that would not move
with the picture). Nothing is carried from frame to frame: every frame is computed on its own (a video
split into parts gives the same pixels). Chosen on real clips in ``docs/bench/video_default_s7.md``; ``docs/bench/style_default_s8.md``
measured the image default's warping 0.5 there (24-37% higher warping error), hence :data:`VIDEO_WARP`.
The re-normalisation of the default's file (``renorm``, session 10) applies to video too: on the same clips it
brought the frames 16-28% nearer the style's palette and 0.5-7% nearer its texture for a 15-22% higher
warping error, still 2.8-4.7x below the peer's (``docs/bench/style_default_s10.md``).

The temporal variant decodes with the universal decoder, also for a file with its own decoder (the default's,
fine-tuned in session 11 for the image matching): on cutBunny x Starry Night the fine-tuned decoder raised the
video default's warping error from 1.107e-3 to 1.643e-3 and its texture distance from 0.739 to 0.827
(``docs/bench/style_default_s11.md``).

The texture seed (``noise``, :func:`~dynast_cli.models.dynast_style.texture_seed`) is added to the padded
content in :meth:`DynastMethod.prepare_content`, scaled by ``--alpha`` (alpha 0 encodes the unseeded content).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from dynast_cli.errors import UsageError
from dynast_cli.memory import FLOAT, level_sizes, padded, query_bytes
from dynast_cli.models.dynast_style import ARCHITECTURE, DynastStyleModel, texture_seed
from dynast_cli.models.vgg import TRANSFORM_LEVELS
from dynast_cli.styles import base
from dynast_cli.styles.registry import MemoryProfile, Training, register_method

#: ``attention`` values: ``softmax`` (the image default) and ``cosine`` (the temporal variant for video).
ATTENTIONS = ("softmax", "cosine")
#: The temporal variant (``attention="cosine"``): softmax temperature on the cosine similarities, matches
#: carried from level to level and, for a model file, feature warping (docs/bench/video_default_s7.md); it
#: adds no texture seed.
VIDEO_SMOOTH, VIDEO_TOP_K, VIDEO_WARP = 0.05, 16, 0.75
#: Matches carried from level to level by the image default.
TOP_K = 4


def style_bytes(method: Any, style_hw: tuple[int, int], caps: Any = None) -> int:
    """One prepared style (padded to a multiple of 16): keys + (feature, feature^2) moments per level."""
    return FLOAT * sum(3 * c * n for c, n in zip((256, 512, 512), level_sizes(padded(style_hw))))


def query_cost(method: Any, style_hws: Sequence[tuple[int, int]]) -> int:
    """Bytes per query position of an attention chunk: the dense matching at relu4_1 over the largest
    style, or the sparse candidates (5 x top-k) below it."""
    coarse = max(level_sizes(padded(s))[1] for s in style_hws)
    return query_bytes(coarse, 5 * method.model.top_k, 256)


@register_method(
    "dynast", "DynaST coarse-to-fine sparse matching (default: the matched style features warped onto the "
    "content, 0.5, with a texture seed and relu3_1 re-normalised to the style, on a decoder fine-tuned for it, "
    "painted at 512 px; --weights none: the "
    "AdaAttN transform of every match)",
    # no refinement: it optimised the very VGG statistics it was judged by (issue #16); the working size is
    # the one the default's settings were chosen at (docs/bench/style_default_s6.md)
    title="DynaST", default_weights="dynast_style_vgg16", refine=0, work_size=512,
    # docs/bench/calibrate_memory.py, session 12: fits of 1099 and 1302 B/px in two runs; 1400 keeps every
    # calibrated size (512-1440 px) estimated 1.06-1.09x its measured peak (1100 was 0.85x)
    memory=MemoryProfile(bytes_per_pixel=1400.0, style_bytes=style_bytes, tile="queries", query_bytes=query_cost),
    options={"top_k": f"matches carried from level to level ({TOP_K}; the video variant: {VIDEO_TOP_K})",
             "coarse": "where the dense matching happens: relu4_1 (default) or relu5_1",
             "attention": f"softmax (default: the image matching) or cosine (the video variant: temperature "
             f"{VIDEO_SMOOTH}, top-k {VIDEO_TOP_K}, warping {VIDEO_WARP}, no texture seed; steadier from frame "
             "to frame)"},
    training=Training("prune_mask", options=("train_decoder", "locality"),
                      note="the learned DynaST prune mask; frozen universal decoder"),
)
class DynastMethod(base.ModelMethod):
    """DynaST matching through the one style-method path; ``tile``: query positions per attention chunk."""

    model: DynastStyleModel
    content_levels = TRANSFORM_LEVELS  # the matching and the transform read relu3_1..relu5_1 only

    @classmethod
    def build(cls, weights: str | Path | None = None, device: torch.device = torch.device("cpu"),
              vgg: str | Path | None = None, top_k: int | None = None, coarse: str = "relu4_1",
              attention: str = "softmax") -> DynastMethod:
        from dynast_cli.weights.io import read_metadata, tensor_names

        if attention not in ATTENTIONS:
            raise UsageError(f"unknown attention '{attention}' for dynast (choose from {', '.join(ATTENTIONS)})")
        video = attention == "cosine"
        top_k = top_k if top_k is not None else VIDEO_TOP_K if video else TOP_K
        # the temporal variant's softer temperature and no texture seed replace the weights' settings (and, for a
        # model file, its warping: VIDEO_WARP)
        video_options = {"smooth": VIDEO_SMOOTH, "noise": 0.0} if video else {}

        weights = base.resolve_weights(weights, cls.spec.default_weights)
        is_model = weights is not None and read_metadata(weights).get("architecture") == ARCHITECTURE
        decoder_path = None if is_model else weights  # a decoder file (the loader checks it)
        encoder = base.vgg16(device, vgg)
        if not is_model:
            model = DynastStyleModel(encoder, base.universal_decoder(device, decoder_path), top_k=top_k, coarse=coarse,
                                     **video_options)
            return cls(model.to(device).eval())
        from dynast_cli.weights.build import build_model

        # a file with its own decoder (the default weights) needs no universal decoder loaded beside it
        own_decoder = any(name.startswith("decoder.") for name in tensor_names(weights))
        decoder = None if own_decoder else base.universal_decoder(device)
        if video:  # session 7's warping; the file's re-normalisation stays (docs/bench/style_default_s10.md)
            video_options["warp"] = VIDEO_WARP
        model = build_model(weights, ARCHITECTURE, device, encoder=encoder, decoder=decoder, top_k=top_k, coarse=coarse,
                            **video_options)
        if video and own_decoder:
            # a file's own decoder is fine-tuned for the image matching; on the temporal variant's features the
            # default's made frames less steady and further from the style's texture (see the module docstring)
            model.decoder = base.universal_decoder(device)
        base.inference_layout(model.decoder, device)  # its own decoder too: channels-last (and bf16 where chosen)
        return cls(model)

    def prepare_content(self, content: torch.Tensor, alpha: float) -> torch.Tensor:
        """The texture seed of the model's ``noise`` (scaled by ``alpha``) added to the padded content."""
        return texture_seed(content, self.model.noise * alpha)

    @property
    def tile(self) -> int:
        return self.model.chunk

    @tile.setter
    def tile(self, queries: int) -> None:
        self.model.chunk = queries
