"""weights/manifest.json: reading, sha256 verification, defaults, and the committed decoder."""

from __future__ import annotations

import json

import pytest
import torch

from dynast_cli.errors import WeightsError
from dynast_cli.weights.io import save_weights, sha256_file
from dynast_cli.weights.registry import default_weights, get_weights, installed, read_manifest, weights_dir


def _install(folder, name="decoder_vgg16", tensors=None):
    path = save_weights(tensors or {"w": torch.ones(2)}, folder / f"{name}.safetensors", {"architecture": "decoder"})
    entry = {"name": name, "file": path.name, "architecture": "decoder", "config": {"skip": True},
             "sha256": sha256_file(path), "licence": "ours"}
    (folder / "manifest.json").write_text(json.dumps({"weights": [entry]}))
    return path


def test_default_weights_resolves_and_verifies(tmp_path):
    path = _install(tmp_path)
    assert default_weights("decoder", tmp_path) == path
    assert get_weights("decoder_vgg16", tmp_path) == path
    assert read_manifest(tmp_path)["decoder_vgg16"].config == {"skip": True}


def test_no_manifest_or_no_default_gives_none(tmp_path):
    assert default_weights("decoder", tmp_path) is None
    _install(tmp_path, name="other")
    assert default_weights("decoder", tmp_path) is None
    assert installed("adaattn_vgg16", tmp_path) is None


def test_a_replaced_file_fails_the_sha256_check(tmp_path):
    path = _install(tmp_path)
    save_weights({"w": torch.zeros(2)}, path, {"architecture": "decoder"})
    with pytest.raises(WeightsError, match="sha256 mismatch") as info:
        default_weights("decoder", tmp_path)
    assert str(path) in str(info.value)


def test_missing_file_unknown_name_and_bad_manifest(tmp_path):
    path = _install(tmp_path)
    with pytest.raises(WeightsError, match="no weights named 'nope'.*known: decoder_vgg16"):
        get_weights("nope", tmp_path)
    path.unlink()
    with pytest.raises(WeightsError, match="missing"):
        get_weights("decoder_vgg16", tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(WeightsError, match="manifest.json: not a valid weights manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"weights": [{"name": "x"}]}))
    with pytest.raises(WeightsError, match="lacks file, architecture, config, sha256"):
        read_manifest(tmp_path)


def test_env_var_points_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNAST_WEIGHTS", str(tmp_path))
    assert weights_dir() == tmp_path


def test_committed_manifest_entries_verify():
    """Every file the repository's manifest lists is present and matches its sha256."""
    entries = read_manifest()
    if not entries:
        pytest.skip("no weights committed yet")
    for name in entries:
        assert get_weights(name).is_file()
