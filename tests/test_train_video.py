"""`dynast train style --video`: AdaAttN's cross-image similarity loss, frame pairs, the video task."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_image_folder
from stand_ins import TinyEncoder, as_method, one_thread  # noqa: F401 (autouse fixture)
from typer.testing import CliRunner

from dynast_cli.cli import app
from dynast_cli.models.adaattn import AdaAttNModel
from dynast_cli.nn.decoders import VGGDecoder
from dynast_cli.train.data import RandomCrops
from dynast_cli.train.loop import train_loop
from dynast_cli.nn.losses import cross_image_similarity_loss
from dynast_cli.train.video_style import (
    identity_init,
    margin_for,
    shifted_pair,
    train_video_style,
    video_task,
)
from dynast_cli.weights.io import load_weights

SIZE = 32


def _folder(root, name, n, h=48, w=56, seed=0):
    return make_image_folder(root, name, n, h, w, seed)


# ---- the loss -----------------------------------------------------------------------------------

def _naive_similarity_loss(c1, c2, s1, s2, layers, eps=1e-8):
    """The paper's formula, one entry at a time."""
    total = 0.0
    for level in layers:
        for b in range(c1[level].shape[0]):
            mats = []
            for x1, x2 in ((c1[level][b], c2[level][b]), (s1[level][b], s2[level][b])):
                p1, p2 = x1.flatten(1), x2.flatten(1)  # (C, N1), (C, N2)
                d = torch.empty(p1.shape[1], p2.shape[1], dtype=torch.float64)
                for i in range(p1.shape[1]):
                    for j in range(p2.shape[1]):
                        cos = torch.dot(p1[:, i], p2[:, j]) / ((p1[:, i].norm() + eps) * (p2[:, j].norm() + eps))
                        d[i, j] = 1.0 - cos
                for j in range(d.shape[1]):
                    d[:, j] = d[:, j] / (d[:, j].sum() + eps)
                mats.append(d)
            total += (mats[0] - mats[1]).abs().mean().item() / c1[level].shape[0]
    return total


def test_similarity_loss_matches_the_naive_double_loop():
    gen = torch.Generator().manual_seed(0)
    feats = [[torch.rand(2, 3, h, w, generator=gen, dtype=torch.float64) for h, w in ((4, 5), (3, 3))]
             for _ in range(4)]
    c1, c2, s1, s2 = feats
    c2 = [f[..., :2, :] for f in c2]  # the two frames may differ in size
    s2 = [f[..., :2, :] for f in s2]
    fast = cross_image_similarity_loss(c1, c2, s1, s2, layers=(0, 1)).item()
    assert fast == pytest.approx(_naive_similarity_loss(c1, c2, s1, s2, (0, 1)), rel=1e-9)
    assert fast > 0


def test_similarity_loss_is_zero_for_the_same_structure_and_positive_otherwise():
    c1, c2 = [torch.rand(2, 6, 5, 5)], [torch.rand(2, 6, 5, 5)]
    assert cross_image_similarity_loss(c1, c2, c1, c2, layers=(0,)).item() == 0.0
    # per-position positive scaling keeps every cosine: same structure
    scale1, scale2 = torch.rand(2, 1, 5, 5) + 0.5, torch.rand(2, 1, 5, 5) + 0.5
    same = cross_image_similarity_loss(c1, c2, [c1[0] * scale1], [c2[0] * scale2], layers=(0,)).item()
    assert same == pytest.approx(0.0, abs=1e-7)
    # a stylisation that moves frame 2 relative to frame 1 breaks it
    moved = [c2[0].roll(2, dims=-1)]
    assert cross_image_similarity_loss(c1, c2, c1, moved, layers=(0,)).item() > 1e-3


def test_similarity_loss_has_gradients():
    c1, c2 = [torch.rand(1, 4, 3, 3)], [torch.rand(1, 4, 3, 3)]
    s1 = [torch.rand(1, 4, 3, 3, requires_grad=True)]
    cross_image_similarity_loss(c1, c2, s1, [torch.rand(1, 4, 3, 3)], layers=(0,)).backward()
    assert s1[0].grad is not None and s1[0].grad.abs().sum() > 0


# ---- frame pairs and the model's start ----------------------------------------------------------

def test_shifted_pair_shapes_reproducibility_and_zero_motion():
    big = torch.rand(3, 3, 40, 40)
    a1, b1 = shifted_pair(big, SIZE, torch.Generator().manual_seed(1))
    _, b2 = shifted_pair(big, SIZE, torch.Generator().manual_seed(1))
    assert a1.shape == b1.shape == (3, 3, SIZE, SIZE)
    assert torch.equal(a1, big[..., 4:36, 4:36]) and torch.equal(b1, b2)
    assert not torch.allclose(a1, b1)
    still_a, still_b = shifted_pair(big, SIZE, torch.Generator(), max_shift=0, max_rotate_deg=0, max_zoom=0)
    assert torch.allclose(still_a, still_b, atol=1e-5)


def test_shifted_pair_moves_by_the_drawn_shift():
    ramp = torch.arange(40.0).view(1, 1, 1, 40).expand(1, 3, 40, 40) / 40  # brightness = x
    first, second = shifted_pair(ramp, SIZE, torch.Generator().manual_seed(0), max_rotate_deg=0, max_zoom=0)
    shift_px = ((second - first) * 40).mean().item()
    assert 0 < abs(shift_px) <= SIZE / 24 + 1e-4


def test_identity_init_starts_at_the_parameter_free_cosine_model():
    torch.manual_seed(0)
    encoder, decoder = TinyEncoder(), VGGDecoder(skip=True)
    learned = identity_init(AdaAttNModel(encoder, learned=True, attention="cosine", decoder=decoder)).eval()
    free = AdaAttNModel(encoder, learned=False, attention="cosine", decoder=decoder).eval()
    content, style = torch.rand(2, 3, SIZE, SIZE), torch.rand(1, 3, 40, 36)
    with torch.no_grad():
        a = as_method(learned).stylize(content, [learned.prepare_style(style)], [1.0])
        b = as_method(free).stylize(content, [free.prepare_style(style)], [1.0])
    assert torch.allclose(a, b, atol=1e-5)


# ---- the task in the one loop -------------------------------------------------------------------

@pytest.fixture
def folders(tmp_path):
    return _folder(tmp_path, "c", 3), _folder(tmp_path, "s", 2, seed=7)


def _task(folders, batch=2):
    """The video task on the stand-in encoder (whose scale needs a smaller similarity weight than VGG16's)."""
    torch.manual_seed(0)
    contents = RandomCrops([folders[0]], size=SIZE + 2 * margin_for(SIZE))
    styles = RandomCrops([folders[1]], size=SIZE)
    return video_task(TinyEncoder(), contents, styles, SIZE, batch, torch.device("cpu"), VGGDecoder(skip=True),
                      video_weight=1e4)


def _run(task, ckpt, steps, resume=False, lr=1e-3):
    optimizer = torch.optim.Adam([p for p in task.model.parameters() if p.requires_grad], lr=lr)
    return train_loop(task.model, task.loss_fn, task.data, optimizer, steps, ckpt, resume=resume, seed=3)


def test_a_few_steps_decrease_the_loss(folders, tmp_path):
    result = _run(_task(folders), tmp_path / "ck", 24, lr=3e-4)
    totals = [h["total"] for h in result.history]
    similarity = [h["similarity"] for h in result.history]
    assert set(result.history[0]) == {"step", "content", "global", "local", "similarity", "total"}
    assert np.mean(totals[-4:]) < 0.8 * np.mean(totals[:4])
    assert np.mean(similarity[-4:]) < 0.8 * np.mean(similarity[:4])


def test_resume_continues_bit_identically(folders, tmp_path):
    straight = _task(folders)
    full = _run(straight, tmp_path / "a", 4)
    _run(_task(folders), tmp_path / "b", 2)
    resumed = _task(folders)
    result = _run(resumed, tmp_path / "b", 4, resume=True)
    assert result.step == 4
    assert [h["total"] for h in result.history] == [h["total"] for h in full.history]
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_train_video_style_exports_a_cosine_adaattn_model(folders, tmp_path, monkeypatch):
    monkeypatch.setenv("DYNAST_WEIGHTS", str(tmp_path / "no-weights"))  # start from a fresh decoder
    out = tmp_path / "out"
    path = train_video_style([folders[0]], [folders[1]], steps=2, batch=1, size=SIZE, out=out,
                             encoder=TinyEncoder(), sample_every=2)
    tensors, meta = load_weights(path)
    assert {k.split(".")[0] for k in tensors} == {"adaattn_3", "transformer", "decoder"}
    assert all(t.dtype == torch.float16 for t in tensors.values())
    config = json.loads(meta["config"])
    assert config["attention"] == "cosine" and config["learned"] is True
    entry = json.loads((out / "adaattn_video_vgg16.json").read_text())
    assert "similarity" in entry["training"]["final_losses"] and entry["training"]["steps"] == 2
    assert (out / "checkpoint" / "samples" / "step_000002.png").is_file()


def test_cli_video_needs_the_adaattn_method(tmp_path):
    result = CliRunner().invoke(app, ["train", "style", "--video", "--method", "a2k", "--content", str(tmp_path),
                                      "--style", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "--method adaattn" in result.output


def test_the_shifted_pair_is_a_plausible_next_frame():
    """Frame 2 is frame 1 moved: aligning it back by the true shift explains most of the change."""
    x = F.interpolate(torch.rand(1, 3, 10, 10), size=(40, 40), mode="bilinear", align_corners=False)
    first, second = shifted_pair(x, SIZE, torch.Generator().manual_seed(2), max_rotate_deg=0, max_zoom=0)
    assert (first - second).abs().mean() < (first - first.flip(-1)).abs().mean()


def test_cli_video_weight_reaches_the_loss_and_needs_video(tmp_path, monkeypatch):
    import dynast_cli.train.video_style as video_style

    seen = {}

    def fake_train(content, style, **kwargs):
        seen.update(kwargs)
        return tmp_path / "w.safetensors"

    monkeypatch.setattr(video_style, "train_video_style", fake_train)
    args = ["train", "style", "--method", "adaattn", "--content", str(tmp_path), "--style", str(tmp_path),
            "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--video", "--video-weight", "5e9"])
    assert result.exit_code == 0, result.output
    assert seen["video_weight"] == 5e9
    result = CliRunner().invoke(app, [*args, "--video"])
    assert seen["video_weight"] == video_style.VIDEO_LOSS_WEIGHT
    result = CliRunner().invoke(app, [*args, "--video-weight", "5e9"])
    assert result.exit_code == 1 and result.output.strip() == "error: --video-weight only applies to --video training"
