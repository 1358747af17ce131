"""``dynast convert dynast``: the official DynaST generator checkpoint -> dynast safetensors."""

from __future__ import annotations

from pathlib import Path

import typer

from dynast_cli.cli.app import command, convert_app, err_console

#: Highest ``--top-k`` taken: a generator needs at least that many 8x8 cells in its inputs, and a larger value
#: was written to the file and failed only when the file was used, without naming it.
MAX_TOP_K = 64


@command(convert_app, "dynast")
def convert_dynast_command(
    checkpoint: Path = typer.Argument(..., help="Official generator checkpoint (latest_net_G.pth)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .safetensors file."),
    top_k: int = typer.Option(4, "--top-k", min=1, max=MAX_TOP_K,
                              help=f"Matches per position (not stored in the .pth; official: 4; at most {MAX_TOP_K})."),
    smooth: float = typer.Option(0.01, "--smooth", min=1e-6, help="Sparse attention temperature (official: 0.01)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
) -> None:
    """Fold spectral norm, drop unused tensors, record the source's sha256, write safetensors."""
    from dynast_cli.errors import OutputError
    from dynast_cli.weights.convert_dynast import convert_dynast
    from dynast_cli.weights.io import read_metadata

    if output.suffix != ".safetensors":
        raise OutputError("the output must be a .safetensors file", output)
    path = convert_dynast(checkpoint, output, top_k=top_k, smooth=smooth, overwrite=overwrite)
    config = read_metadata(path)["config"]
    err_console.print(f"wrote {path} (DynaST generator, config {config})", markup=False)
