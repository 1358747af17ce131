"""Scaling out on PyTorch's own engine: shards of a batch job, and the torchrun process group.

Two ways to spread work, both built on what ships with torch:

* a **job array** (Slurm, Kubernetes, a shell loop): each process is given ``--shard i/n`` and takes
  its share of the work (:class:`Shard`), independently of the others;
* **torchrun** (``torchrun --nproc_per_node N [--nnodes M ...] -m dynast_cli ...``): the processes
  find each other through torchrun's rendezvous (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR``/``MASTER_PORT`` in the environment), join one process group (NCCL on CUDA, gloo on
  CPU; :func:`init_process_group`) and each rank takes shard ``RANK/WORLD_SIZE``
  (:func:`shard_from_env`). Training wraps its model in ``DistributedDataParallel``
  (:mod:`dynast_cli.train.ddp`).

Without torchrun or ``--shard``, nothing changes: one process does all the work.
This module imports torch only inside the functions that need it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence, TypeVar

from dynast_cli.errors import UsageError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Share ``index`` (0-based) of ``count`` equal shares of a job; ``Shard(0, 1)`` is the whole job."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(f"--shard {self.index}/{self.count}: needs 0 <= i < n (e.g. 0/4 ... 3/4)")

    @property
    def whole(self) -> bool:
        return self.count == 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, items: Sequence[T]) -> list[T]:
        """This shard's items of a list every shard sees in the same order: every ``count``-th one
        starting at ``index`` (sizes of neighbouring files spread over the shards)."""
        return list(items[self.index :: self.count])

    def span(self, total: int, align: int = 1) -> tuple[int, int]:
        """This shard's contiguous ``[start, stop)`` of ``total`` items, cut at multiples of ``align``
        (whole batches, so a sharded run groups items exactly as an unsharded one does); the first
        shards take one block more when the blocks do not divide evenly."""
        if total < 0 or align < 1:
            raise ValueError(f"span({total}, align={align})")
        blocks = -(-total // align)
        per, extra = divmod(blocks, self.count)
        first = self.index * per + min(self.index, extra)
        last = first + per + (1 if self.index < extra else 0)
        return min(first * align, total), min(last * align, total)


def parse_shard(text: str | None) -> Shard | None:
    """``"i/n"`` -> :class:`Shard` (``None`` for ``None``/empty); a :class:`UsageError` naming
    ``--shard`` for anything else."""
    if not text:
        return None
    index, sep, count = text.strip().partition("/")
    try:
        if not sep:
            raise ValueError
        return Shard(int(index), int(count))
    except ValueError:
        raise UsageError(f"--shard takes i/n with 0 <= i < n (e.g. 0/4), got '{text}'") from None


# ---------------------------------------------------------------------------------------------
# torchrun
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """This process's place among the torchrun processes (``rank 0 of 1`` without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes checkpoints, logs, samples and reports."""
        return self.rank == 0

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.size)


def world_from_env(environ: dict[str, str] | None = None) -> World:
    """The torchrun variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); a single process when unset."""
    env = os.environ if environ is None else environ
    try:
        size = int(env.get("WORLD_SIZE", "1") or 1)
        rank = int(env.get("RANK", "0") or 0)
        local = int(env.get("LOCAL_RANK", str(rank)) or 0)
    except ValueError:
        raise UsageError("RANK / WORLD_SIZE / LOCAL_RANK must be integers (as torchrun sets them)") from None
    if size < 1 or not 0 <= rank < size:
        raise UsageError(f"RANK {rank} / WORLD_SIZE {size}: not a valid torchrun environment")
    return World(rank, size, local)


def shard_from_env(shard: Shard | None) -> Shard | None:
    """``--shard`` when given; else, under torchrun with several processes, ``RANK/WORLD_SIZE``.
    Both at once is refused (the job array and torchrun would split the work twice)."""
    world = world_from_env()
    if shard is not None and world.distributed:
        raise UsageError("--shard and torchrun both split the work; use one of them")
    return shard if shard is not None else (world.shard if world.distributed else None)


def init_process_group(device: Any = None) -> World:
    """Join the torchrun process group once (NCCL when ``device`` is CUDA, else gloo) and return this
    process's :class:`World`; without torchrun, nothing happens. On CUDA, rank ``LOCAL_RANK`` uses
    ``cuda:LOCAL_RANK``."""
    world = world_from_env()
    if not world.distributed:
        return world
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = device is not None and torch.device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return world


def local_device(device: Any, world: World) -> Any:
    """The device this rank works on: ``cuda:LOCAL_RANK`` for CUDA under torchrun, else ``device``."""
    import torch

    device = torch.device(device)
    if world.distributed and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device


def gather(obj: T) -> list[T]:
    """Every rank's ``obj`` in rank order (``[obj]`` without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def outcome(error: BaseException | None) -> tuple[int, str] | None:
    """What a rank tells the others of how it ended: None, or (exit code, the error on one line)."""
    return None if error is None else (getattr(error, "exit_code", 70), " ".join(str(error).split()))


def agree(error: BaseException | None) -> None:
    """Every rank says whether its checks passed (``error`` None) before any work; on a rank whose
    checks passed, raise when another rank's failed (a :class:`~dynast_cli.errors.DynastError` with that
    rank's exit code, naming it), so that no rank starts what another refused. Every rank must call it
    once; without a process group it does nothing."""
    from dynast_cli.errors import DynastError

    outcomes = gather(outcome(error))
    if error is not None:
        return
    for rank, ended in enumerate(outcomes):
        if ended is not None:
            code, message = ended
            stop = DynastError(f"stopped before any work: rank {rank} of {len(outcomes)} refused: {message}")
            stop.exit_code = code
            raise stop


class StartAgreement:
    """One job's agreement to start (:func:`agree`), which every rank makes exactly once: :meth:`ready`
    when its checks passed (it raises when another rank's failed), :meth:`refuse` when they did not. After
    ``ready``, ``refuse`` does nothing: an error during the work is not a refusal."""

    def __init__(self) -> None:
        self.agreed = False
        self.started = False  # every rank agreed: the job's work began (on all ranks alike)

    def ready(self) -> None:
        self.agreed = True
        agree(None)
        self.started = True

    def refuse(self, error: BaseException) -> None:
        if not self.agreed:
            self.agreed = True
            agree(error)


@contextmanager
def torchrun_group(device: Any = None) -> Iterator[StartAgreement]:
    """One job under torchrun: join the process group (:func:`init_process_group`), yield the job's
    :class:`StartAgreement`, and leave the group (:func:`destroy_process_group`) whatever happens."""
    init_process_group(device)
    try:
        yield StartAgreement()
    finally:
        destroy_process_group()


def barrier() -> None:
    """Wait for every rank (nothing without a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def destroy_process_group() -> None:
    """Leave the process group if this process joined one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
