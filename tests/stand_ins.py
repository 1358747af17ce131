"""Small stand-ins for the fetched VGG16 used by the training and evaluation tests."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

CHANNELS = (64, 128, 256, 512, 512)


class TinyEncoder(nn.Module):
    """VGGEncoder's interface at a fraction of the cost: 5 maps at strides 1, 2, 4, 8, 16
    (ceil sizes), widths 64, 128, 256, 512, 512; frozen random 3x3 convs on average-pooled input."""

    def __init__(self, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList(nn.Conv2d(3, c, 3, padding=1) for c in CHANNELS)
        for conv in self.convs:
            conv.weight.data = torch.randn(conv.weight.shape, generator=gen) * 0.3
            conv.bias.data = torch.randn(conv.bias.shape, generator=gen) * 0.1
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor, upto: int = 5, keep=None) -> list[torch.Tensor | None]:
        feats = []
        for level, conv in enumerate(self.convs[:upto]):
            pooled = F.avg_pool2d(x, 2**level, ceil_mode=True) if level else x
            feats.append(F.relu(conv(pooled)) if keep is None or level in keep else None)
        return feats


@pytest.fixture(autouse=True)
def one_thread():
    """Autouse where imported: one torch thread (tiny convs run far faster on a busy CPU without
    thread oversubscription)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def register_stand_in(monkeypatch, name: str, make) -> None:
    """Register style method ``name`` for one test: ``make(weights)`` returns the method object."""
    from dynast_cli.styles import METHODS, MethodSpec

    monkeypatch.setitem(METHODS, name, MethodSpec(name, "test stand-in",
                                                  lambda weights=None, device=None, vgg=None: make(weights)))


def as_method(model: nn.Module):
    """A style model (AdaAttN, StyA2K, DynaST) as its registered method: the one path (mix, alpha, size)."""
    from dynast_cli.models.adaattn import AdaAttNModel
    from dynast_cli.models.dynast_style import DynastStyleModel
    from dynast_cli.models.stya2k import StyA2KModel
    from dynast_cli.styles.a2k import StyA2KMethod
    from dynast_cli.styles.adaattn import AdaAttNMethod
    from dynast_cli.styles.dynast import DynastMethod

    return {AdaAttNModel: AdaAttNMethod, StyA2KModel: StyA2KMethod, DynastStyleModel: DynastMethod}[type(model)](model)


def style_distance(encoder, image: torch.Tensor, style: torch.Tensor) -> float:
    """Sum over the encoder's layers of the squared distance of channel means and stds (a style loss)."""
    from dynast_cli.nn.norm import calc_mean_std

    total = 0.0
    for f, s in zip(encoder(image), encoder(style)):
        (fm, fs), (sm, ss) = calc_mean_std(f), calc_mean_std(s)
        total += float((fm - sm).pow(2).mean() + (fs - ss).pow(2).mean())
    return total


class RecordingGenerator(nn.Module):
    """A stand-in with the DynastGenerator signature: returns the reference image and records its inputs."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls: list[dict[str, torch.Tensor]] = []

    def forward(self, query, ref_image, ref_semantics):
        self.calls.append({"query": query, "ref_image": ref_image, "ref_semantics": ref_semantics})
        return ref_image * self.scale


def one_error_line(res, *fragments: str, code: int = 4) -> str:
    """A CLI result that failed with ``code`` and printed exactly one ``error:`` line (no traceback) holding
    every fragment; returns that line."""
    assert res.exit_code == code, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
