"""Device and thread selection shared by every pipeline."""

from __future__ import annotations

import os

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
