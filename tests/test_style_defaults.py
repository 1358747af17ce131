"""Which model `--method adaattn` / `a2k` build without --weights, with --weights none, and with cosine attention."""

from __future__ import annotations

import json

import torch

from dynast_cli.models.adaattn import AdaAttNModel
from dynast_cli.styles import build_method
from dynast_cli.weights.io import save_weights, sha256_file
from stand_ins import TinyEncoder


def _install_learned_adaattn(folder, monkeypatch):
    """A trained-AdaAttN export (as `dynast train style --method adaattn` writes it) as the installed default."""
    from dynast_cli.weights import build as vgg_module

    folder.mkdir()
    model = AdaAttNModel(TinyEncoder(), learned=True).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    config = {**model.config(), "encoder": "vgg16"}
    path = save_weights(state, folder / "adaattn_vgg16.safetensors", {"architecture": "adaattn", "config": config})
    entry = {"name": "adaattn_vgg16", "file": path.name, "architecture": "adaattn", "config": config,
             "sha256": sha256_file(path)}
    (folder / "manifest.json").write_text(json.dumps({"weights": [entry]}))
    monkeypatch.setenv("DYNAST_WEIGHTS", str(folder))
    monkeypatch.setattr(vgg_module, "load_vgg16", lambda device="cpu": TinyEncoder())
    return model


def test_adaattn_uses_the_installed_learned_model_for_softmax_attention_only(stand_ins, tmp_path, monkeypatch):
    trained = _install_learned_adaattn(tmp_path / "weights", monkeypatch)
    default = build_method("adaattn").model
    assert default.learned
    for key, value in trained.state_dict().items():
        if not key.startswith("encoder."):
            assert torch.equal(default.state_dict()[key], value), key
    # the learned layers were trained with softmax attention: cosine (the video model) stays parameter-free
    assert not build_method("adaattn", attention="cosine").model.learned
    assert not build_method("adaattn", weights="none").model.learned
    assert not build_method("adaattn", weights="NONE").model.learned
    assert not build_method("a2k").model.learned  # no learned StyA2K is installed


def test_adaattn_without_installed_weights_is_parameter_free(stand_ins, tmp_path, monkeypatch):
    monkeypatch.setenv("DYNAST_WEIGHTS", str(tmp_path / "empty"))
    assert not build_method("adaattn").model.learned
