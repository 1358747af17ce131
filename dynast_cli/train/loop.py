"""The one training loop shared by every task (style decoder, AdaAttN, StyA2K, pose, face).

A task supplies four things:

* ``model``: the ``nn.Module`` being trained (only its state is checkpointed; frozen helpers such
  as the VGG loss network live in the closures below);
* ``data(generator) -> batch``: draws one batch using the loop's generator (so batches are
  reproducible and a resumed run sees exactly the batches it would have seen);
* ``loss_fn(model, batch) -> {"total": ..., other named terms}``;
* optionally ``sample_fn(model) -> (3, H, W) image`` written as a PNG grid every ``sample_every`` steps.

Checkpoints (in ``ckpt_dir``, every ``ckpt_every`` steps and at the end): ``model.safetensors``
(fp32 weights) and ``state.pt`` (optimiser state, step, generator and torch RNG states, elapsed
wall time, loss history). ``resume=True`` continues from them; the continuation is bit-identical to
an uninterrupted run on the same device and number of processes (with another number of processes,
equal within float rounding).

Under torchrun (several processes) the same loop runs on every rank: ``data`` returns the rank's
share of the one global batch, the step runs through DistributedDataParallel, the logged losses are
the global batch's, and rank 0 alone writes checkpoints, samples and logs (see :mod:`dynast_cli.train.ddp`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from dynast_cli.distributed import barrier
from dynast_cli.errors import OutputError, WeightsError
from dynast_cli.io.atomic import atomic_output
from dynast_cli.io.images import save_image
from dynast_cli.io.outputs import check_folder
from dynast_cli.train.ddp import current_world, distribute, mean_over_ranks
from dynast_cli.weights.io import load_state, load_weights, safe_torch_load, save_weights

Batch = Any
LossFn = Callable[[nn.Module, Batch], dict[str, torch.Tensor]]
DataFn = Callable[[torch.Generator], Batch]
SampleFn = Callable[[nn.Module], torch.Tensor]

MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
CHECKPOINT_DIR = "checkpoint"  # under a run's --out folder
SAMPLES_DIR = "samples"  # under the checkpoint folder


@dataclass
class TrainResult:
    """What a run did: final step, total wall time (over all resumed sessions), loss history."""

    step: int
    wall_s: float
    history: list[dict[str, float]] = field(default_factory=list)

    def final_losses(self, last: int = 50) -> dict[str, float]:
        """Each loss term averaged over the last ``last`` recorded steps."""
        recent = self.history[-last:]
        if not recent:
            return {}
        return {k: sum(h[k] for h in recent) / len(recent) for k in recent[-1] if k != "step"}


#: What :func:`save_checkpoint` writes into ``state.pt`` (and :func:`load_checkpoint` needs).
STATE_KEYS = ("step", "wall_s", "history", "optimizer", "generator", "torch_rng", "cuda_rng")


def save_checkpoint(
    ckpt_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator,
    result: TrainResult,
) -> None:
    """Write ``model.safetensors`` and ``state.pt`` atomically into ``ckpt_dir``."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    save_weights(model.state_dict(), ckpt_dir / MODEL_FILE, {"step": str(result.step)})
    state = {
        "step": result.step,
        "wall_s": result.wall_s,
        "history": result.history,
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    try:
        with atomic_output(ckpt_dir / STATE_FILE) as tmp:  # usual permissions; the temporary removed on failure
            torch.save(state, tmp)
    except OSError as exc:
        raise OutputError(f"cannot write checkpoint ({exc.strerror or exc})", ckpt_dir) from None


def load_checkpoint(
    ckpt_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator
) -> TrainResult:
    """Restore what :func:`save_checkpoint` wrote; returns the saved step, wall time and history."""
    state_path = ckpt_dir / STATE_FILE
    tensors, _ = load_weights(ckpt_dir / MODEL_FILE)
    load_state(model, tensors, source=ckpt_dir / MODEL_FILE)
    if not state_path.is_file():
        raise WeightsError("no training state to resume from", state_path)
    state = safe_torch_load(state_path)  # one line: code refused for safety, or corrupt/truncated
    if not isinstance(state, dict):
        raise WeightsError(f"unreadable training state (a {type(state).__name__}, not a dict)", state_path)
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        keys = ", ".join(repr(k) for k in missing)
        raise WeightsError(f"unreadable training state (missing {keys}; written by another program?)", state_path)
    try:
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise WeightsError(f"unreadable training state ({' '.join(str(exc).split())[:200]})", state_path) from None
    return TrainResult(step=state["step"], wall_s=state["wall_s"], history=state["history"])


def check_checkpoint_dir(ckpt_dir: str | Path, resume: bool = False, samples: bool = True) -> Path:
    """Before any work: ``ckpt_dir`` (and its ``samples`` folder) can be written or created, and
    without ``resume`` it holds no checkpoint; else an OutputError naming the path."""
    ckpt_dir = Path(ckpt_dir)
    check_folder(ckpt_dir)
    if samples:
        check_folder(ckpt_dir / SAMPLES_DIR)
    if not resume and (ckpt_dir / STATE_FILE).exists():
        raise OutputError("holds a checkpoint already (pass --resume to continue it)", ckpt_dir)
    return ckpt_dir


def check_run_dir(out: str | Path, resume: bool = False, samples: bool = True) -> Path:
    """Before any work: a training run's ``--out`` folder (exported weights) and its checkpoint folder
    can be written (see :func:`check_checkpoint_dir`). An existing folder is fine: it is where
    ``--resume`` continues from, and without a checkpoint a new run writes into it."""
    out = check_folder(out)
    check_checkpoint_dir(out / CHECKPOINT_DIR, resume, samples)
    return out


def use_amp(device: torch.device, amp: bool | None = None) -> bool:
    """Whether the forward pass runs under bf16 autocast: ``amp`` if given, else on CUDA only."""
    return device.type == "cuda" if amp is None else amp


def _describe(losses: dict[str, float], s_per_step: float) -> str:
    terms = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
    return f"{terms} | {s_per_step:.2f} s/step"


def train_loop(
    model: nn.Module,
    loss_fn: LossFn,
    data: DataFn,
    optimizer: torch.optim.Optimizer,
    steps: int,
    ckpt_dir: str | Path,
    resume: bool = False,
    sample_fn: SampleFn | None = None,
    sample_every: int = 0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    ckpt_every: int = 100,
    console: Console | None = None,
    time_limit_s: float | None = None,
    amp: bool | None = None,
) -> TrainResult:
    """Train ``model`` until ``steps`` total steps (counting resumed ones); returns the :class:`TrainResult`.

    The model must already be on ``device``. ``amp`` (default: on CUDA only): the forward pass runs
    under bf16 autocast. ``time_limit_s``: stop early once this session has trained that long (at
    least one step), with a checkpoint as at the end, so ``resume`` goes on from there. Samples go to
    ``ckpt_dir/samples/step_XXXXXX.png`` every ``sample_every`` steps and at the last step. A
    non-finite loss stops the run with an error (the last checkpoint stays valid). The folders are
    checked before the first batch (:func:`check_checkpoint_dir`).
    """
    ckpt_dir = check_checkpoint_dir(ckpt_dir, resume, samples=sample_fn is not None and sample_every > 0)
    device = torch.device(device)
    world = current_world()
    console = console or Console(stderr=True)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    if resume and (ckpt_dir / STATE_FILE).exists():
        result = load_checkpoint(ckpt_dir, model, optimizer, generator)
        if world.main:
            console.print(f"resuming from step {result.step} ({ckpt_dir})", markup=False)
    else:
        result = TrainResult(step=0, wall_s=0.0)
        if resume and world.main:  # a scheduler's rerun may always pass --resume: go on, but say it starts afresh
            console.print(f"notice: --resume: no checkpoint in {ckpt_dir} yet; starting at step 0", markup=False)

    model.train()
    step_fn = distribute(model, loss_fn, world, device)  # DDP under torchrun
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp(device, amp))
    start_step, session_start = result.step, time.perf_counter()
    wall_before = result.wall_s
    log_every = max(1, min(ckpt_every, 25))
    # in a log (not a terminal) the bar is replaced by whole lines every ``log_every`` steps and at the last
    # one: Rich's final render there is cut to the console width
    lines = world.main and not console.is_terminal
    with Progress(
        TextColumn("step"), MofNCompleteColumn(), BarColumn(), TimeRemainingColumn(),
        TextColumn("{task.description}"), console=console, transient=False, disable=not world.main or lines,
    ) as progress:
        task = progress.add_task("", total=steps, completed=result.step)
        while result.step < steps:
            batch = data(generator)  # this rank's share of the global batch (see dynast_cli.train.ddp)
            with autocast:
                losses = step_fn(batch)
            total = losses["total"]
            optimizer.zero_grad(set_to_none=True)
            total.backward()  # DDP: gradients averaged over the ranks here
            elapsed = time.perf_counter() - session_start
            over_time = time_limit_s is not None and elapsed >= time_limit_s
            logged, over_time = mean_over_ranks(losses, over_time, world)  # the global batch's losses
            if not math.isfinite(logged["total"]):
                raise WeightsError(f"loss became {logged['total']} at step {result.step + 1}; last checkpoint kept", ckpt_dir)
            optimizer.step()
            result.step += 1
            result.history.append({"step": result.step, **logged})

            elapsed = time.perf_counter() - session_start
            result.wall_s = wall_before + elapsed
            s_per_step = elapsed / (result.step - start_step)
            description = _describe(result.final_losses(10), s_per_step)
            progress.update(task, completed=result.step, description=description)
            last = result.step == steps or over_time
            if lines and (result.step % log_every == 0 or last):
                console.print(f"step {result.step}/{steps} {description}", markup=False, soft_wrap=True)
            if world.main and sample_fn is not None and sample_every > 0 and (result.step % sample_every == 0 or last):
                write_sample(model, sample_fn, ckpt_dir / SAMPLES_DIR / f"step_{result.step:06d}.png")
            if world.main and (result.step % ckpt_every == 0 or last):
                save_checkpoint(ckpt_dir, model, optimizer, generator, result)
            if last:
                break
    barrier()  # the other ranks wait for rank 0's last checkpoint
    return result


def write_sample(model: nn.Module, sample_fn: SampleFn, path: Path) -> Path:
    """Run ``sample_fn`` in eval mode without gradients and save its image to ``path``."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        image = sample_fn(model)
    model.train(was_training)
    return save_image(image, path)
