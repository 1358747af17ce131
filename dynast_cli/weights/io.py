"""safetensors in and out, with metadata, strict loading and one-line errors.

Every file dynast writes carries string metadata: at least ``format`` (``dynast``),
``architecture`` (e.g. ``adaattn``, ``stya2k``, ``dynast``, ``decoder``, ``vgg16``) and
``config`` (JSON of the constructor arguments). Converters add ``source_sha256``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from dynast_cli.errors import OutputError, WeightsError
from dynast_cli.io.atomic import atomic_output


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def save_weights(
    tensors: Mapping[str, torch.Tensor],
    path: str | Path,
    metadata: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``tensors`` to a safetensors file atomically. Non-string metadata is JSON-encoded."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"format": "dynast"}
    for key, value in (metadata or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    out = {}
    for key, t in tensors.items():
        t = t.detach().cpu()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        out[key] = t.contiguous()
    try:
        with atomic_output(path) as tmp:
            save_file(out, str(tmp), metadata=meta)
    except OSError as exc:
        raise OutputError(f"cannot write ({exc.strerror or exc})", path) from None
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types
        raise WeightsError(f"not a safetensors file ({exc})", path) from None


def tensor_names(path: str | Path) -> set[str]:
    """The tensor names in a safetensors file, without reading the tensors."""
    from safetensors import safe_open

    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            return set(fh.keys())
    except Exception as exc:
        raise WeightsError(f"not a safetensors file ({exc})", path) from None


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file -> (tensors, metadata). Clear errors for missing/corrupt files."""
    from safetensors import safe_open

    path = Path(path)
    _check_file(path)
    if path.suffix in (".pth", ".pt", ".ckpt", ".bin"):
        raise WeightsError(
            "is a PyTorch checkpoint, not safetensors: convert it first with `dynast convert`", path
        )
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            meta = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:
        raise WeightsError(f"not a readable safetensors file ({exc})", path) from None
    return tensors, meta


def config_from_metadata(meta: Mapping[str, str]) -> dict[str, Any]:
    raw = meta.get("config")
    return json.loads(raw) if raw else {}


def load_state(
    module: nn.Module,
    tensors: Mapping[str, torch.Tensor],
    source: str | Path = "weights",
    strict: bool = True,
) -> nn.Module:
    """Load ``tensors`` into ``module`` with exact key and shape checks; errors name ``source``."""
    own = module.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) e.g. {unexpected[:3]}")
        raise WeightsError(
            f"does not match the {type(module).__name__} architecture: " + "; ".join(parts), source
        )
    for key, t in tensors.items():
        if key in own and own[key].shape != t.shape:
            raise WeightsError(
                f"tensor '{key}' has shape {tuple(t.shape)}, expected {tuple(own[key].shape)}", source
            )
    cast = {k: t.to(own[k].dtype) for k, t in tensors.items() if k in own}
    module.load_state_dict(cast, strict=strict)
    return module


def load_torch_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official ``.pth`` safely (``weights_only=True``) -> flat {key: tensor}."""
    path = Path(path)
    _check_file(path)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"not a readable PyTorch checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})", path) from None
    if isinstance(obj, nn.Module):  # pragma: no cover - weights_only forbids this
        obj = obj.state_dict()
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError("does not hold a state dict of tensors", path)
    # DataParallel checkpoints prefix every key with 'module.'
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise WeightsError("no such file", path)
    if path.is_dir():
        raise WeightsError("is a folder, expected a weights file", path)
