"""`dynast train style --method dynast`: the learned DynaST prune mask in the shared training loop
(stand-in encoder, fresh frozen decoder, tiny generated images)."""

from __future__ import annotations

import json

import numpy as np
import torch

from conftest import make_image_folder
from dynast_cli.models.dynast_style import ARCHITECTURE
from dynast_cli.weights.build import build_model
from dynast_cli.nn.decoders import VGGDecoder
from dynast_cli.train.data import RandomCrops
from dynast_cli.train.loop import train_loop
from dynast_cli.train.style import DYNAST_PRUNE_DIM, prune_mask_task, train_style
from dynast_cli.weights.io import load_weights, sha256_file
from stand_ins import TinyEncoder, as_method, one_thread  # noqa: F401 (autouse fixture)


def _folder(root, name, n, h=40, w=56, seed=0):
    return make_image_folder(root, name, n, h, w, seed)


def _task(tmp_path, batch=2):
    contents = RandomCrops([_folder(tmp_path, f"c{batch}", 3)], size=32)
    styles = RandomCrops([_folder(tmp_path, f"s{batch}", 3, 48, 40, seed=7)], size=32)
    torch.manual_seed(0)
    return prune_mask_task(TinyEncoder(), contents, styles, batch, torch.device("cpu"), VGGDecoder(skip=True))


def _run(task, ckpt, steps, resume=False, lr=3e-2, **kw):
    optimizer = torch.optim.Adam([p for p in task.model.parameters() if p.requires_grad], lr=lr)
    return train_loop(task.model, task.loss_fn, task.data, optimizer, steps, ckpt, resume=resume, seed=3, **kw)


def test_only_the_prune_embeddings_train(tmp_path):
    task = _task(tmp_path)
    trained = {n for n, p in task.model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith("prune.") for n in trained)
    assert set(task.export_state()) == {f"prune.{n}" for n in task.model.prune.state_dict()}


def test_a_few_steps_decrease_the_loss_and_prune_some_matches(tmp_path):
    task = _task(tmp_path)
    result = _run(task, tmp_path / "ck", 25)
    totals = [h["total"] for h in result.history]
    assert result.history[0]["kept"] > 1 - 1e-5  # starts all kept (the parameter-free model)
    assert np.mean(totals[-5:]) < np.mean(totals[:5])
    assert min(h["kept"] for h in result.history) < 1 - 1e-3
    assert set(result.final_losses()) == {"content", "global", "local", "total", "kept"}


def test_resume_continues_from_the_saved_step(tmp_path):
    full = _run(_task(tmp_path), tmp_path / "a", 4)
    _run(_task(tmp_path), tmp_path / "b", 2)
    resumed = _task(tmp_path)  # a fresh process rebuilds the task
    result = _run(resumed, tmp_path / "b", 4, resume=True)
    assert result.step == 4 and [h["step"] for h in result.history] == [1, 2, 3, 4]
    assert [h["total"] for h in result.history] == [h["total"] for h in full.history]


def test_train_style_exports_the_prune_mask_only(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNAST_WEIGHTS", str(tmp_path / "no-weights"))  # a fresh decoder, not the installed one
    content, style = _folder(tmp_path, "c", 2, 32, 32), _folder(tmp_path, "s", 2, 32, 40, seed=9)
    out = tmp_path / "out"
    encoder = TinyEncoder()
    path = train_style([content], [style], method="dynast", steps=2, batch=1, size=32, lr=1e-2, out=out,
                       encoder=encoder, sample_every=2)
    tensors, meta = load_weights(path)
    assert path.name == "dynast_prune_vgg16.safetensors" and meta["architecture"] == ARCHITECTURE
    assert {k.split(".")[0] for k in tensors} == {"prune"} and all(t.dtype == torch.float16 for t in tensors.values())
    config = json.loads(meta["config"])
    assert config["prune_dim"] == DYNAST_PRUNE_DIM and config["decoder"] == "decoder_vgg16"
    entry = json.loads((out / "dynast_prune_vgg16.json").read_text())
    assert entry["sha256"] == sha256_file(path) and entry["training"]["steps"] == 2
    assert set(entry["training"]["final_losses"]) == {"content", "global", "local", "total", "kept"}
    assert (out / "checkpoint" / "samples" / "step_000002.png").is_file()
    model = build_model(path, ARCHITECTURE, encoder=encoder, decoder=VGGDecoder(skip=True))
    with torch.no_grad():
        out_image = as_method(model).stylize(torch.rand(1, 3, 24, 40), [model.prepare_style(torch.rand(1, 3, 32, 32))], [1.0])
    assert out_image.shape == (1, 3, 24, 40)
