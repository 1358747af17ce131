"""DynaST training: discriminator, objectives, face/pose pairs, the GAN task on the shared loop, export, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import make_image
from dynast_cli.cli import app
from dynast_cli.io.images import load_image
from dynast_cli.models.dynast import DynastConfig
from dynast_cli.weights.build import build_model
from dynast_cli.nn.discriminator import MultiscaleDiscriminator
from dynast_cli.pipelines.face import build_face_input, edges_from_photo, face_from_edges
from dynast_cli.train.generator_losses import (
    feature_matching_loss,
    gan_feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    warp_loss,
)
from dynast_cli.train.generator import generator_task, make_optimizer, train_dynast
from dynast_cli.train.face_data import FacePairs, face_class
from dynast_cli.train.loop import train_loop
from dynast_cli.train.pose_data import PosePairs, keypoint_file, read_pair_list
from dynast_cli.weights.io import load_weights, sha256_file
from stand_ins import TinyEncoder

SIZE = 32
TINY = DynastConfig(ngf=4, max_multi=2, n_layers=2, top_k=2, pos_dim=2, prune_dim=2, semantic_nc=15, crop_size=SIZE)


@pytest.fixture
def faces(tmp_path):
    """Six generated 64x64 'faces' in two classes, named as KaoKore's <class>--<id>.png."""
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(6):
        name = f"{'noble' if i < 3 else 'warrior'}--{i:04d}.png"
        Image.fromarray(make_image(64, 64, seed=i)).save(folder / name)
    return folder


def _task(faces, batch=2):
    torch.manual_seed(0)
    return generator_task(FacePairs(faces, size=SIZE), TINY, ndf=4, batch=batch, encoder=TinyEncoder(),
                       device=torch.device("cpu"), name="dynast_face")


def _run(task, ckpt, steps, resume=False, lr=1e-3):
    return train_loop(task.model, task.loss_fn, task.data, make_optimizer(task.model, lr), steps, ckpt,
                      resume=resume, seed=1, ckpt_every=2)


# ---- discriminator and objectives ------------------------------------------------------------------

def test_multiscale_discriminator_shapes():
    disc = MultiscaleDiscriminator(18, ndf=8, n_layers=4, num_d=2)
    out = disc(torch.rand(2, 18, 64, 64))
    assert len(out) == 2 and all(len(scale) == 5 for scale in out)  # 4 activations + logits per scale
    assert [t.shape[1] for t in out[0]] == [8, 16, 32, 64, 1]
    assert [t.shape[-1] for t in out[0]] == [33, 17, 9, 10, 11]  # k4 p2: stride 2, 2, 2, then 1, 1
    assert [t.shape[-1] for t in out[1]] == [17, 9, 5, 6, 7]  # the half-resolution copy
    assert sum("parametrizations.weight" in k for k in disc.state_dict()) > 0  # spectral norm present


def test_hinge_losses_on_known_logits():
    real = [[torch.zeros(1, 2, 4, 4), torch.full((1, 1, 4, 4), 2.0)]]
    fake = [[torch.zeros(1, 2, 4, 4), torch.full((1, 1, 4, 4), -2.0)]]
    assert [float(x) for x in hinge_discriminator_loss(fake, real)] == [0.0, 0.0]  # confident and right
    d_fake, d_real = hinge_discriminator_loss(real, fake)  # confident and wrong: 1 + 2 each
    assert float(d_fake) == pytest.approx(3.0) and float(d_real) == pytest.approx(3.0)
    assert float(hinge_generator_loss(fake)) == pytest.approx(2.0)


def test_gan_feature_matching_skips_the_logits_and_averages_scales():
    a = [[torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4)]] * 2
    b = [[torch.ones(1, 2, 4, 4), torch.full((1, 1, 4, 4), 9.0)]] * 2
    assert float(gan_feature_matching_loss(a, b)) == pytest.approx(1.0)
    assert float(gan_feature_matching_loss(a, a)) == 0.0


def test_warp_loss_compares_each_block_with_the_pooled_target():
    target = torch.rand(2, 3, 32, 32)
    warped = [torch.nn.functional.avg_pool2d(target, s) for s in (8, 4, 2)] + [target.clone()]
    assert float(warp_loss(warped, target)) == pytest.approx(0.0, abs=1e-6)
    shifted = [w + 0.5 for w in warped]
    assert float(warp_loss(shifted, target)) == pytest.approx(4 * 0.5, rel=1e-5)


def test_feature_matching_weights_layers():
    zeros = [torch.zeros(1, 1, 2, 2)] * 2
    ones = [torch.ones(1, 1, 2, 2)] * 2
    assert float(feature_matching_loss(ones, zeros, weights=(0.5, 2.0))) == pytest.approx(2.5)


# ---- face pairs ------------------------------------------------------------------------------------

def test_face_class_from_kaokore_names(tmp_path):
    assert face_class(tmp_path / "male-warrior--00012.jpg") == "male-warrior"
    assert face_class(tmp_path / "plain.jpg") == ""


def test_face_pairs_build_the_official_edges_only_input(faces):
    pairs = FacePairs(faces, size=SIZE)
    batch = pairs.fixed_batch(3)
    assert batch.query.shape == (3, 15, SIZE, SIZE) and batch.ref_semantics.shape == (3, 15, SIZE, SIZE)
    assert batch.ref_image.shape == (3, 3, SIZE, SIZE) and batch.target.shape == (3, 3, SIZE, SIZE)
    first = load_image(pairs.paths[0])
    own_edges = edges_from_photo(first, "canny", (SIZE, SIZE))
    assert own_edges.any()
    assert torch.equal(batch.query[0], build_face_input(own_edges))  # the face's OWN edges
    assert torch.all(batch.query[:, 1:14] == 1.0) and torch.all(batch.query[:, 14] == 0.0)
    assert batch.target.min() >= -1 and batch.target.max() <= 1
    assert torch.allclose((batch.target[0] + 1) / 2, torch.nn.functional.interpolate(
        first[None], size=(SIZE, SIZE), mode="bilinear", antialias=True)[0], atol=1 / 255)


def test_exemplars_are_other_faces_of_the_same_class(faces):
    pairs = FacePairs(faces, size=SIZE)
    gen = torch.Generator().manual_seed(0)
    for index in range(len(pairs)):
        for _ in range(5):
            other = pairs.exemplar_for(index, gen)
            assert other != index
            assert face_class(pairs.paths[other]) == face_class(pairs.paths[index])


def test_face_batches_are_reproducible_and_exemplar_differs(faces):
    pairs = FacePairs(faces, size=SIZE)
    a = pairs.batch(4, torch.Generator().manual_seed(7))
    b = pairs.batch(4, torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a.ref_image, a.target)


def test_face_pairs_on_kaokore(shared_data):
    folder = shared_data / "kaokore"
    if not folder.is_dir():
        pytest.skip("no kaokore folder")
    pairs = FacePairs(folder, size=128, max_faces=12)
    batch = pairs.batch(2, torch.Generator().manual_seed(0))
    assert batch.query.shape == (2, 15, 128, 128)
    assert 0.01 < float(batch.query[:, 0].mean()) < 0.5  # Canny finds the drawn lines, not everything
    assert set(pairs.summary()[0]["classes"]) <= {p.stem.split("--")[0] for p in pairs.paths}


# ---- the GAN task on the shared loop ---------------------------------------------------------------

def test_objective_trains_generator_and_discriminator_separately(faces):
    task = _task(faces)
    losses = task.loss_fn(task.model, task.data(torch.Generator().manual_seed(0)))
    assert set(losses) == {"warp", "gan", "gan_feat", "vgg", "perceptual", "d_fake", "d_real", "total"}
    torch.autograd.backward(losses["d_fake"] + losses["d_real"])  # the D terms reach only D
    assert all(p.grad is None for p in task.model.generator.parameters())
    assert any(p.grad is not None for p in task.model.discriminator.parameters())


def test_generator_adversarial_term_does_not_train_the_discriminator(faces):
    task = _task(faces)
    losses = task.loss_fn(task.model, task.data(torch.Generator().manual_seed(0)))
    torch.autograd.backward(losses["gan"] + losses["gan_feat"])
    assert all(p.grad is None or not p.grad.any() for p in task.model.discriminator.parameters())
    assert any(p.grad is not None and p.grad.any() for p in task.model.generator.parameters())


def test_a_few_steps_decrease_the_reconstruction_losses(faces, tmp_path):
    task = _task(faces, batch=1)
    fixed = task.data(torch.Generator().manual_seed(0))
    task.data = lambda generator: fixed
    result = _run(task, tmp_path / "ck", 8, lr=1e-3)
    warp = [h["warp"] for h in result.history]
    vgg = [h["vgg"] for h in result.history]
    assert np.mean(warp[-3:]) < 0.95 * np.mean(warp[:3])
    assert np.mean(vgg[-3:]) < np.mean(vgg[:3])


def test_resume_continues_from_the_saved_step_bit_identically(faces, tmp_path):
    straight = _task(faces, batch=1)
    full = _run(straight, tmp_path / "a", 3)
    _run(_task(faces, batch=1), tmp_path / "b", 2)
    resumed = _task(faces, batch=1)  # a new process rebuilds everything
    result = _run(resumed, tmp_path / "b", 3, resume=True)
    assert [h["step"] for h in result.history] == [1, 2, 3]
    assert [h["total"] for h in result.history] == [h["total"] for h in full.history]
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_train_dynast_exports_a_loadable_fp16_generator(faces, tmp_path):
    out = tmp_path / "out"
    path = train_dynast(FacePairs(faces, size=SIZE), "dynast_face", steps=1, batch=1, out=out,
                        encoder=TinyEncoder(), config=TINY, ndf=4, sample_every=1)
    tensors, meta = load_weights(path)
    assert path.name == "dynast_face.safetensors" and meta["architecture"] == "dynast"
    assert json.loads(meta["config"])["semantic_nc"] == 15
    assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
    assert not any(k.startswith(("discriminator", "generator.")) for k in tensors)
    entry = json.loads((out / "dynast_face.json").read_text())
    assert entry["sha256"] == sha256_file(path) and entry["training"]["steps"] == 1
    assert (out / "checkpoint" / "samples" / "step_000001.png").is_file()
    generator = build_model(path, "dynast")
    pairs = FacePairs(faces, size=SIZE)
    sample = pairs.fixed_batch(1)
    face = face_from_edges(generator, (sample.ref_image[0] + 1) / 2, sample.query[0], sample.ref_semantics[0])
    assert face.shape == (3, SIZE, SIZE) and 0 <= float(face.min()) and float(face.max()) <= 1


def test_pose_pairs_smoke_train(shared_data, tmp_path):
    root = shared_data / "pose"
    pairs = PosePairs(root / "deepfashion_ref_test.txt", root / "DeepFashion", root / "DeepFashion" / "pose", size=SIZE)
    assert keypoint_file(pairs.poses, pairs.groups[0][0]).name.endswith("_candidate.txt")
    batch = pairs.fixed_batch(2)
    assert batch.query.shape == (2, 20, SIZE, SIZE) and batch.ref_image.shape == (2, 3, SIZE, SIZE)
    config = DynastConfig(ngf=4, max_multi=2, top_k=2, pos_dim=2, prune_dim=2, semantic_nc=20, crop_size=SIZE)
    path = train_dynast(pairs, "dynast_pose", steps=1, batch=1, out=tmp_path / "pose", encoder=TinyEncoder(),
                        config=config, ndf=4, sample_every=0)
    assert json.loads(load_weights(path)[1]["config"])["semantic_nc"] == 20


def test_pair_list_errors_name_the_line(tmp_path):
    bad = tmp_path / "pairs.txt"
    bad.write_text("a.jpg,b.jpg\nonly.jpg\n")
    with pytest.raises(Exception, match="line 2"):
        read_pair_list(bad)
    bad.write_text("img\\x\\a.jpg,img\\x\\b.jpg\n")
    assert read_pair_list(bad) == [["img/x/a.jpg", "img/x/b.jpg"]]


def test_cli_rejects_an_unsupported_size(faces, tmp_path):
    result = CliRunner().invoke(app, ["train", "face", "--faces", str(faces), "--size", "96",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 1  # an option value: a usage error
    assert result.output == "error: --size must be one of 128, 256, got 96\n"


def test_train_dynast_stops_at_its_time_limit_with_an_export(faces, tmp_path):
    path = train_dynast(FacePairs(faces, size=SIZE), "dynast_face", steps=50, batch=1, out=tmp_path / "out",
                        encoder=TinyEncoder(), config=TINY, ndf=4, sample_every=0, time_limit_s=0.0)
    assert json.loads(load_weights(path)[1]["training"])["steps"] == 1
    assert (tmp_path / "out" / "checkpoint" / "state.pt").is_file()
