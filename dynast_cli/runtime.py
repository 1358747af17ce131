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
