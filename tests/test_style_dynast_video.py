"""The temporal variant of ``dynast`` (``attention="cosine"``, the ``dynast video`` default): its matching and
warping against the plain dense-then-gather reference, its settings beside the unchanged image default,
frames computed independently (shards give the same pixels), and the video default plumbing
(``dynast video`` and ``dynast eval video`` on a tiny generated clip, stand-in VGG16 and decoder)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import dynast_cli.cli  # noqa: F401  (registers the subcommands)
from dynast_cli.cli.app import app
from dynast_cli.errors import UsageError
from dynast_cli.io.video import VideoReader
from dynast_cli.models.dynast_style import LEVELS
from dynast_cli.nn.norm import mean_variance_norm
from dynast_cli.pipelines import video as video_pipeline
from dynast_cli.pipelines.style import prepare_styles, stylize
from dynast_cli.pipelines.video import evaluate_video, run_video
from dynast_cli.styles import base, build_method, get_spec
from dynast_cli.styles.dynast import VIDEO_SMOOTH, VIDEO_TOP_K
from stand_ins import TinyEncoder, one_thread  # noqa: F401 (autouse fixture)
from test_style_dynast import make_model, naive_match
from test_video import square_frames, style, write_clip  # noqa: F401 (fixture)

runner = CliRunner()


def test_temporal_variant_equals_a_plain_reference():
    """The video variant's settings (softer temperature, more matches carried, warping 0.75): each level is
    0.75 x the attention-weighted style features + 0.25 x the AdaAttN transform of the same matches, computed
    plainly from the dense-then-gather reference matching (float64, top-k lists exact)."""
    model = make_model(coarse="relu4_1", top_k=VIDEO_TOP_K, smooth=VIDEO_SMOOTH, chunk=5, warp=0.75).double()
    style_image = torch.rand(1, 3, 64, 48, dtype=torch.float64)  # relu4_1 of 8x6 keys: more than top-k
    model_style = model.prepare_style(style_image)
    feats = model.encoder(torch.rand(1, 3, 48, 32, dtype=torch.float64))
    ours = model.transform(feats, model_style)
    matches = model.match(feats, model_style)
    slow = naive_match(model, feats, model_style)
    for j, level in enumerate(LEVELS):
        moments, top = slow[level]
        if top is not None:
            assert matches[level].top_k[0].tolist() == [k for row in top for k in row], level
            assert matches[level].top_k.shape[-1] == VIDEO_TOP_K
        mean, second = moments.chunk(2, dim=0)
        std = torch.sqrt(torch.relu(second - mean * mean))
        expected = 0.75 * mean + 0.25 * (std * mean_variance_norm(feats[level])[0] + mean)
        torch.testing.assert_close(ours[j][0], expected, atol=1e-7, rtol=0, msg=f"level {level}")


def test_cosine_builds_the_temporal_variant_and_the_image_default_is_unchanged(stand_ins):
    image = build_method("dynast").model  # the shipped default file: what `dynast style` runs
    assert (image.smooth, image.top_k, image.warp, image.noise, image.renorm) == (0.02, 4, 0.5, 0.1, (1.0, 0.0, 0.0))
    same = build_method("dynast", attention="softmax").model
    assert same.config() == image.config()
    video = build_method("dynast", attention="cosine").model
    # session 7's settings: the image default's warping 0.5 flickers more (docs/bench/style_default_s8.md);
    # the re-normalisation stays (docs/bench/style_default_s10.md: more stylised frames, still steady)
    assert (video.smooth, video.top_k, video.warp, video.noise, video.renorm) == \
        (VIDEO_SMOOTH, VIDEO_TOP_K, 0.75, 0.0, (1.0, 0.0, 0.0))
    changed = ("smooth", "top_k", "warp", "noise")
    assert {k: v for k, v in video.config().items() if k not in changed} == \
        {k: v for k, v in image.config().items() if k not in changed}
    assert build_method("dynast", attention="cosine", top_k=2).model.top_k == 2  # an explicit top_k wins
    # the default file's own decoder is fine-tuned for the image matching; the temporal variant decodes with the
    # universal one (the stand-in here), as before session 11 (docs/bench/style_default_s11.md)
    universal = base.universal_decoder(torch.device("cpu"))
    assert image.decoder is not universal and video.decoder is universal
    free = build_method("dynast", weights="none", attention="cosine").model
    assert (free.smooth, free.top_k, free.warp, free.noise) == (VIDEO_SMOOTH, VIDEO_TOP_K, 0.0, 0.0)
    assert "attention" in get_spec("dynast").options
    with pytest.raises(UsageError, match="attention"):
        build_method("dynast", attention="sharp")


def test_image_outputs_do_not_change_with_the_option(stand_ins):
    content, style_image = torch.rand(3, 40, 56), torch.rand(3, 32, 32)
    outs = []
    for options in ({}, {"attention": "softmax"}):
        method = build_method("dynast", **options)
        outs.append(stylize(method, content, prepare_styles(method, [style_image], None, torch.device("cpu"))))
    assert torch.equal(outs[0], outs[1])


def test_frames_are_independent_so_shards_give_the_same_pixels(stand_ins):
    """No state from frame to frame: a frame's output does not depend on the frames stylised before it or
    beside it in a batch (a video split into shards gives the same frames)."""
    method = build_method("dynast", attention="cosine")
    states = prepare_styles(method, [torch.rand(3, 32, 32)], None, torch.device("cpu"))
    frames = torch.stack([torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in square_frames(6)])
    whole = stylize(method, frames, states)
    second_half = stylize(method, frames[3:], states)
    one_by_one = torch.cat([stylize(method, frames[i:i + 1], states) for i in (5, 2, 0)])
    torch.testing.assert_close(second_half, whole[3:], atol=1e-6, rtol=0)
    torch.testing.assert_close(one_by_one, whole[[5, 2, 0]], atol=1e-6, rtol=0)


@pytest.fixture
def clip(tmp_path):
    return write_clip(tmp_path / "clip.mp4", square_frames(8))


def test_dynast_video_defaults_to_the_temporal_variant(clip, style, tmp_path, stand_ins, monkeypatch):
    built = []
    real = video_pipeline.build_method

    def spy(name, **kwargs):
        built.append((name, kwargs.get("attention")))
        return real(name, **kwargs)

    monkeypatch.setattr(video_pipeline, "build_method", spy)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["video", "clip.mp4", "style.png", "-o", "frames", "--batch", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert built == [("dynast", "cosine")]
    assert json.loads((tmp_path / "frames" / ".dynast-video.json").read_text())["method"] == "dynast"
    # the same frames as the temporal variant built by hand
    report = run_video(clip, [style], tmp_path / "by_hand", method=build_method("dynast", attention="cosine"),
                       batch=3, device="cpu")
    assert report.frames == 8
    for a, b in zip(VideoReader(tmp_path / "frames"), VideoReader(tmp_path / "by_hand"), strict=True):
        assert np.array_equal(a, b)
    # --attention still reaches adaattn (and softmax gives dynast's image variant)
    result = runner.invoke(app, ["video", "clip.mp4", "style.png", "-m", "adaattn", "--attention", "softmax",
                                 "-o", "a", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["video", "clip.mp4", "style.png", "--attention", "softmax", "-o", "b", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert built[1:] == [("adaattn", "softmax"), ("dynast", "softmax")]


def test_eval_video_defaults_compare_the_new_default_per_frame_and_the_old_one(clip, style, tmp_path, stand_ins,
                                                                                monkeypatch):
    net = TinyEncoder(seed=1)  # stands in for EfficientNet-Lite0: a list of feature maps
    report = evaluate_video(clip, style, max_frames=4, max_size=None, device="cpu", quality_net=net,
                            output=tmp_path / "t.json")
    rows = {row.name: row for row in report.rows}
    assert list(rows) == ["source (no stylisation)", "dynast:softmax", "dynast:cosine", "adaattn:cosine",
                          "dynast:softmax per-frame image"]
    assert all(row.texture is not None and row.texture >= 0 and row.palette >= 0 for row in report.rows)
    # per-frame image stylisation (style encoded again for every frame) gives the video path's frames
    per_frame, batched = rows["dynast:softmax per-frame image"], rows["dynast:softmax"]
    assert per_frame.warping_error == pytest.approx(batched.warping_error)
    assert per_frame.texture == pytest.approx(batched.texture)
    saved = json.loads((tmp_path / "t.json").read_text())
    assert {"texture", "palette", "warping_error"} <= set(saved["rows"][2])

    # the CLI prints the columns; without the quality network, texture is left empty with a note
    monkeypatch.setattr("dynast_cli.quality.load_quality_network", lambda path=None, device="cpu": (None, "no net"))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["eval", "video", "clip.mp4", "style.png", "--methods", "dynast:cosine",
                                 "--max-frames", "3", "--no-per-frame", "-o", "e.json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "note: no net" in result.output and "texture" in result.output and "palette" in result.output
    saved = json.loads((tmp_path / "e.json").read_text())
    assert [r["name"] for r in saved["rows"]] == ["source (no stylisation)", "dynast:cosine"]
    assert saved["rows"][1]["texture"] is None and saved["rows"][1]["palette"] > 0
