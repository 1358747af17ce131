"""The style pipeline and `dynast style`: sizes, batches, mixing, errors, exit codes.

The VGG16 encoder and the trained decoder are replaced by tiny random stand-ins, so these tests
need no download and run in seconds; what they check is the pipeline around the model.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import dynast_cli.cli  # noqa: F401  (registers the subcommands)
from dynast_cli.cli.app import app
from dynast_cli.errors import BatchError, DynastError
from dynast_cli import ops
from dynast_cli.pipelines import style as style_pipeline
from dynast_cli.styles import build_method

runner = CliRunner()


def test_pad_crop_and_fit_size():
    x = torch.rand(1, 3, 33, 50)
    padded, hw = ops.pad_to_multiple(x)
    assert padded.shape[-2:] == (48, 64) and hw == (33, 50)
    assert torch.equal(padded[..., :33, :50], x)
    assert ops.fit_size(333, 517, max_size=256) == (165, 256)
    assert ops.fit_size(333, 517) == (333, 517)
    assert ops.fit_size(100, 50, size=400) == (400, 200)


def test_preserve_color_keeps_content_chroma():
    content = 0.35 + 0.3 * torch.rand(1, 3, 8, 8)  # away from 0 and 1: no clamping
    gray = torch.full((1, 3, 8, 8), 0.5)
    out = ops.preserve_color(gray, content)
    # same chroma as the content: out - content is gray (equal channels)
    diff = out - content
    assert torch.allclose(diff[:, 0], diff[:, 1], atol=1e-3) and torch.allclose(diff[:, 1], diff[:, 2], atol=1e-3)


def test_mix_weights():
    assert ops.mix_weights(None, 2) == [0.5, 0.5]
    assert ops.mix_weights([3, 1], 2) == [0.75, 0.25]
    assert ops.mix_weights([1e308, 1e308, 0.0], 3) == [0.5, 0.5, 0.0]  # the sum overflowed to inf: weights 0
    with pytest.raises(DynastError, match="2 style"):
        ops.mix_weights([1.0], 2)
    with pytest.raises(DynastError, match="non-negative"):
        ops.mix_weights([-1, 2], 2)


def _decoder_inputs(method, fn):
    """Run fn() and return the (cs, skip) tensors the decoder received."""
    seen = []
    def hook(module, args, kwargs):
        seen.append((*args, *kwargs.values()))

    handle = method.decoder.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        fn()
    finally:
        handle.remove()
    return seen[-1]


def test_adain_alpha_zero_feeds_content_features(stand_ins):
    method = build_method("adain")
    content, style = torch.rand(1, 3, 32, 48), torch.rand(1, 3, 40, 40)
    state = method.prepare_style(style)
    cs0, skip0 = _decoder_inputs(method, lambda: style_pipeline.stylize(method, content, [state], alpha=0.0))
    f3, f4, f5 = method.encoder(content)[2:]
    assert torch.allclose(skip0, f3, atol=1e-6)
    assert torch.allclose(cs0, f4 + torch.nn.functional.interpolate(f5, size=f4.shape[-2:]), atol=1e-6)
    cs1, skip1 = _decoder_inputs(method, lambda: style_pipeline.stylize(method, content, [state], alpha=1.0))
    # alpha 1: relu3_1 carries the style's channel statistics
    s3 = state[0]
    assert torch.allclose(skip1.mean(dim=(2, 3)), s3.mean(dim=(2, 3)), atol=1e-4)
    assert not torch.allclose(skip0, skip1, atol=1e-2)


def test_two_styles_mix_between_the_single_ones(stand_ins):
    method = build_method("adain")
    content = torch.rand(1, 3, 32, 32)
    s1, s2 = method.prepare_style(torch.rand(1, 3, 32, 32)), method.prepare_style(torch.zeros(1, 3, 32, 32) + 0.2)
    only1 = _decoder_inputs(method, lambda: style_pipeline.stylize(method, content, [s1, s2], mix=[1, 0]))
    single = _decoder_inputs(method, lambda: style_pipeline.stylize(method, content, [s1]))
    half = _decoder_inputs(method, lambda: style_pipeline.stylize(method, content, [s1, s2], mix=[1, 1]))
    only2 = _decoder_inputs(method, lambda: style_pipeline.stylize(method, content, [s2]))
    for a, b, h, c in zip(only1, single, half, only2):
        assert torch.allclose(a, b, atol=1e-5)
        assert torch.allclose(h, (b + c) / 2, atol=1e-5)


def test_cli_keeps_odd_size(stand_ins, image_file, tmp_path):
    content = image_file(333, 517, "content.png")
    style = image_file(64, 80, "style.jpg", seed=1)
    out = tmp_path / "out.png"
    result = runner.invoke(app, ["style", str(content), str(style), "-o", str(out), "-m", "adain"])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (517, 333)


def test_cli_refuses_to_overwrite(stand_ins, image_file, tmp_path):
    content = image_file(32, 32, "c.png")
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    result = runner.invoke(app, ["style", str(content), str(content), "-o", str(out), "-m", "adain"])
    assert result.exit_code == 4
    assert "already exists" in result.output and "Traceback" not in result.output
    assert out.read_bytes() == b"precious"
    result = runner.invoke(app, ["style", str(content), str(content), "-o", str(out), "-m", "adain", "--overwrite"])
    assert result.exit_code == 0 and out.read_bytes() != b"precious"


@pytest.mark.parametrize("bad", ["missing", "garbage"])
def test_cli_bad_input_one_line_no_output(stand_ins, image_file, tmp_path, bad):
    style = image_file(32, 32, "s.png")
    content = tmp_path / "c.jpg"
    if bad == "garbage":
        content.write_bytes(b"\x00" * 100)
    out = tmp_path / "out.png"
    result = runner.invoke(app, ["style", str(content), str(style), "-o", str(out), "-m", "adain"])
    assert result.exit_code == 2
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(content) in lines[0]
    assert not out.exists()


def test_cli_debug_shows_traceback_and_keeps_the_exit_code(stand_ins, tmp_path, image_file, monkeypatch):
    """--debug adds the traceback; the exit code stays the error's own (scripts see the same codes)."""
    style = image_file(32, 32, "s.png")
    result = runner.invoke(app, ["--debug", "style", str(tmp_path / "nope.png"), str(style), "-m", "adain"])
    assert result.exit_code == 2, result.output
    assert "Traceback (most recent call last)" in result.output and "InputError" in result.output
    assert result.output.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'nope.png'}: ")
    import dynast_cli.pipelines.style as pipeline

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(pipeline, "run_style_job", bug)
    result = runner.invoke(app, ["--debug", "style", str(style), str(style), "-m", "adain"])
    assert result.exit_code == 70 and "Traceback" in result.output
    assert result.output.strip().splitlines()[-1] == "error: ZeroDivisionError: a bug"


def test_cli_unknown_method(stand_ins, image_file, tmp_path):
    c = image_file(32, 32, "c.png")
    result = runner.invoke(app, ["style", str(c), str(c), "-o", str(tmp_path / "o.png"), "-m", "nope"])
    assert result.exit_code == 1 and "unknown style method 'nope'" in result.output


def test_batch_folder_skips_corrupt_file(stand_ins, image_file, tmp_path):
    folder = tmp_path / "contents"
    image_file(24, 40, "contents/a1.png")
    image_file(30, 30, "contents/a2.jpg", seed=3)
    (folder / "a10.png").write_bytes(b"broken")
    style = image_file(32, 32, "s.png")
    out_dir = tmp_path / "outs"
    result = runner.invoke(app, ["style", str(folder), str(style), "-o", str(out_dir), "-m", "adain"])
    assert result.exit_code == 5
    assert "1 of 3 file(s) failed" in result.output and "a10.png" in result.output
    assert sorted(p.name for p in out_dir.iterdir()) == ["a1.png", "a2.png"]
    assert Image.open(out_dir / "a1.png").size == (40, 24)


def test_run_style_api_reports_failures(stand_ins, image_file, tmp_path):
    folder = tmp_path / "in"
    image_file(32, 32, "in/ok.png")
    (folder / "bad.png").write_bytes(b"x")
    with pytest.raises(BatchError) as info:
        style_pipeline.run_style(folder, [image_file(32, 32, "s.png")], tmp_path / "o", style_pipeline.StyleOptions(method="adain", device="cpu"))
    assert info.value.report.written == [tmp_path / "o" / "ok.png"]
    assert [p.name for p, _ in info.value.report.failed] == ["bad.png"]
