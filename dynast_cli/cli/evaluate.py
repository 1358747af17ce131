"""``dynast eval style``: content/style losses and time per image for several style methods."""

from __future__ import annotations

from pathlib import Path

import typer

from dynast_cli.cli.app import command, eval_app


@command(eval_app, "style")
def eval_style_command(
    content: list[Path] = typer.Option(..., "--content", help="Content image or folder (repeatable)."),
    style: list[Path] = typer.Option(..., "--style", help="Style image or folder (repeatable)."),
    methods: str = typer.Option("adain,adaattn,a2k", "--methods",
                                help="Comma-separated style methods, each METHOD[:WEIGHTS][+refineN]: WEIGHTS picks "
                                "its --weights, N its --refine steps (default: as dynast style), e.g. dynast:none (the "
                                "parameter-free DynaST), dynast+refine0 (the default without refinement), adain+refine10."),
    size: int = typer.Option(512, "--size", min=16, help="Long side of contents and styles, in pixels."),
    out: Path = typer.Option(Path("eval/style"), "--out", help="Folder for the JSON, Markdown table and grid."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    vgg: Path = typer.Option(None, "--vgg", help="VGG16 weights (default: the cached ImageNet VGG16)."),
    steps: int = typer.Option(200, "--steps", min=1, help="Iterations of --methods optimize."),
    alphas: str = typer.Option("1", "--alphas",
                               help="Comma-separated style strengths (--alpha of dynast style) to run every method at, "
                               "e.g. 1,0.9,0.8; with several, also plots content loss against style loss."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace earlier results in --out."),
) -> None:
    """Evaluate style methods on every content x style pair (papers' content and style losses)."""
    from rich.console import Console
    from rich.table import Table

    from dynast_cli.errors import InputError
    from dynast_cli.evaluate import check_outputs, evaluate_style, image_paths, output_files, summarise
    from dynast_cli.models.vgg import load_vgg16
    from dynast_cli.pipelines.refine import with_refinement
    from dynast_cli.pipelines.style import get_style_method, parse_method_spec, refine_steps
    from dynast_cli.runtime import resolve_device

    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise InputError("no method given", "--methods")
    strengths = parse_alphas(alphas)
    contents, styles = image_paths(content), image_paths(style)
    check_outputs(out, strengths, overwrite)  # before any model is loaded
    dev = resolve_device(device)
    built = {}
    for name in names:
        method, weights, refine = parse_method_spec(name)
        options = {"steps": steps} if method == "optimize" else {}
        built[name] = with_refinement(get_style_method(method, weights=weights, device=dev, vgg=vgg, **options),
                                      refine_steps(method, refine), dev, vgg)
    results = evaluate_style(contents, styles, built, load_vgg16(vgg, device=dev), out, size=size, device=dev,
                             alphas=strengths, overwrite=overwrite)

    table = Table(title=f"style evaluation ({len(contents)} content x {len(styles)} style, {size} px)")
    for column in ("method", "alpha", "content loss", "style loss", "s / image"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for s in summarise(results):
        table.add_row(s.method, f"{s.alpha:g}", f"{s.content_loss:.4f}", f"{s.style_loss:.4f}", f"{s.seconds:.3f}")
    console = Console()
    console.print(table)
    console.print("wrote " + ", ".join(str(out / f) for f in output_files(strengths)), markup=False)


def parse_alphas(text: str) -> list[float]:
    """``--alphas 1,0.9`` -> [1.0, 0.9]."""
    from dynast_cli.errors import InputError

    from dynast_cli.evaluate import check_alphas

    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"not a comma-separated list of numbers: {text!r}", "--alphas") from None
    check_alphas(values)  # before any model is loaded
    return values
