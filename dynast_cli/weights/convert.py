"""Official AdaAttN / StyA2K checkpoints -> one dynast safetensors, and loading it back.

The official repositories save one ``.pth`` per network. The converters read them safely
(``weights_only=True``), check every key and shape against the official layout (a
:class:`~dynast_cli.errors.WeightsError` names the file and the first offending key), and write one
safetensors with the keys under the model's prefixes:

* AdaAttN: ``transformer.`` (latest_net_transformer.pth), ``adaattn_3.`` (latest_net_adaattn_3.pth),
  ``decoder.`` (latest_net_decoder.pth);
* StyA2K: ``a2k.`` (latest_net_A2K.pth), ``transformer.`` (latest_net_transform.pth), ``decoder.``;
* both: optionally ``encoder.`` = the user's ``vgg_normalised.pth`` (VGG19, children up to relu5_1;
  relu5_2 and later are checked, then dropped as unused).

Metadata: ``architecture`` (``adaattn`` / ``stya2k``), ``config`` (the model's constructor
arguments), ``source_sha256`` and ``source_files`` (per role), ``encoder`` (``vgg19_normalised`` or
``none``). :func:`dynast_cli.weights.build.build_model` rebuilds the model from that metadata and loads it strictly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from dynast_cli.errors import WeightsError
from dynast_cli.io.outputs import check_output
from dynast_cli.models.adaattn import AdaAttNLayer, AdaAttNTransformer
from dynast_cli.models.stya2k import BLOCKS, A2KLayer, A2KTransform
from dynast_cli.nn.decoders import VGGDecoder
from dynast_cli.weights.io import load_torch_checkpoint, save_weights, sha256_file

Layout = dict[str, tuple[int, ...]]

#: The official file names, by role.
ADAATTN_FILES = {
    "transformer": "latest_net_transformer.pth",
    "decoder": "latest_net_decoder.pth",
    "adaattn_3": "latest_net_adaattn_3.pth",
}
STYA2K_FILES = {"a2k": "latest_net_A2K.pth", "transform": "latest_net_transform.pth", "decoder": "latest_net_decoder.pth"}
VGG_FILE = "vgg_normalised.pth"


def _layout(build: Callable[[], nn.Module]) -> Layout:
    """Key -> shape of a module's state dict, built without allocating memory."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in build().state_dict().items()}


def vgg19_layout() -> tuple[Layout, Layout]:
    """(required, optional) keys of the official ``vgg_normalised.pth``: convs up to relu5_1 are
    required; relu5_2 .. relu5_4 (children 45, 48, 51) are allowed and unused."""
    from dynast_cli.models.vgg import vgg19_encoder

    optional: Layout = {}
    for index in (45, 48, 51):
        optional[f"{index}.weight"], optional[f"{index}.bias"] = (512, 512, 3, 3), (512,)
    return _layout(vgg19_encoder), optional


def check_layout(
    tensors: Mapping[str, torch.Tensor], layout: Layout, path: str | Path, what: str, optional: Layout | None = None
) -> None:
    """Raise WeightsError naming ``path`` and the first missing, mis-shaped or unexpected key."""
    optional = optional or {}
    hint = f"not an official {what} checkpoint"
    for key, shape in layout.items():
        if key not in tensors:
            raise WeightsError(f"missing key '{key}' ({hint})", path)
    for key, t in tensors.items():
        shape = layout.get(key, optional.get(key))
        if shape is None:
            raise WeightsError(f"unexpected key '{key}' ({hint})", path)
        if tuple(t.shape) != shape:
            raise WeightsError(f"key '{key}' has shape {tuple(t.shape)}, expected {shape} ({hint})", path)


def _read(path: str | Path, layout: Layout, what: str, optional: Layout | None = None) -> dict[str, torch.Tensor]:
    tensors = load_torch_checkpoint(path)
    check_layout(tensors, layout, path, what, optional)
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def _with_vgg(
    tensors: dict[str, torch.Tensor], sources: dict[str, Path], vgg: str | Path | None
) -> str:
    """Add ``encoder.*`` from a user's vgg_normalised.pth (relu1_1..relu5_1 part); returns the encoder name."""
    if vgg is None:
        return "none"
    required, optional = vgg19_layout()
    sd = _read(vgg, required, "VGG19 vgg_normalised.pth", optional)
    tensors.update({f"encoder.{k}": sd[k] for k in required})
    sources["vgg"] = Path(vgg)
    return "vgg19_normalised"


def _write(
    out: str | Path, architecture: str, config: dict[str, Any], tensors: dict[str, torch.Tensor],
    sources: dict[str, Path], encoder: str,
) -> Path:
    metadata = {
        "architecture": architecture,
        "config": config,
        "encoder": encoder,
        "source_sha256": {role: sha256_file(p) for role, p in sources.items()},
        "source_files": {role: Path(p).name for role, p in sources.items()},
    }
    return save_weights(tensors, out, metadata)


def convert_adaattn(
    transformer: str | Path,
    decoder: str | Path,
    adaattn_3: str | Path,
    vgg: str | Path | None = None,
    *,
    out: str | Path,
) -> Path:
    """Official AdaAttN ``latest_net_{transformer,decoder,adaattn_3}.pth`` (+ optional
    ``vgg_normalised.pth``) -> one safetensors at ``out`` (replaced if it exists); returns ``out``."""
    check_output(out, overwrite=True)  # its folder can be written, before the checkpoints are read
    parts = {
        "transformer": _read(
            transformer, _layout(AdaAttNTransformer), "AdaAttN transformer (latest_net_transformer.pth)"
        ),
        "adaattn_3": _read(
            adaattn_3, _layout(lambda: AdaAttNLayer(256, 448, 64 * 64)), "AdaAttN adaattn_3 (latest_net_adaattn_3.pth)"
        ),
        "decoder": _read(decoder, _layout(lambda: VGGDecoder(skip=True)), "AdaAttN decoder (latest_net_decoder.pth)"),
    }
    tensors = {f"{prefix}.{k}": v for prefix, sd in parts.items() for k, v in sd.items()}
    sources = {"transformer": Path(transformer), "adaattn_3": Path(adaattn_3), "decoder": Path(decoder)}
    encoder = _with_vgg(tensors, sources, vgg)
    config = {"learned": True, "attention": "softmax", "max_sample": 256 * 256, "max_sample_3": 64 * 64, "seed": 6666}
    return _write(out, "adaattn", config, tensors, sources, encoder)


def convert_stya2k(
    a2k: str | Path | None,
    transform: str | Path,
    decoder: str | Path,
    vgg: str | Path | None = None,
    *,
    out: str | Path,
) -> Path:
    """Official StyA2K ``latest_net_{A2K,transform,decoder}.pth`` (+ optional ``vgg_normalised.pth``)
    -> one safetensors at ``out``; returns ``out``.

    The decoder decides how relu3_1 enters (see :mod:`dynast_cli.models.stya2k`):
    ``decoder_layer_2.1`` with 512 input channels (the official code's ``skip_connection_3``) needs
    ``a2k``; with 256 it takes no relu3_1 input, and ``a2k``, when given, is checked but not stored.
    """
    check_output(out, overwrite=True)  # its folder can be written, before the checkpoints are read
    dec = load_torch_checkpoint(decoder)
    first = dec.get("decoder_layer_2.1.weight")
    skip3 = first is not None and first.dim() == 4 and first.shape[1] == 512
    check_layout(dec, _layout(lambda: VGGDecoder(skip=skip3)), decoder, "StyA2K decoder (latest_net_decoder.pth)")
    parts = {
        "transformer": _read(transform, _layout(A2KTransform), "StyA2K transform (latest_net_transform.pth)"),
        "decoder": {k: v.float() for k, v in dec.items()},
    }
    sources = {"transform": Path(transform), "decoder": Path(decoder)}
    if a2k is not None:
        sd = _read(a2k, _layout(lambda: A2KLayer(256, BLOCKS[0])), "StyA2K A2K (latest_net_A2K.pth)")
        if skip3:
            parts["a2k"], sources["a2k"] = sd, Path(a2k)
    elif skip3:
        raise WeightsError("this decoder takes the relu3_1 A2K output: latest_net_A2K.pth is needed too", decoder)
    tensors = {f"{prefix}.{k}": v for prefix, sd in parts.items() for k, v in sd.items()}
    encoder = _with_vgg(tensors, sources, vgg)
    return _write(out, "stya2k", {"learned": True, "skip3": skip3, "heads": 8}, tensors, sources, encoder)
