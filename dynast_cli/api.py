"""``dynast_cli.stylize``: one image, stylised exactly as ``dynast style`` does, from Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from dynast_cli.styles import DEFAULT_METHOD

Image = str | Path | torch.Tensor


def stylize(
    content: Image,
    style: Image | Sequence[Image],
    method: str = DEFAULT_METHOD,
    *,
    weights: str | Path | None = None,
    alpha: float = 1.0,
    mix: Sequence[float] | None = None,
    size: int | None = None,
    max_size: int | None = None,
    style_size: int | None = 512,
    keep_color: bool = False,
    refine: int | None = None,
    device: str = "auto",
    vgg: str | Path | None = None,
    max_memory: int | str | None = None,
    **options: Any,
) -> torch.Tensor:
    """Stylise ``content`` with one style or several (mixed by ``mix``) -> ``(3, H, W)`` float in [0, 1] on
    the CPU. The result is ``dynast style``'s with the same options (its PNG is this rounded to 8 bits).

    ``content`` / ``style``: image files, or float tensors ``(3, H, W)`` in [0, 1]. ``method``: a name of
    :func:`dynast_cli.list_methods` (default ``dynast``); ``weights``: a file, ``"none"`` (parameter-free) or
    None (the method's default); ``refine``: pixel-refinement steps (None: the method's default, 0 for
    every shipped method); ``max_memory``: a budget such as ``"4G"`` or bytes; ``options``: the method's own
    (e.g. ``steps`` for ``optimize``, ``attention`` for ``adaattn``). Errors are
    :class:`dynast_cli.errors.DynastError` with a one-line message.
    """
    from dynast_cli.memory import parse_memory
    from dynast_cli.pipelines.style import StyleOptions, style_image

    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    opts = StyleOptions(
        method=method, weights=None if weights is None else str(weights), vgg=None if vgg is None else str(vgg),
        alpha=alpha, mix=None if mix is None else list(mix), size=size, max_size=max_size, style_size=style_size,
        keep_color=keep_color, device=device, method_options=dict(options), max_memory=parse_memory(max_memory),
        refine=refine,
    )
    return style_image(content, styles, opts)
