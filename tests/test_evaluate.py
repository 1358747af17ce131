"""`dynast eval style` on generated 2 x 2 pairs with stand-in methods and encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from conftest import make_image
from dynast_cli.cli import app
from dynast_cli.errors import InputError, UsageError
from dynast_cli.io.images import LABEL_BAND
from dynast_cli.evaluate import (GRID_CELL, MethodSummary, evaluate_style, image_paths, markdown_table,
                                 matched_content_lines, style_at_content, summarise)
from stand_ins import TinyEncoder, one_thread  # noqa: F401 (autouse fixture)


class Identity:
    """Returns the content unchanged: zero content loss."""

    name = "identity"

    def prepare_style(self, style):
        return style

    def stylize(self, content, states, mix, alpha=1.0):
        return content.clone()


class PasteStyle:
    """Returns the style resized to the content: the style's statistics, none of the content."""

    name = "paste"

    def prepare_style(self, style):
        return style

    def stylize(self, content, states, mix, alpha=1.0):
        return F.interpolate(states[0], size=content.shape[-2:], mode="bilinear", align_corners=False)


class Blend:
    """``alpha`` * style + (1 - alpha) * content: a strength sweep moves it from content to style."""

    name = "blend"

    def prepare_style(self, style):
        return style

    def stylize(self, content, states, mix, alpha=1.0):
        pasted = F.interpolate(states[0], size=content.shape[-2:], mode="bilinear", align_corners=False)
        return alpha * pasted + (1 - alpha) * content


@pytest.fixture
def pairs(tmp_path):
    for folder, seed, (h, w) in (("content", 0, (40, 56)), ("style", 10, (48, 48))):
        (tmp_path / folder).mkdir()
        for i in range(2):
            Image.fromarray(make_image(h, w + 8 * i, seed + i)).save(tmp_path / folder / f"{folder}{i}.png")
    return tmp_path / "content", tmp_path / "style"


def test_losses_rank_the_stand_in_methods(pairs, tmp_path):
    content, style = pairs
    methods = {"identity": Identity(), "paste": PasteStyle()}
    results = evaluate_style(image_paths(content), image_paths(style), methods, TinyEncoder(), tmp_path / "out", size=48)
    assert len(results) == 8  # 2 methods x 2 contents x 2 styles
    by = {s.method: s for s in summarise(results)}
    assert by["identity"].content_loss == pytest.approx(0.0, abs=1e-6)
    assert by["paste"].content_loss > 0.05
    assert by["paste"].style_loss < by["identity"].style_loss
    assert all(r.seconds >= 0 and r.prepare_s >= 0 for r in results)


def test_outputs_json_markdown_and_grid(pairs, tmp_path):
    content, style = pairs
    out = tmp_path / "out"
    results = evaluate_style(image_paths(content), image_paths(style), {"identity": Identity(), "paste": PasteStyle()},
                             TinyEncoder(), out, size=48)
    payload = json.loads((out / "style_eval.json").read_text())
    assert [s["method"] for s in payload["summary"]] == ["identity", "paste"]
    assert len(payload["pairs"]) == 8 and payload["pairs"][0]["content"] == "content0.png"
    markdown = (out / "style_eval.md").read_text()
    assert markdown == markdown_table(results)
    assert "| identity | 1 | content0.png | style0.png | 0.0000 |" in markdown
    assert "columns: content, style, identity, paste." in markdown
    grid = Image.open(out / "style_eval_grid.png")
    # 4 rows (content x style) of 4 columns (content, style, identity, paste), under a band of column labels
    assert grid.size[0] > 4 * GRID_CELL and grid.size[0] < 5 * GRID_CELL
    assert grid.size[1] > 4 * GRID_CELL + LABEL_BAND and grid.size[1] < 5 * GRID_CELL
    band = np.asarray(grid.convert("L"))[:LABEL_BAND]
    step = (grid.size[0] - 4) // 4
    for c in range(4):  # dark text over every column, none in the gaps
        assert (band[:, 4 + c * step: (c + 1) * step] < 128).sum() > 20
    assert (np.asarray(grid.convert("L"))[LABEL_BAND:LABEL_BAND + 4] > 250).all()  # the grid's white top pad


def test_image_paths_accepts_a_file_and_rejects_an_empty_folder(pairs, tmp_path):
    content, _ = pairs
    assert image_paths(content / "content1.png") == [content / "content1.png"]
    # several files and folders, in the order given, each image once
    assert image_paths([content / "content1.png", content]) == [content / "content1.png", content / "content0.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no images"):
        image_paths(tmp_path / "empty")


def test_cli_prints_the_table_and_writes_files(pairs, tmp_path, monkeypatch):
    # no EfficientNet-Lite0 fetch in tests: the network-based columns stay empty
    monkeypatch.setattr("dynast_cli.quality.load_quality_network", lambda path=None, device="cpu": (None, None))
    import dynast_cli.weights.build as vgg
    from stand_ins import register_stand_in

    built = {"identity": Identity(), "paste": PasteStyle()}
    for name in built:
        register_stand_in(monkeypatch, name, lambda weights, name=name: built[name])
    monkeypatch.setattr(vgg, "load_vgg16", lambda path=None, device="cpu": TinyEncoder())
    content, style = pairs
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["eval", "style", "--content", str(content), "--style", str(style),
                                      "--methods", "identity,paste", "--size", "32", "--out", str(out),
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "identity" in result.output and "paste" in result.output
    assert {p.name for p in out.iterdir()} == {"style_eval.json", "style_eval.md", "style_eval_grid.png"}
    # repeated --content/--style (files here), and a sweep adds the trade-off plot
    result = CliRunner().invoke(app, ["eval", "style", "--content", str(content / "content0.png"),
                                      "--content", str(content / "content1.png"), "--style", str(style / "style1.png"),
                                      "--methods", "identity", "--size", "32", "--out", str(tmp_path / "sweep"),
                                      "--device", "cpu", "--alphas", "1,0.5"])
    assert result.exit_code == 0, result.output
    assert "2 content x 1 style" in result.output and (tmp_path / "sweep" / "style_eval_tradeoff.png").is_file()
    assert len(json.loads((tmp_path / "sweep" / "style_eval.json").read_text())["pairs"]) == 4


def test_cli_method_weights_suffix(pairs, tmp_path, monkeypatch):
    # no EfficientNet-Lite0 fetch in tests: the network-based columns stay empty
    monkeypatch.setattr("dynast_cli.quality.load_quality_network", lambda path=None, device="cpu": (None, None))
    from dynast_cli.weights import build as vgg
    from stand_ins import register_stand_in

    calls = []

    def build(weights):
        calls.append(("identity", weights))
        return Identity()

    register_stand_in(monkeypatch, "identity", build)
    monkeypatch.setattr(vgg, "load_vgg16", lambda path=None, device="cpu": TinyEncoder())
    content, style = pairs
    result = CliRunner().invoke(app, ["eval", "style", "--content", str(content), "--style", str(style),
                                      "--methods", "identity,identity:none", "--size", "32",
                                      "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert calls == [("identity", None), ("identity", "none")]
    assert "identity:none" in result.output


def test_strength_sweep_traces_a_tradeoff_curve_and_plots_it(pairs, tmp_path):
    content, style = pairs
    out = tmp_path / "sweep"
    results = evaluate_style(image_paths(content), image_paths(style), {"blend": Blend(), "identity": Identity()},
                             TinyEncoder(), out, size=48, alphas=[1.0, 0.5, 0.0])
    assert len(results) == 2 * 3 * 4  # methods x strengths x pairs
    blend = {s.alpha: s for s in summarise(results) if s.method == "blend"}
    assert sorted(blend) == [0.0, 0.5, 1.0]
    assert blend[0.0].content_loss == pytest.approx(0.0, abs=1e-6)  # alpha 0: the content itself
    assert blend[0.0].content_loss < blend[0.5].content_loss < blend[1.0].content_loss
    assert blend[1.0].style_loss < blend[0.0].style_loss
    assert (out / "style_eval_tradeoff.png").stat().st_size > 1000
    markdown = (out / "style_eval.md").read_text()
    assert "| blend | 0.5 |" in markdown and "columns: content, style, blend a=1, blend a=0.5" in markdown
    assert "At adain's" not in markdown  # no baseline in this run
    grid = Image.open(out / "style_eval_grid.png")  # content, style + 2 methods x 3 strengths
    assert 8 * GRID_CELL < grid.size[0] < 9 * GRID_CELL
    with pytest.raises(UsageError, match="--alphas takes distinct strengths between 0 and 1, got '1,1.5'"):
        evaluate_style(image_paths(content), image_paths(style), {"blend": Blend()}, TinyEncoder(), out, alphas=[1, 1.5])


def test_style_at_content_interpolates_along_the_sweep():
    points = ((1.0, 1.2, 100.0), (0.9, 1.1, 120.0), (0.8, 1.0, 150.0))  # alpha, content, style
    rows = [MethodSummary("m", c, s, 0.0, 4, a) for a, c, s in points]
    assert style_at_content(rows, "m", 1.15) == pytest.approx(110.0)
    assert style_at_content(rows, "m", 1.0) == pytest.approx(150.0)
    assert style_at_content(rows, "m", 1.3) is None  # outside the swept range
    assert style_at_content(rows, "other", 1.1) is None
    rows.append(MethodSummary("adain", 1.15, 200.0, 0.0, 4, 1.0))
    assert matched_content_lines(rows)[1:] == ["At adain's content loss (1.1500; its style loss 200.0000):", "",
                                               "- m: style loss 110.0000 (-45.0%)"]
    rows[-1] = MethodSummary("adain", 1.3, 200.0, 0.0, 4, 1.0)  # above the whole sweep: its strongest point
    assert matched_content_lines(rows)[-1] == ("- m: already below at alpha 1 (content loss 1.2000): "
                                               "style loss 100.0000 (-50.0%)")
    rows[-1] = MethodSummary("adain", 0.5, 200.0, 0.0, 4, 1.0)
    assert matched_content_lines(rows)[-1] == "- m: outside its swept range"


@pytest.mark.parametrize("alphas", ["2", "0.5,0.5", "a,b", ","])
def test_cli_rejects_bad_alphas(pairs, tmp_path, alphas):
    content, style = pairs
    result = CliRunner().invoke(app, ["eval", "style", "--content", str(content), "--style", str(style),
                                      "--alphas", alphas, "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --alphas takes ") and f"got '{alphas}'" in lines[0], lines
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("old_pillow", [False, True])
def test_column_labels_fit_their_cells_on_any_pillow(monkeypatch, old_pillow):
    from PIL import ImageFont

    from dynast_cli.io import images

    if old_pillow:  # Pillow 10.0: load_default() takes no size and gives a Latin-1 bitmap font
        if not hasattr(ImageFont, "load_default_imagefont"):
            pytest.skip("this Pillow has no separate bitmap-font loader")

        def load_default(size=None):
            if size is not None:
                raise TypeError("load_default() got an unexpected keyword argument 'size'")
            return ImageFont.load_default_imagefont()

        monkeypatch.setattr(ImageFont, "load_default", load_default)
    labels = ["content", "adaattn:/a/very/long/folder/of/checkpoints/run-2026-12-07/first.safetensors",
              "adaattn:/a/very/long/folder/of/checkpoints/run-2026-12-07/second.safetensors", "dynast \u2603", "x"]
    grid = torch.ones(3, 40, 4 + 5 * 36)
    out = images.label_columns(grid, labels, cell=32)
    assert out.shape == (3, 40 + images.LABEL_BAND, 4 + 5 * 36)
    assert torch.equal(out[:, images.LABEL_BAND:], grid)
    band = (out[0, : images.LABEL_BAND] < 0.5).numpy()
    for c in range(5):  # every label drawn, within its own cell (the 4 px gaps stay white)
        assert band[:, 4 + c * 36: 4 + c * 36 + 32].any()
        assert not band[:, c * 36: c * 36 + 4].any()
