"""Every registered style method through the same checks, on tiny images (stand-in VGG16 and decoder).

Odd sizes, alpha 0 and 1, two styles with mix weights, --keep-color, --refine 1, --max-memory, a folder
of contents, and the Python API (``dynast_cli.stylize``) giving the CLI's image. A method added to the
registry is checked here without a line of this file changing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import dynast_cli
from conftest import make_image_folder
from dynast_cli.cli import app
from dynast_cli.io.images import load_image, to_uint8
from dynast_cli.memory import MemoryBudgetError
from dynast_cli.ops import preserve_color
from dynast_cli.pipelines.style import prepare_styles, stylize
from dynast_cli.styles import build_method, get_spec, list_methods, method_options
from dynast_cli.styles.refine import refine_steps, with_refinement
from stand_ins import one_thread  # noqa: F401 (autouse fixture)

METHODS = list_methods()
#: Method options the checks pass on (only to the methods that take them): a short pixel optimisation.
OPTIONS = {"steps": 2}
runner = CliRunner()


@pytest.fixture
def files(image_file):
    """An odd-sized content and two different styles."""
    return image_file(21, 35, "c.png"), image_file(24, 30, "s1.png", seed=1), image_file(32, 20, "s2.png", seed=2)


def _cli(*args: str) -> None:
    result = runner.invoke(app, ["style", *args, "--steps", str(OPTIONS["steps"]), "--device", "cpu"])
    assert result.exit_code == 0, result.output


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _method(name: str, refine: int | None = None):
    device = torch.device("cpu")
    method = build_method(name, device=device, **method_options(name, **OPTIONS))
    return with_refinement(method, refine_steps(name, refine), device)


def test_the_registry_lists_every_builtin_method_and_the_public_api_lists_them_too():
    assert METHODS == ["adaattn", "a2k", "adain", "dynast", "optimize"]
    assert dynast_cli.list_methods() == METHODS
    assert all(get_spec(m).refine == 0 for m in METHODS)  # no method refines by default (issue #16)


@pytest.mark.parametrize("name", METHODS)
def test_odd_sizes_keep_their_size_through_the_cli_and_a_folder(stand_ins, files, tmp_path, name):
    content, style, _ = files
    _cli(str(content), str(style), "-m", name, "-o", str(tmp_path / "one.png"))
    assert Image.open(tmp_path / "one.png").size == (35, 21)
    folder = make_image_folder(tmp_path, "contents", 2, h=19, w=27)  # 19x27 and 27x27
    _cli(str(folder), str(style), "-m", name, "-o", str(tmp_path / "out"))
    assert [Image.open(tmp_path / "out" / f"img{i}.png").size for i in range(2)] == [(27, 19), (27, 27)]


@pytest.mark.parametrize("name", METHODS)
def test_alpha_zero_ignores_the_style_and_alpha_one_uses_it(stand_ins, files, name):
    content, style1, style2 = (load_image(f) for f in files)
    method = _method(name)
    states = [prepare_styles(method, [s], 32, torch.device("cpu")) for s in (style1, style2)]
    zero = [stylize(method, content, s, alpha=0.0) for s in states]
    one = [stylize(method, content, s, alpha=1.0) for s in states]
    for out in zero + one:
        assert out.shape == content.shape and torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
    torch.testing.assert_close(zero[0], zero[1], atol=1e-6, rtol=0)
    # (the stand-in decoder is random: its outputs differ little, but they differ)
    assert (one[0] - one[1]).abs().max() > 1e-6 and (one[0] - zero[0]).abs().max() > 1e-6


@pytest.mark.parametrize("name", METHODS)
def test_two_styles_mix_with_their_weights(stand_ins, files, name):
    content, style1, style2 = (load_image(f) for f in files)
    method = _method(name)
    states = prepare_styles(method, [style1, style2], 32, torch.device("cpu"))
    first = stylize(method, content, states[:1])
    assert torch.equal(stylize(method, content, states, mix=[1.0, 0.0]), first)
    assert torch.equal(stylize(method, content, states, mix=[3.0, 0.0]), first)  # weights are normalised
    even, tilted = stylize(method, content, states), stylize(method, content, states, mix=[0.2, 0.8])
    assert (even - first).abs().max() > 1e-6 and (tilted - even).abs().max() > 1e-6


@pytest.mark.parametrize("name", METHODS)
def test_keep_color_keeps_the_contents_chroma(stand_ins, files, tmp_path, name):
    content, style, _ = files
    _cli(str(content), str(style), "-m", name, "-o", str(tmp_path / "plain.png"))
    _cli(str(content), str(style), "-m", name, "--keep-color", "-o", str(tmp_path / "kept.png"))
    plain, kept = (torch.from_numpy(_png(tmp_path / f).copy()).permute(2, 0, 1)[None] / 255.0
                   for f in ("plain.png", "kept.png"))
    expected = preserve_color(plain, load_image(content)[None])
    assert (kept - expected).abs().max() <= 1 / 255 + 1e-6  # the stylised luminance, the content's chroma


@pytest.mark.parametrize("name", METHODS)
def test_refine_works_with_every_method(stand_ins, files, tmp_path, name):
    content, style, _ = files
    _cli(str(content), str(style), "-m", name, "--refine", "0", "-o", str(tmp_path / "r0.png"))
    _cli(str(content), str(style), "-m", name, "--refine", "1", "-o", str(tmp_path / "r1.png"))
    assert Image.open(tmp_path / "r1.png").size == (35, 21)
    assert not np.array_equal(_png(tmp_path / "r0.png"), _png(tmp_path / "r1.png"))


@pytest.mark.parametrize("name", METHODS)
def test_max_memory_keeps_the_image_or_says_it_is_not_supported(stand_ins, files, tmp_path, name):
    content, style, _ = files
    _cli(str(content), str(style), "-m", name, "-o", str(tmp_path / "plain.png"))
    args = ["style", str(content), str(style), "-m", name, "--steps", "2", "--max-memory", "64G",
            "-o", str(tmp_path / "budget.png")]
    result = runner.invoke(app, args)
    if get_spec(name).memory is None:
        assert result.exit_code == MemoryBudgetError.exit_code
        assert result.output.strip() == f"error: --max-memory is not supported with --method {name}"
        return
    assert result.exit_code == 0, result.output
    assert np.array_equal(_png(tmp_path / "plain.png"), _png(tmp_path / "budget.png"))


@pytest.mark.parametrize("name", METHODS)
def test_the_python_api_gives_the_cli_image(stand_ins, files, tmp_path, name):
    content, style1, style2 = files
    _cli(str(content), str(style1), str(style2), "-m", name, "--mix", "0.7,0.3", "--alpha", "0.8",
         "-o", str(tmp_path / "cli.png"))
    out = dynast_cli.stylize(content, [style1, style2], method=name, mix=[0.7, 0.3], alpha=0.8, device="cpu",
                             **method_options(name, **OPTIONS))
    assert out.shape == (3, 21, 35) and out.dtype == torch.float32
    assert np.array_equal(to_uint8(out), _png(tmp_path / "cli.png"))


def test_the_python_api_defaults_to_the_cli_default(stand_ins, files, tmp_path):
    content, style, _ = files
    result = runner.invoke(app, ["style", str(content), str(style), "-o", str(tmp_path / "cli.png")])
    assert result.exit_code == 0, result.output
    assert np.array_equal(to_uint8(dynast_cli.stylize(content, style)), _png(tmp_path / "cli.png"))
    tensor = dynast_cli.stylize(load_image(content), load_image(style))  # tensors in place of files
    assert np.array_equal(to_uint8(tensor), _png(tmp_path / "cli.png"))


def test_the_optimize_method_refuses_weights_it_would_ignore(stand_ins, tmp_path):
    """`-m optimize --weights garbage.safetensors` ran and never read the file (exit 0)."""
    from dynast_cli.errors import UsageError
    from dynast_cli.styles import build_method

    with pytest.raises(UsageError, match="--weights: the optimize method has no weights"):
        build_method("optimize", weights=tmp_path / "garbage.safetensors")
    assert build_method("optimize").name == "optimize"
