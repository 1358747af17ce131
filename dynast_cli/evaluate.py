"""``dynast eval style``: the papers' content and style losses and the time per image, per method.

For every content x style pair and every method: the output of the style pipeline at ``size``
(long side), then on the frozen VGG16

* content loss: MSE of mean-variance-normalised relu4_1 and relu5_1, output vs content;
* style loss: MSE of channel means + stds over relu1_1..relu5_1, output vs style;
* seconds: ``stylize`` wall time with the style prepared (``prepare_s``, once per style, apart),
  after one untimed warm-up call per method.

Results go to ``style_eval.json``, ``style_eval.md`` (per-pair and per-method tables) and
``style_eval_grid.png`` (one row per pair: content, style, then each method's output).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from dynast_cli.errors import InputError
from dynast_cli.io.images import list_images, load_image, save_image
from dynast_cli.pipelines.style import StyleMethod, fit_size, resize, stylize
from dynast_cli.train.losses import content_loss, style_loss
from dynast_cli.train.samples import image_grid

Encoder = Callable[..., list[torch.Tensor]]

GRID_CELL = 256
JSON_FILE, MARKDOWN_FILE, GRID_FILE = "style_eval.json", "style_eval.md", "style_eval_grid.png"


@dataclass
class PairResult:
    """One method on one content x style pair."""

    method: str
    content: str
    style: str
    content_loss: float
    style_loss: float
    seconds: float
    prepare_s: float


@dataclass
class MethodSummary:
    """Means over all pairs of one method."""

    method: str
    content_loss: float
    style_loss: float
    seconds: float
    pairs: int


def image_paths(path: str | Path) -> list[Path]:
    """A folder's images (natural order), or the single image file ``path``."""
    path = Path(path)
    files = list_images(path) if path.is_dir() else [path]
    if not files:
        raise InputError("no images in folder", path)
    return files


def _load(path: Path, size: int, device: torch.device) -> torch.Tensor:
    image = load_image(path)[None]
    return resize(image, fit_size(*image.shape[-2:], size=size)).to(device)


def summarise(results: Sequence[PairResult]) -> list[MethodSummary]:
    """Per-method means, in the order the methods first appear."""
    out = []
    for method in dict.fromkeys(r.method for r in results):
        rows = [r for r in results if r.method == method]
        n = len(rows)
        out.append(MethodSummary(method, sum(r.content_loss for r in rows) / n,
                                 sum(r.style_loss for r in rows) / n, sum(r.seconds for r in rows) / n, n))
    return out


def markdown_table(results: Sequence[PairResult]) -> str:
    """Markdown: a per-method summary table, then the per-pair table."""
    lines = ["| method | content loss | style loss | s / image | pairs |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {s.method} | {s.content_loss:.4f} | {s.style_loss:.4f} | {s.seconds:.3f} | {s.pairs} |"
              for s in summarise(results)]
    lines += ["", "| method | content | style | content loss | style loss | s / image |",
              "| --- | --- | --- | ---: | ---: | ---: |"]
    lines += [f"| {r.method} | {r.content} | {r.style} | {r.content_loss:.4f} | {r.style_loss:.4f} | {r.seconds:.3f} |"
              for r in results]
    columns = ", ".join(["content", "style", *dict.fromkeys(r.method for r in results)])
    lines += ["", f"Grid ({GRID_FILE}): one row per content x style pair; columns: {columns}."]
    return "\n".join(lines) + "\n"


def evaluate_style(
    contents: Sequence[Path],
    styles: Sequence[Path],
    methods: Mapping[str, StyleMethod],
    encoder: Encoder,
    out_dir: Path,
    size: int = 512,
    device: str | torch.device = "cpu",
) -> list[PairResult]:
    """Run every method on every content x style pair; write the JSON, Markdown and grid into ``out_dir``.

    ``methods`` maps a display name to a built method (see
    :func:`dynast_cli.pipelines.style.get_style_method`); ``encoder`` is the loss network.
    """
    device = torch.device(device)
    content_images = {p: _load(p, size, device) for p in contents}
    style_images = {p: _load(p, size, device) for p in styles}
    with torch.inference_mode():
        content_feats = {p: encoder(x) for p, x in content_images.items()}
        style_feats = {p: encoder(x) for p, x in style_images.items()}

    results: list[PairResult] = []
    outputs: dict[tuple[Path, Path, str], torch.Tensor] = {}
    first_content, first_style = next(iter(content_images.values())), next(iter(style_images.values()))
    for name, method in methods.items():
        with torch.inference_mode():
            stylize(method, first_content, [method.prepare_style(first_style)])  # warm-up, untimed
        for s_path, style in style_images.items():
            start = time.perf_counter()
            with torch.inference_mode():
                state = method.prepare_style(style)
            prepare_s = time.perf_counter() - start
            for c_path, content in content_images.items():
                start = time.perf_counter()
                out = stylize(method, content, [state])
                seconds = time.perf_counter() - start
                with torch.inference_mode():
                    feats = encoder(out)
                    c_loss = content_loss(feats, content_feats[c_path]).item()
                    s_loss = style_loss(feats, style_feats[s_path]).item()
                results.append(PairResult(name, c_path.name, s_path.name, c_loss, s_loss, seconds, prepare_s))
                outputs[(c_path, s_path, name)] = out.cpu()

    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"size": size, "device": str(device), "summary": [asdict(s) for s in summarise(results)],
               "pairs": [asdict(r) for r in results]}
    (out_dir / JSON_FILE).write_text(json.dumps(payload, indent=2) + "\n")
    (out_dir / MARKDOWN_FILE).write_text(markdown_table(results))
    rows = [[content_images[c].cpu(), style_images[s].cpu(), *(outputs[(c, s, m)] for m in methods)]
            for c in content_images for s in style_images]
    save_image(image_grid(rows, cell=GRID_CELL), out_dir / GRID_FILE)
    return results
