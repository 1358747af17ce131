"""The shared training loop, the losses, the crop sampler and `dynast train style` (stand-in encoder)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import make_image_folder
from dynast_cli.cli import app
from dynast_cli.errors import InputError, OutputError, UsageError, WeightsError
from dynast_cli.train.data import RandomCrops, spread_subset
from dynast_cli.train.loop import load_checkpoint, save_checkpoint, train_loop, TrainResult
from dynast_cli.nn.losses import content_loss, perceptual_loss, reconstruction_loss, style_loss
from dynast_cli.train.style import decoder_task, train_style
from dynast_cli.weights.io import load_weights, sha256_file
from stand_ins import TinyEncoder, one_thread  # noqa: F401 (autouse fixture)


def _folder(root, name, n, h=40, w=56, seed=0):
    return make_image_folder(root, name, n, h, w, seed)


@pytest.fixture
def crops(tmp_path):
    return RandomCrops([_folder(tmp_path, "a", 3), _folder(tmp_path, "b", 2, 30, 20, seed=5)], size=32)


def _task(crops, batch=2):
    torch.manual_seed(0)
    return decoder_task(TinyEncoder(), crops, batch, torch.device("cpu"))


# ---- losses -------------------------------------------------------------------------------------

def test_style_loss_zero_for_same_statistics_and_positive_otherwise():
    feats = [torch.rand(2, c, 8, 8) for c in (4, 8)]
    shuffled = [f[..., torch.randperm(8), :] for f in feats]  # same channel statistics, other layout
    assert style_loss(feats, shuffled).item() == pytest.approx(0.0, abs=1e-6)
    assert style_loss(feats, [f * 2 + 1 for f in feats]).item() > 0.1


def test_style_loss_broadcasts_a_single_style():
    out = [torch.rand(3, 4, 8, 8)]
    style = [torch.rand(1, 4, 5, 5)]
    expected = sum(style_loss([o[None]], style) for o in out[0]) / 3
    assert style_loss(out, style).item() == pytest.approx(expected.item(), rel=1e-5)


def test_content_loss_ignores_channel_affine_changes_but_not_layout():
    content = [torch.rand(1, 4, 8, 8) for _ in range(5)]
    scaled = [f * 3 + 2 for f in content]
    assert content_loss(scaled, content).item() == pytest.approx(0.0, abs=1e-6)
    flipped = [f.flip(-1) for f in content]
    assert content_loss(flipped, content).item() > 0.1
    # only relu4_1 and relu5_1 count by default
    changed_shallow = [torch.rand(1, 4, 8, 8), *content[1:]]
    assert content_loss(changed_shallow, content).item() == pytest.approx(0.0, abs=1e-6)


def test_perceptual_loss_is_relative_to_each_layers_energy():
    target = [torch.rand(1, 4, 8, 8), 100 * torch.rand(1, 4, 4, 4)]
    out = [t * 1.1 for t in target]
    per_layer = [perceptual_loss([o], [t], (1.0,)).item() for o, t in zip(out, target)]
    assert per_layer[0] == pytest.approx(per_layer[1], rel=1e-4)
    assert perceptual_loss(out, target, (1.0, 0.0)).item() == pytest.approx(per_layer[0], rel=1e-5)


def test_reconstruction_loss_terms():
    x = torch.rand(1, 3, 8, 8)
    feats = [torch.rand(1, 4, 8, 8)]
    same = reconstruction_loss(x, x, feats, feats)
    assert same["total"].item() == pytest.approx(0.0, abs=1e-7)
    other = reconstruction_loss(x + 0.25, x, feats, feats)
    assert other["pixel"].item() == pytest.approx(0.25, rel=1e-5)
    assert other["total"].item() == pytest.approx(other["pixel"].item() + other["perceptual"].item())


# ---- data ---------------------------------------------------------------------------------------

def test_spread_subset_keeps_ends_and_count():
    paths = list(range(10))
    assert spread_subset(paths, 3) == [0, 4, 9] or spread_subset(paths, 3) == [0, 5, 9]
    assert spread_subset(paths, None) == paths
    assert spread_subset(paths, 20) == paths


def test_crops_shape_range_and_reproducibility(crops):
    a = crops.crops(4, torch.Generator().manual_seed(1))
    b = crops.crops(4, torch.Generator().manual_seed(1))
    c = crops.crops(4, torch.Generator().manual_seed(2))
    assert a.shape == (4, 3, 32, 32) and a.dtype == torch.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(crops) == 5 and [s.count for s in crops.summary] == [3, 2]
    assert crops.center_crops(3).shape == (3, 3, 32, 32)


def test_crops_of_an_empty_folder_name_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no images"):
        RandomCrops([tmp_path / "empty"], size=32)


# ---- the loop -----------------------------------------------------------------------------------

def _run(task, ckpt, steps, resume=False, lr=1e-3, **kw):
    optimizer = torch.optim.Adam(task.model.parameters(), lr=lr)
    return train_loop(task.model, task.loss_fn, task.data, optimizer, steps, ckpt, resume=resume, seed=3,
                      ckpt_every=kw.pop("ckpt_every", 100), **kw)


def test_a_few_steps_decrease_the_loss(crops, tmp_path):
    result = _run(_task(crops), tmp_path / "ck", 30, lr=3e-4)
    totals = [h["total"] for h in result.history]
    assert len(totals) == 30 and result.step == 30
    assert np.mean(totals[-5:]) < 0.8 * np.mean(totals[:5])
    assert set(result.final_losses()) == {"pixel", "perceptual", "total"}


def test_resume_continues_bit_identically(crops, tmp_path):
    straight = _task(crops)
    full = _run(straight, tmp_path / "a", 6)
    first = _task(crops)
    _run(first, tmp_path / "b", 3)
    resumed = _task(crops)  # a fresh process would rebuild the task from scratch
    result = _run(resumed, tmp_path / "b", 6, resume=True)
    assert result.step == 6
    assert [h["total"] for h in result.history] == [h["total"] for h in full.history]
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_an_existing_checkpoint_needs_resume(crops, tmp_path):
    _run(_task(crops), tmp_path / "ck", 1)
    with pytest.raises(OutputError, match="--resume"):
        _run(_task(crops), tmp_path / "ck", 2)


def test_resume_without_a_checkpoint_starts_at_step_0_and_says_so(crops, tmp_path):
    """A scheduler may always pass --resume; with nothing to resume the run starts afresh, and says so
    (it did silently: the README's "--resume continues it" could not be told from a fresh start)."""
    import io

    from rich.console import Console

    out = io.StringIO()
    task = _task(crops)
    optimizer = torch.optim.Adam(task.model.parameters(), lr=1e-3)
    result = train_loop(task.model, task.loss_fn, task.data, optimizer, 1, tmp_path / "ck", resume=True,
                        console=Console(file=out, width=200))
    assert result.step == 1
    assert f"notice: --resume: no checkpoint in {tmp_path / 'ck'} yet; starting at step 0" in out.getvalue()


def test_a_log_gets_whole_lines_and_the_last_step(crops, tmp_path):
    """Written to a file (not a terminal), the log had a line every 25 steps and then Rich's final bar, cut to
    the console's width mid-number; now each logged step is one whole line, the last step included."""
    import io

    from rich.console import Console

    out = io.StringIO()
    _run(_task(crops), tmp_path / "ck", 7, ckpt_every=5, console=Console(file=out, width=40))
    lines = out.getvalue().splitlines()
    assert [ln.split()[1] for ln in lines] == ["5/7", "7/7"]
    assert all(ln.startswith("step ") and ln.endswith(" s/step") for ln in lines)


def test_checkpoint_round_trip(crops, tmp_path):
    task = _task(crops)
    optimizer = torch.optim.Adam(task.model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(7)
    loss = task.loss_fn(task.model, task.data(generator))["total"]
    loss.backward()
    optimizer.step()
    saved = TrainResult(step=1, wall_s=2.5, history=[{"step": 1, "total": loss.item()}])
    save_checkpoint(tmp_path, task.model, optimizer, generator, saved)

    other = _task(crops)
    other_opt = torch.optim.Adam(other.model.parameters(), lr=1e-3)
    other_gen = torch.Generator().manual_seed(99)
    restored = load_checkpoint(tmp_path, other.model, other_opt, other_gen)
    assert restored == saved
    assert torch.equal(other_gen.get_state(), generator.get_state())
    for key, value in task.model.state_dict().items():
        assert torch.equal(value, other.model.state_dict()[key])
    a, b = optimizer.state_dict()["state"], other_opt.state_dict()["state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k]["exp_avg"], b[k]["exp_avg"]) for k in a)


def test_samples_are_written(crops, tmp_path):
    task = _task(crops)
    _run(task, tmp_path / "ck", 2, sample_fn=task.sample_fn, sample_every=2)
    grid = Image.open(tmp_path / "ck" / "samples" / "step_000002.png")
    assert grid.size[0] > 2 * 32 and grid.size[1] > 4 * 32  # 4 rows of (input, output)


# ---- train_style and the CLI --------------------------------------------------------------------

def test_train_style_exports_fp16_weights_and_a_manifest_entry(tmp_path):
    content, style = _folder(tmp_path, "c", 2), _folder(tmp_path, "s", 2, seed=9)
    path = train_style([content], [style], steps=2, batch=1, size=32, out=tmp_path / "out", encoder=TinyEncoder(),
                       sample_every=0)
    tensors, meta = load_weights(path)
    assert meta["architecture"] == "decoder" and json.loads(meta["config"]) == {"skip": True}
    assert all(t.dtype == torch.float16 for t in tensors.values())
    entry = json.loads((tmp_path / "out" / "decoder_vgg16.json").read_text())
    assert entry["sha256"] == sha256_file(path) and entry["file"] == path.name
    assert entry["training"]["steps"] == 2
    assert [d["images"] for d in entry["training"]["data"]] == [2, 2]


def test_train_style_refuses_an_unknown_method(tmp_path):
    with pytest.raises(UsageError, match="unknown --method 'nope'"):
        train_style([tmp_path], [tmp_path], method="nope", encoder=TinyEncoder())


@pytest.mark.parametrize("method, prefixes", [("adaattn", {"adaattn_3", "transformer", "decoder"}),
                                              ("a2k", {"a2k", "transformer", "decoder"})])
def test_attention_models_train_and_export_without_the_encoder(tmp_path, monkeypatch, method, prefixes):
    monkeypatch.setenv("DYNAST_WEIGHTS", str(tmp_path / "no-weights"))  # start from a fresh decoder
    content, style = _folder(tmp_path, "c", 2, 32, 32), _folder(tmp_path, "s", 2, 32, 40, seed=9)
    out = tmp_path / "out"
    path = train_style([content], [style], method=method, steps=2, batch=1, size=32, lr=1e-3, out=out,
                       encoder=TinyEncoder(), sample_every=2)
    tensors, meta = load_weights(path)
    assert {k.split(".")[0] for k in tensors} == prefixes
    assert json.loads(meta["config"])["encoder"] == "vgg16"
    entry = json.loads((out / f"{path.stem}.json").read_text())
    assert set(entry["training"]["final_losses"]) == {"content", "global", "local", "total"}
    assert all(np.isfinite(v) for v in entry["training"]["final_losses"].values())
    assert (out / "checkpoint" / "samples" / "step_000002.png").is_file()


def test_cli_rejects_a_bad_crop_size(tmp_path):
    result = CliRunner().invoke(app, ["train", "style", "--content", str(tmp_path), "--style", str(tmp_path),
                                      "--size", "100", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.output.strip() == "error: --size must be a multiple of 16, got 100"


def test_a_time_limit_stops_early_with_a_checkpoint_and_sample_that_resume_continues(crops, tmp_path):
    task = _task(crops)
    # a limit of 0 s stops after the first step, exactly like a run of 1 step
    result = _run(task, tmp_path / "ck", 50, sample_fn=task.sample_fn, sample_every=20, time_limit_s=0.0)
    assert result.step == 1 and len(result.history) == 1
    assert (tmp_path / "ck" / "samples" / "step_000001.png").is_file()  # the last step always gets a sample
    resumed = _run(_task(crops), tmp_path / "ck", 3, resume=True)
    straight = _run(_task(crops), tmp_path / "straight", 3)
    assert resumed.step == 3
    assert [h["total"] for h in resumed.history] == [h["total"] for h in straight.history]


def test_train_style_records_steps_and_precision_of_a_time_limited_run(tmp_path):
    content, style = _folder(tmp_path, "c", 2), _folder(tmp_path, "s", 2, seed=9)
    path = train_style([content], [style], steps=40, batch=1, size=32, out=tmp_path / "out", encoder=TinyEncoder(),
                       sample_every=0, time_limit_s=0.0)
    training = json.loads(load_weights(path)[1]["training"])
    assert training["steps"] == 1 and training["precision"] == "fp32"


def test_cli_rejects_an_unknown_precision(tmp_path):
    result = CliRunner().invoke(app, ["train", "style", "--content", str(tmp_path), "--style", str(tmp_path),
                                      "--precision", "fp8", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.output.strip() == "error: unknown --precision 'fp8' (choose from auto, bf16, fp32)"


def test_decoder_training_can_start_from_a_weights_file(tmp_path):
    content, style = _folder(tmp_path, "c", 2), _folder(tmp_path, "s", 2, seed=9)
    first = train_style([content], [style], steps=2, batch=1, size=32, lr=1e-3, out=tmp_path / "a",
                        encoder=TinyEncoder(), sample_every=0)
    # lr 0: the continued decoder must still be exactly the file it started from
    again = train_style([content], [style], steps=1, batch=1, size=32, lr=0.0, out=tmp_path / "b",
                        encoder=TinyEncoder(), sample_every=0, init_decoder=first)
    start, end = load_weights(first)[0], load_weights(again)[0]
    assert start.keys() == end.keys() and all(torch.equal(start[k], end[k]) for k in start)
    assert json.loads(load_weights(again)[1]["training"])["init_decoder"].startswith(first.name)
    fresh = train_style([content], [style], steps=1, batch=1, size=32, lr=0.0, out=tmp_path / "c",
                        encoder=TinyEncoder(), sample_every=0, seed=1)
    assert not all(torch.equal(start[k], load_weights(fresh)[0][k]) for k in start)


def test_attention_training_continues_from_its_own_export(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNAST_WEIGHTS", str(tmp_path / "no-weights"))
    content, style = _folder(tmp_path, "c", 2, 32, 32), _folder(tmp_path, "s", 2, 32, 40, seed=9)
    common = dict(method="adaattn", batch=1, size=32, encoder=TinyEncoder(), sample_every=0)
    first = train_style([content], [style], steps=2, lr=1e-3, out=tmp_path / "a", **common)
    # lr 0: the continued model must export exactly the file it started from (every trained layer)
    again = train_style([content], [style], steps=1, lr=0.0, out=tmp_path / "b", init=first, **common)
    start, end = load_weights(first)[0], load_weights(again)[0]
    assert start.keys() == end.keys() and all(torch.equal(start[k], end[k]) for k in start)
    assert json.loads(load_weights(again)[1]["training"])["init"].startswith(first.name)

    a2k = train_style([content], [style], method="a2k", steps=1, batch=1, size=32, out=tmp_path / "c",
                      encoder=TinyEncoder(), sample_every=0)
    with pytest.raises(WeightsError, match="holds 'stya2k' weights, expected 'adaattn'"):
        train_style([content], [style], steps=1, out=tmp_path / "d", init=a2k, **{**common, "lr": 0.0})
    with pytest.raises(UsageError, match="^--init continues a trained adaattn or a2k model, not --method decoder$"):
        train_style([content], [style], method="decoder", init=first, encoder=TinyEncoder())


def test_attention_training_refuses_to_continue_a_file_of_another_config(tmp_path, monkeypatch):
    """The video model is an 'adaattn' file too, but with cosine attention: continuing it as softmax would
    silently change the model."""
    from dynast_cli.models.adaattn import AdaAttNModel
    from dynast_cli.weights.io import save_weights

    monkeypatch.setenv("DYNAST_WEIGHTS", str(tmp_path / "no-weights"))
    content, style = _folder(tmp_path, "c", 2, 32, 32), _folder(tmp_path, "s", 2, 32, 40, seed=9)
    cosine = AdaAttNModel(TinyEncoder(), learned=True, attention="cosine")
    state = {k: v for k, v in cosine.state_dict().items() if not k.startswith("encoder.")}
    path = save_weights(state, tmp_path / "video.safetensors",
                        {"architecture": "adaattn", "config": {**cosine.config(), "encoder": "vgg16"}})
    with pytest.raises(WeightsError, match="'attention': 'cosine'"):
        train_style([content], [style], method="adaattn", steps=1, batch=1, size=32, out=tmp_path / "o",
                    encoder=TinyEncoder(), sample_every=0, init=path)


def test_attention_training_weights_its_content_term_as_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNAST_WEIGHTS", str(tmp_path / "no-weights"))
    content, style = _folder(tmp_path, "c", 2, 32, 32), _folder(tmp_path, "s", 2, 32, 40, seed=9)
    common = dict(method="adaattn", steps=1, batch=1, size=32, lr=0.0, encoder=TinyEncoder(), sample_every=0)
    runs = {}
    for weight in (None, 0.0, 1e3):
        path = train_style([content], [style], out=tmp_path / str(weight), content_weight=weight, **common)
        runs[weight] = json.loads(load_weights(path)[1]["training"])
    default, zero, heavy = runs[None], runs[0.0], runs[1e3]
    assert default["loss"] == zero["loss"] == "0.0 * content + 10.0 * global + 3.0 * local"  # the papers'
    assert heavy["loss"] == "1000.0 * content + 10.0 * global + 3.0 * local"
    # same seed, same crops, lr 0: the totals differ by exactly the weighted content term
    d, h = default["final_losses"], heavy["final_losses"]
    assert d["content"] == h["content"] > 0
    assert h["total"] == pytest.approx(d["total"] + 1e3 * h["content"], rel=1e-5)
    with pytest.raises(UsageError, match="^--content-weight weights .* content term, not --method decoder's$"):
        train_style([content], [style], method="decoder", content_weight=1.0, encoder=TinyEncoder())


def test_cli_refuses_a_content_weight_for_video_training(tmp_path):
    result = CliRunner().invoke(app, ["train", "style", "--content", str(tmp_path), "--style", str(tmp_path),
                                      "--method", "adaattn", "--video", "--content-weight", "1",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.output.strip() == "error: --content-weight does not apply to --video training"
