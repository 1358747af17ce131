"""Shared fixtures. Data from ../shared/data is optional: tests that need it skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DYNAST_SHARED_DATA", ROOT.parent / "shared" / "data"))
NETWORK_ENV = "DYNAST_TEST_NETWORK"


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture(autouse=True)
def _fp32(monkeypatch):
    """Every test runs the inference convolutions in fp32 (subprocesses too, through the environment):
    ``--precision auto`` picks bf16 on CPUs with native bfloat16 only, and a test must not pass or fail
    by the CPU it runs on. ``tests/test_precision.py`` tests the bf16 path itself."""
    from dynast_cli import runtime
    from dynast_cli.styles import base

    monkeypatch.setenv("DYNAST_PRECISION", "fp32")
    monkeypatch.setattr(runtime, "_precision", None)
    monkeypatch.setattr(base, "_ENCODERS", {})


@pytest.fixture(autouse=True)
def _unloaded_parameters_are_nan(monkeypatch):
    """A parameter that ``build_model`` skips initialising and then fails to load would hold whatever
    ``torch.empty`` gave (often plausible values); in the tests it holds NaN, which every output shows."""
    from dynast_cli.weights.build import _NoRandomInit

    monkeypatch.setattr(_NoRandomInit, "FILL", float("nan"))


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    """The tests download nothing: ``pip download`` (how dynast fetches from PyPI) fails as if offline, so
    the code's offline paths are what runs, unless ``DYNAST_TEST_NETWORK=1`` asks for the real-network
    tests. Other subprocesses run as usual; a test that fakes pip itself replaces this."""
    if os.environ.get(NETWORK_ENV) == "1":
        return
    import subprocess

    real_run = subprocess.run

    def run(cmd, *args, **kwargs):
        if isinstance(cmd, (list, tuple)) and "pip" in cmd and "download" in cmd:
            return subprocess.CompletedProcess(cmd, 1, "", f"ERROR: tests download nothing (set {NETWORK_ENV}=1)\n")
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (fresh clone)")
    return SHARED_DATA


def require_cached_or_network(filename: str, what: str) -> None:
    """Skip unless ``filename`` is already in the dynast cache or ``DYNAST_TEST_NETWORK=1`` allows a fetch.

    The default test run downloads nothing: a fresh clone must not pull tens of MB from PyPI into
    the user's cache just to run the tests. The real-network tests run where the network is already
    cached (a developer's box) or when asked for.
    """
    cache = Path(os.environ.get("DYNAST_CACHE") or Path.home() / ".cache" / "dynast").expanduser()
    if (cache / filename).is_file() or os.environ.get(NETWORK_ENV) == "1":
        return
    pytest.skip(f"{what} is not in the cache {cache}; set {NETWORK_ENV}=1 to fetch it from PyPI")


def make_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth, structured uint8 RGB test image (gradients + a disc), deterministic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = (xx / max(w - 1, 1)) * 255
    g = (yy / max(h - 1, 1)) * 255
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    b = ((yy - cy) ** 2 + (xx - cx) ** 2 < (min(h, w) / 4) ** 2) * 200.0 + rng.uniform(0, 55)
    return np.stack([r, g, b], axis=2).clip(0, 255).astype(np.uint8)


def make_image_folder(root: Path, name: str, n: int, h: int = 40, w: int = 56, seed: int = 0) -> Path:
    """``root/name`` with ``n`` generated PNGs ``img{i}.png`` of size (h + 8i, w), seeds seed + i (the same
    images when called again)."""
    from PIL import Image

    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(make_image(h + 8 * i, w, seed + i)).save(folder / f"img{i}.png")
    return folder


@pytest.fixture
def image_file(tmp_path):
    """Factory: image_file(h, w, name='img.png', seed=0) -> Path of a written test image."""
    from PIL import Image

    def _make(h: int, w: int, name: str = "img.png", seed: int = 0) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(make_image(h, w, seed)).save(path)
        return path

    return _make


@pytest.fixture
def stand_ins(monkeypatch):
    """Tiny encoder + random decoder behind the real feed-forward style methods (no VGG16 fetch)."""
    from dynast_cli.nn.decoders import VGGDecoder
    from dynast_cli.styles import base
    from stand_ins import TinyEncoder

    torch.manual_seed(0)
    decoder = VGGDecoder(skip=True).eval()
    monkeypatch.setattr(base, "vgg16", lambda device, path=None: TinyEncoder())
    monkeypatch.setattr(base, "universal_decoder", lambda device, path=None: decoder)
