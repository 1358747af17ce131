"""Device and thread selection shared by every pipeline."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from dynast_cli.errors import DynastError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a clear error."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DynastError("--device cuda was asked for, but PyTorch sees no CUDA GPU (use --device cpu)")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise DynastError(f"unknown device '{name}' (use auto, cpu or cuda)")
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads (``None``: $DYNAST_THREADS or PyTorch's default)."""
    threads = threads or int(os.environ.get("DYNAST_THREADS", "0") or 0)
    if threads > 0:
        torch.set_num_threads(threads)


#: ``--precision`` / ``$DYNAST_PRECISION``: the convolutions of the inference encoder and decoders.
PRECISIONS = ("auto", "fp32", "bf16")
_precision: str | None = None


def set_precision(choice: str | None) -> None:
    """``--precision``: ``auto`` (default), ``fp32`` or ``bf16`` for the rest of the process
    (``None``: ``$DYNAST_PRECISION`` or auto)."""
    global _precision
    if choice is not None and choice.lower() not in PRECISIONS:
        from dynast_cli.errors import UsageError

        raise UsageError(f"unknown --precision '{choice}' (choose from {', '.join(PRECISIONS)})")
    _precision = None if choice is None else choice.lower()


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bfloat16 natively (Intel AMX or AVX-512 BF16): there bf16
    convolutions are several times faster than fp32; elsewhere they are emulated and slower."""
    cpu = getattr(torch, "cpu", None)
    return any(bool(getattr(cpu, name, lambda: False)()) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


def inference_precision(device: torch.device | str = "cpu") -> str:
    """``"bf16"`` or ``"fp32"``: the precision the inference VGG encoder and decoders run their
    convolutions in on ``device``. ``auto``: bf16 on a CPU with native bfloat16 (:func:`native_bf16_cpu`),
    fp32 elsewhere (CUDA included)."""
    choice = _precision or os.environ.get("DYNAST_PRECISION", "auto").lower() or "auto"
    if choice not in PRECISIONS:
        from dynast_cli.errors import UsageError

        raise UsageError(f"unknown DYNAST_PRECISION '{choice}' (choose from {', '.join(PRECISIONS)})")
    if choice != "auto":
        return choice
    return "bf16" if torch.device(device).type == "cpu" and native_bf16_cpu() else "fp32"


def _to_float(out):
    if isinstance(out, torch.Tensor):
        return out.float() if out.dtype == torch.bfloat16 else out
    if isinstance(out, (list, tuple)):
        return type(out)(_to_float(o) for o in out)
    return out


def run_in_bf16(module: torch.nn.Module, device: torch.device | str = "cpu") -> torch.nn.Module:
    """``module`` (in place) whose forward runs under bfloat16 autocast on ``device`` and returns
    float32 tensors: its convolutions in bf16, its weights and state dict unchanged."""
    inner = module.forward
    device_type = torch.device(device).type

    def forward(*args, **kwargs):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out = inner(*args, **kwargs)
        return _to_float(out)

    module.forward = forward
    module.precision = "bf16"
    return module


#: What ``--compile`` prints when there is nothing to compile for (torch.compile is used on CUDA only).
COMPILE_CPU_NOTICE = "--compile: torch.compile is used on CUDA only; running uncompiled on {device}"


def compile_module(module: torch.nn.Module, device: torch.device, notify=None) -> torch.nn.Module:
    """``--compile``: ``torch.compile(module)`` on CUDA; elsewhere ``module`` unchanged and a one-line
    notice to ``notify`` (compiling for the CPU costs minutes of start-up for a few images)."""
    if torch.device(device).type != "cuda":
        if notify:
            notify(COMPILE_CPU_NOTICE.format(device=torch.device(device).type))
        return module
    return torch.compile(module)


def compile_modules(owner: object, names: tuple[str, ...], device: torch.device, notify=None) -> None:
    """:func:`compile_module` on the nn.Module attributes ``names`` of ``owner`` (one notice off CUDA)."""
    if torch.device(device).type != "cuda":
        compile_module(torch.nn.Identity(), device, notify)
        return
    for name in names:
        module = getattr(owner, name, None)
        if isinstance(module, torch.nn.Module):
            setattr(owner, name, compile_module(module, device))


@contextmanager
def silenced_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (C++ libraries such as MediaPipe's logging or the
    profiler write there directly, ignoring Python's ``sys.stderr``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
