"""DynaST style ``locality`` (matched vs global statistics per level) and the decoder fine-tuned for it
(``dynast train style --method dynast --train-decoder``): exact blends, export, round trip, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import make_image_folder
from dynast_cli.cli import app
from dynast_cli.models.dynast_style import LEVELS, DynastStyleModel
from dynast_cli.weights.build import build_model
from dynast_cli.nn.decoders import VGGDecoder
from dynast_cli.nn.norm import adain
from dynast_cli.train.data import RandomCrops
from dynast_cli.train.loop import train_loop
from dynast_cli.train.style import prune_mask_task, train_style
from dynast_cli.weights.io import load_weights
from stand_ins import TinyEncoder, as_method, one_thread  # noqa: F401 (autouse fixture)


def _model(**options) -> DynastStyleModel:
    torch.manual_seed(0)
    return DynastStyleModel(TinyEncoder(), VGGDecoder(skip=True), **options).eval()


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, 48, 64, generator=g), torch.rand(1, 3, 40, 56, generator=g)  # style not a multiple of 16


@pytest.mark.parametrize("locality", [(0.0, 0.0, 0.0), (0.5, 0.0, 0.25), (1.0, 1.0, 1.0)])
def test_locality_blends_matched_and_global_statistics_exactly(locality):
    content, style = _inputs()
    local_model, model = _model(), _model(locality=locality)
    with torch.no_grad():
        feats = model.encoder(content)
        local = local_model.transform(feats, local_model.prepare_style(style))
        blended = model.transform(feats, model.prepare_style(style))
        style_feats = model.encoder(style)  # AdaIN's statistics come from the unpadded style
    for j, level in enumerate(LEVELS):
        b = locality[j]
        expected = local[j] if b == 1.0 else b * local[j] + (1 - b) * adain(feats[level], style_feats[level])
        torch.testing.assert_close(blended[j], expected, rtol=0, atol=1e-5)


def test_invalid_locality_is_refused():
    with pytest.raises(ValueError, match="locality"):
        _model(locality=(0.5, 0.0))
    with pytest.raises(ValueError, match="locality"):
        _model(locality=(1.5, 0.0, 0.0))


def _folder(root, name, n, h=40, w=56, seed=0):
    return make_image_folder(root, name, n, h, w, seed)


def test_train_decoder_trains_only_the_decoder_and_lowers_the_loss(tmp_path):
    contents = RandomCrops([_folder(tmp_path, "c", 3)], size=32)
    styles = RandomCrops([_folder(tmp_path, "s", 3, 48, 40, seed=7)], size=32)
    torch.manual_seed(0)
    task = prune_mask_task(TinyEncoder(), contents, styles, 2, torch.device("cpu"), VGGDecoder(skip=True),
                       train_decoder=True, locality=(0.5, 0.0, 0.0))
    trained = {n for n, p in task.model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith("decoder.") for n in trained)
    assert task.model.prune is None and task.model.locality == (0.5, 0.0, 0.0)
    optimizer = torch.optim.Adam([p for p in task.model.parameters() if p.requires_grad], lr=1e-3)
    result = train_loop(task.model, task.loss_fn, task.data, optimizer, 20, tmp_path / "ck", seed=3)
    totals = [h["total"] for h in result.history]
    assert np.mean(totals[-5:]) < np.mean(totals[:5])
    assert set(result.final_losses()) == {"content", "global", "local", "gram", "fine", "anchor", "total"}
    assert result.history[0]["anchor"] == 0  # the first step decodes exactly what the frozen reference decodes


def test_warp_finer_carries_each_matchs_finer_block():
    """Against a plain loop: query position (y, x) gets the style's f x f block under its match."""
    from dynast_cli.models.dynast_style import warp_finer

    gen = torch.Generator().manual_seed(0)
    for factor, (hs, ws), (hq, wq) in ((2, (3, 4), (2, 5)), (4, (2, 2), (3, 1)), (1, (2, 3), (2, 2))):
        feat = torch.randn(2, 3, hs * factor, ws * factor, generator=gen)
        match = torch.randint(0, hs * ws, (2, hq * wq), generator=gen)
        out = warp_finer(feat, match, (hq, wq), factor)
        expected = torch.empty(2, 3, hq * factor, wq * factor)
        for b in range(2):
            for q in range(hq * wq):
                y, x = divmod(q, wq)
                my, mx = divmod(int(match[b, q]), ws)
                expected[b, :, y * factor:(y + 1) * factor, x * factor:(x + 1) * factor] = \
                    feat[b, :, my * factor:(my + 1) * factor, mx * factor:(mx + 1) * factor]
        assert torch.equal(out, expected), factor


def test_gram_and_low_pass_losses_against_hand_values():
    from dynast_cli.nn.losses import gram_loss, gram_matrix, low_pass_loss

    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2).repeat(1, 2, 1, 1)
    f[:, 1] *= -1
    assert torch.equal(gram_matrix(f), torch.tensor([[[7.5, -7.5], [-7.5, 7.5]]]))  # (1+4+9+16)/4
    g = [f, f * 2]
    assert gram_loss(g, g, layers=(0, 1)) == 0
    # doubling a map multiplies its Gram by 4: MSE of (4 - 1) * 7.5 over the 4 entries
    assert torch.isclose(gram_loss([f * 2], [f], layers=(0,)), torch.tensor(22.5 ** 2))
    a = torch.zeros(1, 3, 16, 16)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 2.0 - 1.0  # +-1, mean 0 per 8x8 cell
    assert low_pass_loss(a + checker, a) == 0  # detail finer than the cell is free
    assert torch.isclose(low_pass_loss(a + 0.5, a), torch.tensor(0.25))


def test_train_decoder_fine_tunes_for_the_shipped_defaults_matching(tmp_path):
    """``--train-decoder`` trains the decoder for the matching the default runs (its temperature and
    feature warping), read here from the repository's manifest, so the two cannot drift apart."""
    from dynast_cli.train.style import DYNAST_DECODER_MATCHING

    root = Path(__file__).resolve().parents[1]
    entry = next(e for e in json.loads((root / "weights" / "manifest.json").read_text())["weights"]
                 if e["name"] == "dynast_style_vgg16")
    shipped = {k: tuple(v) if isinstance(v, list) else v for k, v in entry["config"].items()}
    assert DYNAST_DECODER_MATCHING == {k: shipped[k] for k in DYNAST_DECODER_MATCHING}
    contents = RandomCrops([_folder(tmp_path, "c", 2)], size=32)
    styles = RandomCrops([_folder(tmp_path, "s", 2, 48, 40, seed=7)], size=32)
    task = prune_mask_task(TinyEncoder(), contents, styles, 1, torch.device("cpu"), VGGDecoder(skip=True),
                           train_decoder=True)
    for key in ("smooth", "warp", "noise", "renorm"):  # the exported file runs as the default does, seed included
        assert tuple(np.atleast_1d(getattr(task.model, key))) == tuple(np.atleast_1d(shipped[key])) \
            == tuple(np.atleast_1d(task.config[key])), key
    # the prune mask keeps the parameter-free matching's own temperature and no warping
    prune = prune_mask_task(TinyEncoder(), contents, styles, 1, torch.device("cpu"), VGGDecoder(skip=True))
    assert prune.model.warp == 0.0


def test_train_decoder_matches_the_seeded_content_as_the_default_runs(tmp_path, monkeypatch):
    """The exported file seeds the content at inference (noise 0.1), so the fine-tuned decoder must learn the
    features of the seeded content; training matched the plain content before."""
    from dynast_cli.models.dynast_style import texture_seed

    contents = RandomCrops([_folder(tmp_path, "c", 2)], size=32)
    styles = RandomCrops([_folder(tmp_path, "s", 2, 48, 40, seed=7)], size=32)
    task = prune_mask_task(TinyEncoder(), contents, styles, 1, torch.device("cpu"), VGGDecoder(skip=True),
                           train_decoder=True)
    assert task.model.noise == 0.1
    seen = []
    real = task.model.transform
    monkeypatch.setattr(task.model, "transform", lambda feats, state, **kw: seen.append(feats) or real(feats, state, **kw))
    content, style = task.data(torch.Generator().manual_seed(0))
    task.loss_fn(task.model, (content, style))
    with torch.no_grad():
        expected = task.model.encoder(texture_seed(content, 0.1))
    assert len(seen) == 1 and all(torch.equal(a, b) for a, b in zip(seen[0], expected))
    assert not torch.equal(seen[0][2], task.model.encoder(content)[2])


def test_trained_decoder_exports_with_its_locality_and_round_trips(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNAST_WEIGHTS", str(tmp_path / "no-weights"))  # a fresh decoder to start from
    content, style = _folder(tmp_path, "c", 2, 32, 32), _folder(tmp_path, "s", 2, 32, 40, seed=9)
    encoder = TinyEncoder()
    path = train_style([content], [style], method="dynast", steps=2, batch=1, size=32, lr=1e-2, out=tmp_path / "o",
                       encoder=encoder, sample_every=0, train_decoder=True, locality=(0.5, 0.0, 0.0))
    tensors, meta = load_weights(path)
    assert {k.split(".")[0] for k in tensors} == {"decoder"} and all(t.dtype == torch.float16 for t in tensors.values())
    config = json.loads(meta["config"])
    assert config["locality"] == [0.5, 0.0, 0.0] and config["prune_dim"] is None
    model = build_model(path, "dynast_style", encoder=encoder, decoder=None)
    assert model.locality == (0.5, 0.0, 0.0) and model.prune is None
    for name, value in model.decoder.state_dict().items():
        assert torch.equal(value, tensors[f"decoder.{name}"].float())
    c, s = _inputs()
    with torch.no_grad():
        out = as_method(model).stylize(c, [model.prepare_style(s)], [1.0])
    assert out.shape == c.shape and torch.isfinite(out).all()


def test_train_cli_rejects_a_bad_locality(tmp_path):
    result = CliRunner().invoke(app, ["train", "style", "--content", str(tmp_path), "--style", str(tmp_path),
                                      "--method", "dynast", "--locality", "0.5,2"])
    assert result.exit_code == 1
    assert result.output.strip() == ("error: --locality takes three numbers in [0, 1] for relu3_1,relu4_1,relu5_1, "
                                     "got '0.5,2'")


def test_the_dynast_method_uses_a_files_own_decoder_without_loading_the_universal_one(tmp_path, monkeypatch):
    from dynast_cli.styles import base
    from dynast_cli.styles.dynast import DynastMethod
    from dynast_cli.weights.io import save_weights

    decoder = VGGDecoder(skip=True)
    path = tmp_path / "own.safetensors"
    save_weights({f"decoder.{k}": v for k, v in decoder.state_dict().items()}, path,
                 {"architecture": "dynast_style", "config": {**_model(locality=(0.3, 0, 0)).config(), "encoder": "vgg16"}})

    def no_universal(*args, **kwargs):
        raise AssertionError("the universal decoder was loaded")

    monkeypatch.setattr(base, "universal_decoder", no_universal)
    monkeypatch.setattr(base, "vgg16", lambda device, path=None: TinyEncoder())
    model = DynastMethod.build(weights=path).model
    assert model.locality == (0.3, 0.0, 0.0)
    weight = next(p for p in model.decoder.parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)  # the inference layout, as the universal one
    for name, value in model.decoder.state_dict().items():
        assert torch.equal(value, decoder.state_dict()[name])


def test_a_configuration_only_file_runs_the_parameter_free_matching_with_its_locality(tmp_path, monkeypatch):
    """The default weights are a config (locality) for the universal decoder: no tensors at all."""
    from dynast_cli.errors import WeightsError
    from dynast_cli.styles import base
    from dynast_cli.styles.dynast import DynastMethod
    from dynast_cli.weights.io import save_weights

    reference = _model(locality=(0.15, 0, 0))
    meta = {"architecture": "dynast_style", "config": {**reference.config(), "encoder": "vgg16"}}
    path = save_weights({}, tmp_path / "config_only.safetensors", meta)
    monkeypatch.setattr(base, "universal_decoder", lambda device, path=None: reference.decoder)
    monkeypatch.setattr(base, "vgg16", lambda device, path=None: reference.encoder)
    model = DynastMethod.build(weights=path).model
    assert model.locality == (0.15, 0.0, 0.0) and model.prune is None and model.decoder is reference.decoder
    content, style = torch.rand(1, 3, 48, 64), torch.rand(1, 3, 40, 40)
    with torch.inference_mode():
        got = as_method(model).stylize(content, [model.prepare_style(style)], [1.0])
        expected = as_method(reference.eval()).stylize(content, [reference.prepare_style(style)], [1.0])
    torch.testing.assert_close(got, expected)

    stray = save_weights({"encoder.w": torch.zeros(1)}, tmp_path / "stray.safetensors", meta)
    with pytest.raises(WeightsError, match="no dynast_style part: encoder.w"):
        build_model(stray, "dynast_style", encoder=TinyEncoder(), decoder=VGGDecoder(skip=True))
    with pytest.raises(WeightsError, match="holds no decoder"):
        build_model(path, "dynast_style", encoder=TinyEncoder(), decoder=None)


def test_the_decoder_fine_tune_defaults_to_its_own_learning_rate(tmp_path, monkeypatch):
    """At the general 1e-4 one Adam step of the fine-tune moved the default's output by 0.2 RMS at 1/8 scale;
    without --lr it runs at DYNAST_DECODER_LR, and the manifest entry records the rate used."""
    from dynast_cli.train.style import DEFAULT_LR, DYNAST_DECODER_LR

    monkeypatch.setenv("DYNAST_WEIGHTS", str(tmp_path / "no-weights"))  # a fresh decoder to start from
    content, style = _folder(tmp_path, "c", 1, 32, 32), _folder(tmp_path, "s", 1, 32, 40, seed=9)
    common = dict(steps=1, batch=1, size=32, encoder=TinyEncoder(), sample_every=0)
    for method, decoder, lr in (("dynast", True, DYNAST_DECODER_LR), ("decoder", False, DEFAULT_LR)):
        path = train_style([content], [style], method=method, train_decoder=decoder, out=tmp_path / method, **common)
        entry = json.loads(path.with_suffix(".json").read_text())
        assert entry["training"]["lr"] == lr, method
    assert DYNAST_DECODER_LR < DEFAULT_LR
