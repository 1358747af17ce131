"""Training under torchrun: DistributedDataParallel, rank shares of the global batch, synchronised BN.

``torchrun --nproc_per_node N [--nnodes M ...] -m dynast_cli train ...`` starts N processes per
machine; every trainer then works like this (:func:`dynast_cli.train.loop.train_loop`):

* **One global batch, split.** ``--batch`` is the global batch and ``--lr`` the learning rate, as
  in a single process. Every rank draws the same random stream (same seed, same generator: which
  images, crops, flips, pairs) for the whole global batch and materialises only its share
  (:func:`rank_part`: rank ``r`` of ``n`` takes items ``[r * B/n, (r + 1) * B/n)``), so ranks see
  different crops and the batches do not depend on the number of processes. ``--batch`` must be a
  multiple of the number of processes.
* **The same update as one process.** Each rank's loss is the mean over its share; DDP averages the
  gradients over the ranks, which is the gradient of the mean over the global batch. BatchNorm
  layers (the DynaST generator's residual blocks) are synchronised (:mod:`dynast_cli.nn.sync_batchnorm`:
  torch's ``SyncBatchNorm`` on CUDA, an all-reduce equivalent on CPU), so their statistics are the
  global batch's too. Two steps on 2 processes give the weights of two steps in one process, within
  float rounding (``tests/test_ddp.py``).
* **Rank 0 writes**: checkpoints, samples, logs, the progress bar and the exported weights. The
  checkpoint holds the unwrapped model, the optimiser and the (shared) data generator, so
  ``--resume`` works whatever the number of processes before and after.
* NCCL on CUDA (rank ``LOCAL_RANK`` uses ``cuda:LOCAL_RANK``), gloo on CPU.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from dynast_cli.distributed import World, init_process_group, local_device
from dynast_cli.errors import UsageError
from dynast_cli.nn.sync_batchnorm import convert_sync_batchnorm


def current_world() -> World:
    """This process's :class:`World` from the joined process group (a single process when none)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0) or 0))
    return World()


def setup(device: str | torch.device, batch: int) -> tuple[World, torch.device, slice]:
    """Join the torchrun process group (if any) before a trainer builds anything; returns the world,
    this rank's device and its :func:`rank_part` of a global batch of ``batch`` items."""
    world = init_process_group(device)
    return world, local_device(device, world), rank_part(batch, world)


def rank_part(batch: int, world: World) -> slice:
    """The items of a global batch of ``batch`` that rank ``world.rank`` materialises; a
    :class:`UsageError` when ``batch`` does not split evenly over the ranks."""
    if batch % world.size:
        raise UsageError(f"--batch {batch} must be a multiple of the {world.size} processes (each takes an "
                         f"equal share of the global batch)")
    per = batch // world.size
    return slice(world.rank * per, (world.rank + 1) * per)


class Objective(nn.Module):
    """A task's ``loss_fn`` over its ``model`` as one module, so that DDP wraps the whole training
    step (the GAN task calls the generator and the discriminator separately inside it)."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, Any], dict[str, torch.Tensor]]):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        return self.loss_fn(self.model, batch)


def distribute(model: nn.Module, loss_fn: Callable, world: World, device: torch.device) -> Callable:
    """``batch -> losses`` for the training step: ``loss_fn(model, batch)`` in one process; under
    torchrun the model's BatchNorms synchronised and the step wrapped in DistributedDataParallel
    (which broadcasts rank 0's parameters and buffers first)."""
    if not world.distributed:
        return lambda batch: loss_fn(model, batch)
    convert_sync_batchnorm(model, device)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(Objective(model, loss_fn), device_ids=device_ids)


def mean_over_ranks(losses: dict[str, torch.Tensor], stop: bool, world: World) -> tuple[dict[str, float], bool]:
    """The losses averaged over the ranks (the global batch's, for logs and the non-finite check) and
    whether any rank wants to stop (its time limit): one all-reduce, so every rank decides alike."""
    names = list(losses)
    values = torch.stack([losses[k].detach().double().cpu().reshape(()) for k in names]
                         + [torch.tensor(float(stop), dtype=torch.float64)])
    if world.distributed:
        values = values.to(_collective_device())
        dist.all_reduce(values)
        values = values.cpu()
        values[:-1] /= world.size
    floats = values.tolist()
    return dict(zip(names, floats[:-1])), floats[-1] > 0


def _collective_device() -> torch.device:
    """Where NCCL wants collective tensors (the current CUDA device); the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
