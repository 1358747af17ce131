"""Batch normalisation over the batch of every process, on any device.

``torch.nn.SyncBatchNorm`` is what multi-GPU training uses, but it refuses CPU tensors, so a gloo
(CPU) run would normalise each rank's share with its own statistics and train a different model
than one process does. :class:`GlobalBatchNorm2d` computes the same statistics as ``BatchNorm2d``
on the whole global batch, with differentiable all-reduces (``torch.distributed.nn``), so the
gradients equal a single process's too. :func:`convert_sync_batchnorm` uses torch's own
``SyncBatchNorm`` on CUDA and this one elsewhere.

Shapes: ``x`` ``(N, C, H, W)`` on each rank; the statistics are over the ``sum_r N_r * H * W``
values of each channel.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics span every rank's batch (plain ``BatchNorm2d`` in
    eval mode or without a process group). Same parameters, buffers and state-dict keys."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _world_size() > 1):
            return super().forward(x)
        c, dtype = x.shape[1], x.dtype
        x = x.float()  # statistics in fp32, also under bf16 autocast
        count = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        n = dist_fn.all_reduce(count)  # (1,) values per channel over all ranks
        mean = dist_fn.all_reduce(x.sum((0, 2, 3))) / n  # (C,)
        centred = x - mean.view(1, c, 1, 1)
        var = dist_fn.all_reduce(centred.pow(2).sum((0, 2, 3))) / n  # (C,) biased, as BatchNorm normalises
        out = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1).clamp(min=1))
                self.running_mean.mul_(1 - factor).add_(factor * mean.detach().to(self.running_mean.dtype))
                self.running_var.mul_(1 - factor).add_(factor * unbiased.detach().to(self.running_var.dtype))
        return out.to(dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every ``BatchNorm2d`` of ``module`` synchronised across ranks: ``nn.SyncBatchNorm`` on CUDA,
    :class:`GlobalBatchNorm2d` elsewhere. The parameters and buffers are the same tensors (an
    optimiser built before keeps working); returns ``module`` (or its replacement when it is a BN)."""
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if type(module) is nn.BatchNorm2d:
        new = GlobalBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        replaced = convert_sync_batchnorm(child, device)
        if replaced is not child:
            setattr(module, name, replaced)
    return module
