"""A trainer run for tests/test_ddp.py: ``python -m torch.distributed.run --standalone --nproc_per_node N
tests/ddp_worker.py TASK DATA OUT STEPS BATCH [--resume] [--sgd]`` (or plain ``python`` for one process).

TASK: ``decoder`` (the universal-decoder task, no BatchNorm), a trainable style method (``adaattn``,
``a2k``, ``dynast``), ``face`` (the DynaST GAN: generator
BatchNorms, discriminator, TTUR groups) or ``video`` (the AdaAttN video task: simulated frame pairs).
The real trainers (``train_style``, ``train_dynast``, ``train_video_style``) run with the small
stand-in encoder, so the whole torchrun path is exercised: process group, rank shares, DDP, rank-0
checkpoints and export. ``--sgd`` (face): the GAN task on the shared loop with plain SGD.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from stand_ins import TinyEncoder

SIZE = 32


def run(task: str, data: Path, out: Path, steps: int, batch: int, resume: bool, sgd: bool = False) -> Path:
    torch.set_num_threads(1)
    common = dict(steps=steps, batch=batch, out=out, resume=resume, sample_every=0, seed=3, device="cpu",
                  encoder=TinyEncoder(), ckpt_every=1)
    if task in ("decoder", "adaattn", "a2k", "dynast"):
        from dynast_cli.train.style import train_style

        return train_style([data / "content"], [data / "style"], method=task, size=SIZE, lr=1e-3, **common)
    if task == "video":
        from dynast_cli.train.video_style import train_video_style

        return train_video_style([data / "content"], [data / "style"], size=SIZE, lr=1e-3, **common)
    if task == "face":
        from dynast_cli.models.dynast import DynastConfig
        from dynast_cli.train.face_data import FacePairs
        from dynast_cli.train.generator import train_dynast

        config = DynastConfig(ngf=4, max_multi=2, n_layers=2, top_k=2, pos_dim=2, prune_dim=2, semantic_nc=15,
                              crop_size=SIZE)
        if not sgd:
            return train_dynast(FacePairs(data / "faces", size=SIZE), "dynast_face", lr=1e-3, config=config,
                                ndf=4, **common)
        # the same GAN task on the shared loop with plain SGD: Adam turns the rounding noise of gradients
        # that are zero in exact arithmetic (biases right before a normalisation) into +-lr steps
        from dynast_cli.train.ddp import setup
        from dynast_cli.train.generator import generator_task
        from dynast_cli.train.loop import train_loop

        world, device, part = setup("cpu", batch)
        torch.manual_seed(3)
        task = generator_task(FacePairs(data / "faces", size=SIZE), config, 4, batch, common["encoder"], device,
                              "dynast_face", part)
        optimizer = torch.optim.SGD(task.model.parameters(), lr=1e-5)
        train_loop(task.model, task.loss_fn, task.data, optimizer, steps, out / "checkpoint", resume=resume, seed=3,
                   ckpt_every=1)
        return out
    raise SystemExit(f"unknown task {task}")


if __name__ == "__main__":
    from dynast_cli.distributed import destroy_process_group

    args = sys.argv[1:]
    flags = {a for a in args if a.startswith("--")}
    args = [a for a in args if not a.startswith("--")]
    run(args[0], Path(args[1]), Path(args[2]), int(args[3]), int(args[4]), "--resume" in flags, "--sgd" in flags)
    destroy_process_group()
