"""The project's own trained weights: ``weights/manifest.json`` -> verified files.

The manifest is a JSON object ``{"weights": [entry, ...]}``; each entry has at least ``name``,
``file`` (relative to the manifest's folder), ``architecture``, ``config`` and ``sha256``, plus
provenance (licence, training data, steps, wall time, hardware, final losses). The default folder
is the repository's ``weights/``; ``$DYNAST_WEIGHTS`` points elsewhere (an installed copy).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynast_cli.errors import WeightsError
from dynast_cli.weights.io import sha256_file

WEIGHTS_ENV = "DYNAST_WEIGHTS"
MANIFEST = "manifest.json"
REQUIRED_KEYS = ("name", "file", "architecture", "config", "sha256")

#: The entry of the networks that are not style methods (a style method names its own entry in its spec,
#: :attr:`dynast_cli.styles.registry.MethodSpec.default_weights`).
DEFAULTS = {"decoder": "decoder_vgg16", "face": "dynast_face"}


def weights_dir() -> Path:
    """``$DYNAST_WEIGHTS`` or the repository's ``weights/`` folder."""
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "weights"


@dataclass(frozen=True)
class WeightsEntry:
    """One manifest entry; ``path`` is the resolved file."""

    name: str
    path: Path
    architecture: str
    config: dict[str, Any]
    sha256: str
    info: dict[str, Any]


def read_manifest(folder: Path | None = None) -> dict[str, WeightsEntry]:
    """Entries of ``folder/manifest.json`` by name ({} when the file is absent)."""
    folder = folder or weights_dir()
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
        items = raw["weights"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise WeightsError(f"not a valid weights manifest ({type(exc).__name__}: {exc})", path) from None
    entries = {}
    for item in items:
        missing = [k for k in REQUIRED_KEYS if k not in item]
        if missing:
            raise WeightsError(f"entry {item.get('name', '?')!r} lacks {', '.join(missing)}", path)
        entries[item["name"]] = WeightsEntry(
            name=item["name"], path=folder / item["file"], architecture=item["architecture"],
            config=item["config"], sha256=item["sha256"], info=item,
        )
    return entries


def verified_path(entry: WeightsEntry) -> Path:
    """``entry.path`` after checking that it exists and matches the recorded sha256."""
    if not entry.path.is_file():
        raise WeightsError(f"weights '{entry.name}' listed in the manifest are missing", entry.path)
    digest = sha256_file(entry.path)
    if digest != entry.sha256:
        raise WeightsError(
            f"sha256 mismatch for '{entry.name}' (file {digest[:12]}..., manifest {entry.sha256[:12]}...): "
            "the file is corrupt or was replaced",
            entry.path,
        )
    return entry.path


def get_weights(name: str, folder: Path | None = None) -> Path:
    """The verified file of manifest entry ``name``."""
    entries = read_manifest(folder)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise WeightsError(f"no weights named '{name}' in the manifest (known: {known})",
                           (folder or weights_dir()) / MANIFEST)
    return verified_path(entries[name])


def installed(name: str, folder: Path | None = None) -> Path | None:
    """The verified file of manifest entry ``name``, or None when the manifest does not list it."""
    if name not in read_manifest(folder):
        return None
    return get_weights(name, folder)


def default_weights(network: str, folder: Path | None = None) -> Path | None:
    """The verified default weights of ``network`` (``"decoder"``, ``"face"``), or None if none is installed."""
    return installed(DEFAULTS[network], folder)
