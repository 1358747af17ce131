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
    _check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types
        raise WeightsError(f"not a safetensors file ({exc})", path) from None


def tensor_names(path: str | Path) -> set[str]:
    """The tensor names in a safetensors file, without reading the tensors."""
    from safetensors import safe_open

    path = Path(path)
    _check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            return set(fh.keys())
    except Exception as exc:
        raise WeightsError(f"not a safetensors file ({exc})", path) from None


#: Float dtypes whose values :func:`load_weights` checks for NaN / inf (``torch.isfinite`` has no fp8 kernel).
_CHECKED_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file -> (tensors, metadata). Clear errors for missing/corrupt files."""
    from safetensors import safe_open

    path = Path(path)
    _check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            meta = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:
        raise WeightsError(f"not a readable safetensors file ({exc})", path) from None
    check_finite(tensors, path)  # a diverged training's weights would paint black or grey images
    return tensors, meta


#: :func:`check_finite`'s default guess at why a file holds NaN / inf values.
DIVERGED = "a diverged training?"


def check_finite(tensors: Mapping[str, torch.Tensor], path: str | Path, why: str = DIVERGED) -> None:
    """WeightsError naming ``path`` and the first float tensor holding NaN or infinite values.

    A tensor whose sum is finite holds neither (a NaN or an infinity anywhere makes the sum NaN or
    infinite), and summing is ~7x cheaper than ``isfinite(...).all()`` (it ran on every load: 39 ms of
    the default's start-up); a sum that overflowed is checked element by element."""
    for name, tensor in tensors.items():
        if tensor.dtype not in _CHECKED_FLOATS or bool(torch.isfinite(tensor.sum())):
            continue
        if not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"tensor '{name}' holds NaN or infinite values ({why})", path)


def config_from_metadata(meta: Mapping[str, str]) -> dict[str, Any]:
    raw = meta.get("config")
    return json.loads(raw) if raw else {}


def load_state(
    module: nn.Module,
    tensors: Mapping[str, torch.Tensor],
    source: str | Path = "weights",
    strict: bool = True,
    skip: tuple[str, ...] = (),
) -> nn.Module:
    """Load ``tensors`` into ``module`` with exact key and shape checks; errors name ``source``.
    ``skip``: submodule names whose state is not loaded (parts given by the caller, e.g. a frozen encoder)."""
    prefixes = tuple(f"{name}." for name in skip)
    own = {k: v for k, v in module.state_dict().items() if not (prefixes and k.startswith(prefixes))}
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
    module.load_state_dict(cast, strict=strict and not skip)
    return module


#: Fragments of torch's weights_only refusals that mean the pickle asks to import or call code
#: (as opposed to a file that is merely not a pickle, or truncated).
_CODE_REFUSALS = ("GLOBAL ", "call reduce", "Can only create new object", "Can only build")
#: Modules a tensor checkpoint's pickle may name (torch's rebuild functions, OrderedDict).
_DATA_MODULES = ("torch", "collections", "numpy", "_codecs")


def _pickle_verdict(path: Path) -> str:
    """Why torch's safe unpickler stopped at an opcode it does not support (e.g. a protocol-4
    pickle): parse the pickle without running it (:mod:`pickletools`) and look at what it imports."""
    import io
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
                stream = io.BytesIO(zf.read(name))
        else:
            stream = io.BytesIO(path.read_bytes()[: 64 << 20])
        pushed: list[str | None] = []  # what each op pushed, as far as STACK_GLOBAL needs: strings
        memo: dict[int, str | None] = {}
        for op, arg, _ in pickletools.genops(stream):
            module = None
            if op.name in ("GLOBAL", "INST"):
                module = str(arg).split(" ", 1)[0]
            elif op.name == "STACK_GLOBAL":
                module = (pushed[-2] if len(pushed) >= 2 else None) or "?"
            elif op.name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else None
            elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = pushed[-1] if pushed else None
            elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                pushed.append(memo.get(arg))
            elif op.name not in ("PROTO", "FRAME"):
                is_string = "UNICODE" in op.name or "STRING" in op.name
                pushed.append(arg if is_string and isinstance(arg, str) else None)
            if module is not None and module.split(".", 1)[0] not in _DATA_MODULES:
                return "holds code, not only tensors; refused for safety"
    except Exception:  # not a complete pickle
        return "not a PyTorch checkpoint (corrupt or truncated)"
    return ("not a PyTorch checkpoint torch can read safely (saved with an unsupported pickle protocol; "
            "save it again with torch.save's default)")


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU with one-line :class:`WeightsError` s.

    The one way dynast reads a ``.pth`` / ``.pt``: a pickle that would import or call code is
    refused ("holds code, not only tensors; refused for safety", nothing of it runs); an empty,
    truncated or foreign file is "not a PyTorch checkpoint (corrupt or truncated)".
    """
    import pickle
    import warnings

    path = Path(path)
    _check_file(path)
    try:
        if path.stat().st_size == 0:
            raise WeightsError("is empty (0 bytes): not a PyTorch checkpoint", path)
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except WeightsError:
        raise
    except pickle.UnpicklingError as exc:
        if any(fragment in str(exc) for fragment in _CODE_REFUSALS):
            raise WeightsError("holds code, not only tensors; refused for safety", path) from None
        raise WeightsError(_pickle_verdict(path), path) from None
    except PermissionError as exc:
        raise WeightsError(f"cannot read ({exc.strerror or exc})", path) from None
    except Exception:  # EOFError, zip RuntimeError, struct/Index/ValueError from a garbled pickle, ...
        raise WeightsError("not a PyTorch checkpoint (corrupt or truncated)", path) from None


def load_torch_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official ``.pth`` safely (:func:`safe_torch_load`) -> flat {key: tensor}."""
    path = Path(path)
    obj = safe_torch_load(path)
    if isinstance(obj, nn.Module):  # pragma: no cover - weights_only forbids this
        obj = obj.state_dict()
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsError(f"holds a {type(obj).__name__}, not a state dict of tensors", path)
    if not obj:
        raise WeightsError("holds an empty state dict (no tensors)", path)
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise WeightsError("does not hold a state dict of tensors", path)
    # DataParallel checkpoints prefix every key with 'module.'
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    check_finite(obj, path)  # converted, it would paint black images
    return dict(obj)


def _check_safetensors(path: Path) -> None:
    """:func:`_check_file`, and a PyTorch checkpoint named as such (safetensors would say "header too large")."""
    _check_file(path)
    if path.suffix in (".pth", ".pt", ".ckpt", ".bin"):
        raise WeightsError("is a PyTorch checkpoint, not safetensors: convert it first with `dynast convert`", path)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise WeightsError("no such file", path)
    if path.is_dir():
        raise WeightsError("is a folder, expected a weights file", path)
