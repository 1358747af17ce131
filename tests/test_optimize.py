"""The training-free `optimize` method: pixels move towards the style's statistics, within [0, 1]."""

from __future__ import annotations

import torch

from dynast_cli.pipelines.style import stylize
from dynast_cli.styles.optimize import OptimizeMethod
from stand_ins import TinyEncoder, style_distance


def test_optimisation_moves_towards_the_style_and_keeps_the_size():
    encoder = TinyEncoder()
    content = torch.rand(1, 3, 30, 45) * 0.5
    style = 0.5 + torch.rand(1, 3, 32, 32) * 0.5  # brighter: a different global statistic
    method = OptimizeMethod(encoder, steps=15, lr=0.05)
    with torch.inference_mode():
        state = method.prepare_style(style)
    out = stylize(method, content, [state])
    assert out.shape == content.shape and out.min() >= 0 and out.max() <= 1
    assert style_distance(encoder, out, style) < 0.5 * style_distance(encoder, content, style)


def test_zero_steps_returns_the_content():
    encoder = TinyEncoder()
    content = torch.rand(1, 3, 32, 32)
    method = OptimizeMethod(encoder, steps=0)
    with torch.inference_mode():
        state = method.prepare_style(torch.rand(1, 3, 32, 32))
    assert torch.equal(stylize(method, content, [state]), content)
