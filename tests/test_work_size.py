"""--work-size: the method paints at a working long side and the result is upsampled to the output size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from stand_ins import one_thread  # noqa: F401  (autouse: one torch thread)
from typer.testing import CliRunner

from dynast_cli.cli import app
from dynast_cli.errors import UsageError
from dynast_cli.ops import fit_size, resize
from dynast_cli.pipelines.style import prepare_styles, stylize, work_hw, work_size
from dynast_cli.styles import build_method, list_methods


class Recorder:
    """A style method that records the size it was run at and returns a fixed function of its input."""

    name = "recorder"

    def __init__(self):
        self.sizes = []

    def prepare_style(self, style):
        return style.mean()

    def stylize(self, content, states, mix, alpha=1.0):
        self.sizes.append(tuple(content.shape[-2:]))
        return (content * 0.5 + 0.25 * states[0]).clamp(0, 1)


def test_a_larger_content_is_painted_at_the_working_size_and_upsampled():
    method, content = Recorder(), torch.rand(3, 96, 64)
    states = [torch.tensor(0.5)]
    out = stylize(method, content, states, work_size=48)
    assert out.shape == (3, 96, 64) and method.sizes == [(48, 32)]
    small = resize(content[None], fit_size(96, 64, max_size=48))
    expected = F.interpolate((small * 0.5 + 0.125).clamp(0, 1), size=(96, 64), mode="bicubic",
                             align_corners=False).clamp(0, 1)[0]
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    # a content within the working size runs at its own size, unchanged
    method.sizes.clear()
    assert torch.equal(stylize(method, content, states, work_size=96), stylize(method, content, states))
    assert method.sizes == [(96, 64), (96, 64)]


def test_a_long_strip_keeps_a_short_side_of_a_quarter_of_the_working_size():
    """A 1600x40 strip was painted at 512x13 (its features a few positions high) and blurred back; the
    working size now shrinks a strip only until its short side is work_size / 4 (contents up to 4:1 as before)."""
    assert work_hw((40, 1600), 512) == (40, 1600)  # shrinking at all would take it under 128 rows
    assert work_hw((300, 2000), 512) == (128, 853)  # shrunk only to 128 rows
    assert work_hw((2000, 500), 512) == (512, 128)  # 4:1: the plain working size
    assert work_hw((1024, 681), 512) == fit_size(1024, 681, max_size=512) == (512, 340)
    assert work_hw((96, 64), 48) == (48, 32) and work_hw((96, 64), None) == (96, 64) == work_hw((96, 64), 0)
    method, strip = Recorder(), torch.rand(3, 40, 1600)
    out = stylize(method, strip, [torch.tensor(0.5)], work_size=512)
    assert method.sizes == [(40, 1600)] and torch.equal(out, (strip * 0.5 + 0.125).clamp(0, 1))


def test_the_default_works_at_512_and_the_others_at_full_size():
    assert {name: work_size(name, None) for name in list_methods()} == {
        name: 512 if name == "dynast" else None for name in list_methods()}
    assert work_size("dynast", None) == 512 and work_size("adain", None) is None
    assert work_size("dynast", 0) is None and work_size("adain", 256) == 256
    for bad in (-1, 8, 16):  # a working size under the minimum side would leave relu5_1 a single position
        with pytest.raises(UsageError, match="--work-size takes a size of at least 17 px"):
            work_size("dynast", bad)
    assert work_size("dynast", 17) == 17


def test_cli_work_size(stand_ins, image_file, tmp_path):
    content, style = image_file(48, 80, "c.png"), image_file(32, 32, "s.png", seed=2)
    runner = CliRunner()

    def run(*args):
        out = tmp_path / f"o{len(list(tmp_path.glob('o*.png')))}.png"
        result = runner.invoke(app, ["style", str(content), str(style), "-o", str(out), "-m", "adain", *args])
        assert result.exit_code == 0, result.output
        assert Image.open(out).size == (80, 48)
        return out.read_bytes()

    assert run() == run("--work-size", "0") == run("--work-size", "80") != run("--work-size", "40")
    result = runner.invoke(app, ["style", str(content), str(style), "-o", str(tmp_path / "x.png"), "--work-size", "-3"])
    assert result.exit_code == 1 and not (tmp_path / "x.png").exists()


def test_library_default_dynast_paints_at_its_working_size(stand_ins):
    """The default method through the pipeline's own loop: a 600 px content is painted at 512."""
    from dynast_cli.pipelines import style as style_pipeline

    method = build_method("dynast")
    seen = []
    original = method.stylize
    method.stylize = lambda content, *a, **k: (seen.append(tuple(content.shape[-2:])), original(content, *a, **k))[1]
    states = prepare_styles(method, [torch.rand(3, 64, 64)], 64, torch.device("cpu"))
    out = style_pipeline.stylize(method, torch.rand(3, 600, 320), states, work_size=work_size("dynast", None))
    assert out.shape == (3, 600, 320) and seen == [(512, 273)]


def test_the_memory_plan_counts_the_full_size_output_of_a_smaller_working_size(stand_ins, image_file, tmp_path):
    """--max-memory planned only the 512 px painting: --size 20000 passed a 1 GB budget and ran out of memory
    (exit 70). The full-size images now count (FULL_SIZE_BYTES_PER_PIXEL), so it is refused before any work."""
    from dynast_cli import memory

    method = build_method("adain")
    painted = memory.plan_style(1 << 40, method, (384, 512), [(64, 64)])
    same = memory.plan_style(1 << 40, method, (384, 512), [(64, 64)], full_hw=(384, 512))
    big = memory.plan_style(1 << 40, method, (384, 512), [(64, 64)], full_hw=(15000, 20000))
    assert same.minimum == painted.minimum
    assert big.minimum - painted.minimum == memory.FULL_SIZE_BYTES_PER_PIXEL * 15000 * 20000
    with pytest.raises(memory.MemoryBudgetError, match=r"20000x15000 content with adain \(painted at 512x384; "
                                                       r"the full-size images 8.9 GB\)"):
        memory.plan_style(painted.minimum + (1 << 20), method, (384, 512), [(64, 64)], full_hw=(15000, 20000))
    content, style = image_file(96, 128, "c.png"), image_file(32, 32, "s.png", seed=2)
    out = tmp_path / "o.png"
    result = CliRunner().invoke(app, ["style", str(content), str(style), "-o", str(out), "-m", "adain",
                                      "--work-size", "512", "--size", "20000", "--max-memory", "1G"])
    assert result.exit_code == 6, result.output
    assert "painted at 512x384; the full-size images" in result.output and not out.exists()


def test_the_memory_plan_takes_the_largest_painting_not_the_painting_of_the_largest_content(monkeypatch):
    """A strip is painted unshrunk (work_hw), so in a folder it can be the largest painting although another
    content is the largest output: the plan must count both maxima."""
    from dynast_cli import memory
    from dynast_cli.pipelines import style as pipeline

    seen = {}

    def record(budget, method, content_hw, style_hws, device, extra_bytes=0, full_hw=None):
        seen.update(painted=content_hw, full=full_hw)
        return memory.MemoryPlan(budget, 0, 0, minimum=0)

    monkeypatch.setattr(memory, "plan_style", record)
    monkeypatch.setattr(memory, "apply_style_plan", lambda method, plan: None)
    opts = pipeline.StyleOptions(method="adain", max_memory=1 << 30)
    pipeline._plan_memory(object(), [(1000, 1000), (100, 4000)], [torch.rand(3, 32, 32)], opts,
                          torch.device("cpu"), None, work=512)
    assert seen == {"painted": (100, 4000), "full": (1000, 1000)}
