"""``dynast convert adaattn`` / ``dynast convert stya2k``: official .pth checkpoints -> safetensors."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dynast_cli.cli.app import command, convert_app
from dynast_cli.errors import InputError, OutputError, UsageError, WeightsError

_FOLDER_HELP = "Folder holding the official latest_net_*.pth files (and optionally vgg_normalised.pth)."
_VGG_HELP = "The official VGG19 vgg_normalised.pth, stored in the output as its encoder."


def _pick(explicit: Optional[Path], folder: Optional[Path], name: str, option: str) -> Path:
    """An explicit file option, else ``folder/name``; a clear error when neither is given."""
    if explicit is not None:
        return explicit
    if folder is None:
        raise UsageError(f"give the checkpoint folder or {option} FILE")
    return folder / name


def _present(folder: Optional[Path], *paths: Path, optional: tuple[Optional[Path], ...] = ()) -> tuple[Path, ...]:
    """``paths``, all of them there: a missing one is named with every other one missing, the files given
    explicitly in ``optional`` (--a2k, --vgg) included (one line, exit 3), so that a user who has to fetch
    them learns the whole list at once. Named within ``folder`` when they all lie in it, else by full path."""
    missing = [p for p in (*paths, *(p for p in optional if p is not None)) if not p.exists()]
    if len(missing) == 1:
        raise WeightsError("no such file", missing[0])
    if missing:
        inside = folder is not None and all(p.parent == folder for p in missing)
        names = ", ".join(p.name if inside else str(p) for p in missing)
        raise WeightsError(f"{len(missing)} checkpoint files missing: {names}", folder if inside else None)
    return paths


def _vgg(explicit: Optional[Path], folder: Optional[Path]) -> Optional[Path]:
    """--vgg, else vgg_normalised.pth when the folder has one, else none."""
    from dynast_cli.weights.convert import VGG_FILE

    if explicit is not None or folder is None:
        return explicit
    found = folder / VGG_FILE
    return found if found.is_file() else None


def _check_paths(folder: Optional[Path], output: Path, overwrite: bool) -> None:
    """Fail before any work: a missing folder, a non-safetensors output, or one that cannot be written
    (exists without --overwrite, a file in the way of its folder, a folder not writable)."""
    from dynast_cli.io.outputs import check_output

    if folder is not None and not folder.is_dir():
        raise InputError("no such folder", folder)
    if output.suffix != ".safetensors":
        raise OutputError("the output must be a .safetensors file", output)
    check_output(output, overwrite)


def _done(path: Path, vgg: Optional[Path]) -> None:
    encoder = f"encoder from {vgg}" if vgg else "no encoder (pass --vgg vgg_normalised.pth to include one)"
    typer.echo(f"wrote {path} ({encoder})")


@command(convert_app, "adaattn")
def convert_adaattn_command(
    folder: Optional[Path] = typer.Argument(None, help=_FOLDER_HELP),
    output: Path = typer.Option(Path("adaattn.safetensors"), "-o", "--output", help="Output safetensors file."),
    vgg: Optional[Path] = typer.Option(None, "--vgg", help=_VGG_HELP),
    transformer: Optional[Path] = typer.Option(None, "--transformer", help="latest_net_transformer.pth"),
    decoder: Optional[Path] = typer.Option(None, "--decoder", help="latest_net_decoder.pth"),
    adaattn_3: Optional[Path] = typer.Option(None, "--adaattn3", help="latest_net_adaattn_3.pth"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Convert the official AdaAttN checkpoints into one dynast safetensors."""
    from dynast_cli.weights.convert import ADAATTN_FILES, convert_adaattn

    _check_paths(folder, output, overwrite)
    vgg = _vgg(vgg, folder)
    path = convert_adaattn(
        *_present(folder, _pick(transformer, folder, ADAATTN_FILES["transformer"], "--transformer"),
                  _pick(decoder, folder, ADAATTN_FILES["decoder"], "--decoder"),
                  _pick(adaattn_3, folder, ADAATTN_FILES["adaattn_3"], "--adaattn3"), optional=(vgg,)),
        vgg,
        out=output,
    )
    _done(path, vgg)


@command(convert_app, "stya2k")
def convert_stya2k_command(
    folder: Optional[Path] = typer.Argument(None, help=_FOLDER_HELP),
    output: Path = typer.Option(Path("stya2k.safetensors"), "-o", "--output", help="Output safetensors file."),
    vgg: Optional[Path] = typer.Option(None, "--vgg", help=_VGG_HELP),
    a2k: Optional[Path] = typer.Option(None, "--a2k", help="latest_net_A2K.pth"),
    transform: Optional[Path] = typer.Option(None, "--transform", help="latest_net_transform.pth"),
    decoder: Optional[Path] = typer.Option(None, "--decoder", help="latest_net_decoder.pth"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Convert the official StyA2K checkpoints into one dynast safetensors."""
    from dynast_cli.weights.convert import STYA2K_FILES, convert_stya2k

    _check_paths(folder, output, overwrite)
    vgg = _vgg(vgg, folder)
    explicit_a2k = a2k
    if a2k is None and folder is not None and (folder / STYA2K_FILES["a2k"]).is_file():
        a2k = folder / STYA2K_FILES["a2k"]
    path = convert_stya2k(
        a2k,
        *_present(folder, _pick(transform, folder, STYA2K_FILES["transform"], "--transform"),
                  _pick(decoder, folder, STYA2K_FILES["decoder"], "--decoder"), optional=(explicit_a2k, vgg)),
        vgg,
        out=output,
    )
    _done(path, vgg)
