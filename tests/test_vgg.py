"""VGG encoders: the official VGG19 layout (exact outputs), VGG16 shapes, preprocessing, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dynast_cli.errors import WeightsError
from dynast_cli.models.vgg import FEATURE_CHANNELS, VGG16_KERAS_NAMES, vgg16_encoder, vgg19_from_state_dict
from dynast_cli.weights.build import load_vgg16, load_vgg19
from dynast_cli.weights.io import save_weights


def official_vgg19() -> nn.Sequential:
    """pytorch-AdaIN's ``net.vgg``, written out child by child (53 children)."""
    pad = lambda: nn.ReflectionPad2d((1, 1, 1, 1))  # noqa: E731
    pool = lambda: nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True)  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(3, 3, (1, 1)),
        pad(), nn.Conv2d(3, 64, (3, 3)), nn.ReLU(),  # relu1-1
        pad(), nn.Conv2d(64, 64, (3, 3)), nn.ReLU(),  # relu1-2
        pool(),
        pad(), nn.Conv2d(64, 128, (3, 3)), nn.ReLU(),  # relu2-1
        pad(), nn.Conv2d(128, 128, (3, 3)), nn.ReLU(),  # relu2-2
        pool(),
        pad(), nn.Conv2d(128, 256, (3, 3)), nn.ReLU(),  # relu3-1
        pad(), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),  # relu3-2
        pad(), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),  # relu3-3
        pad(), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),  # relu3-4
        pool(),
        pad(), nn.Conv2d(256, 512, (3, 3)), nn.ReLU(),  # relu4-1
        pad(), nn.Conv2d(512, 512, (3, 3)), nn.ReLU(),  # relu4-2
        pad(), nn.Conv2d(512, 512, (3, 3)), nn.ReLU(),  # relu4-3
        pad(), nn.Conv2d(512, 512, (3, 3)), nn.ReLU(),  # relu4-4
        pool(),
        pad(), nn.Conv2d(512, 512, (3, 3)), nn.ReLU(),  # relu5-1
        pad(), nn.Conv2d(512, 512, (3, 3)), nn.ReLU(),  # relu5-2
        pad(), nn.Conv2d(512, 512, (3, 3)), nn.ReLU(),  # relu5-3
        pad(), nn.Conv2d(512, 512, (3, 3)), nn.ReLU(),  # relu5-4
    )


@pytest.fixture(scope="module")
def official():
    torch.manual_seed(1)
    vgg = official_vgg19()
    assert len(vgg) == 53
    with torch.no_grad():  # small weights keep activations in a sane range through 13 convs
        for m in vgg.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0, (2.0 / (m.in_channels * 9)) ** 0.5)
                m.bias.uniform_(-0.1, 0.1)
    return vgg


def test_vgg19_matches_official_slices_on_odd_size(official):
    encoder = vgg19_from_state_dict(official.state_dict())
    layers = list(official.children())
    slices = [layers[:4], layers[4:11], layers[11:18], layers[18:31], layers[31:44]]
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        ours = encoder(x)
        ref, h = [], x
        for s in slices:
            h = nn.Sequential(*s)(h)
            ref.append(h)
    assert [f.shape[1] for f in ours] == list(FEATURE_CHANNELS)
    assert ours[-1].shape[-2:] == (3, 4)  # ceil_mode pooling keeps the borders: 37x53 -> 3x4
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_vgg19_keys_are_the_official_ones(official):
    encoder = vgg19_from_state_dict(official.state_dict())
    keys = list(encoder.state_dict())
    convs = [0, 2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42]
    assert keys == [f"{i}.{p}" for i in convs for p in ("weight", "bias")]


def test_vgg19_upto_stops_early(official):
    encoder = vgg19_from_state_dict(official.state_dict())
    feats = encoder(torch.rand(1, 3, 16, 16), upto=2)
    assert [f.shape[1] for f in feats] == [64, 128]


def test_vgg19_missing_or_misshapen_keys_name_the_file(official):
    sd = official.state_dict()
    missing = {k: v for k, v in sd.items() if k != "29.weight"}
    with pytest.raises(WeightsError, match=r"^my_vgg\.pth: .*missing.*29\.weight"):
        vgg19_from_state_dict(missing, source="my_vgg.pth")
    bad = dict(sd)
    bad["2.weight"] = torch.zeros(64, 3, 1, 1)
    with pytest.raises(WeightsError, match=r"^my_vgg\.pth: tensor '2\.weight' has shape"):
        vgg19_from_state_dict(bad, source="my_vgg.pth")


def test_load_vgg19_from_pth_and_prefixed_safetensors(official, tmp_path):
    pth = tmp_path / "vgg_normalised.pth"
    torch.save(official.state_dict(), pth)
    st = tmp_path / "model.safetensors"
    save_weights({f"encoder.{k}": v for k, v in official.state_dict().items() if int(k.split(".")[0]) < 44}, st)
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        a = load_vgg19(pth)(x, upto=3)[-1]
        b = load_vgg19(st)(x, upto=3)[-1]
    torch.testing.assert_close(a, b)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="garbage.pth"):
        load_vgg19(garbage)


@pytest.mark.parametrize("h,w", [(37, 53), (16, 16), (1, 1)])
def test_vgg16_feature_shapes(h, w):
    feats = vgg16_encoder().eval()(torch.rand(2, 3, h, w))
    sizes = [(h, w)]
    for _ in range(4):
        sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
    assert [tuple(f.shape) for f in feats] == [(2, c, *s) for c, s in zip(FEATURE_CHANNELS, sizes)]


def test_vgg16_keys_follow_torchvision_features():
    keys = vgg16_encoder().state_dict().keys()
    assert list(VGG16_KERAS_NAMES.values()) == ["0", "2", "5", "7", "10", "12", "14", "17", "19", "21", "24"]
    assert set(keys) == {f"{i}.{p}" for i in VGG16_KERAS_NAMES.values() for p in ("weight", "bias")}


def test_vgg16_caffe_preprocessing():
    """relu1_1 == relu(conv1_1(BGR*255 - mean)) with zero padding."""
    enc = vgg16_encoder().eval()
    x = torch.rand(1, 3, 9, 11)
    conv = enc.get_submodule("0")
    bgr = x[:, [2, 1, 0]] * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.relu(torch.nn.functional.conv2d(bgr, conv.weight, conv.bias, padding=1))
        torch.testing.assert_close(enc(x, upto=1)[0], expected)


def test_vgg16_frozen_but_gradients_reach_input():
    enc = vgg16_encoder()
    assert not any(p.requires_grad for p in enc.parameters())
    x = torch.rand(1, 3, 12, 12, requires_grad=True)
    enc(x, upto=3)[-1].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters())


def test_load_vgg16_from_converted_file(tmp_path, monkeypatch):
    """load_vgg16 loads a file passed explicitly (the value check is the fetch module's job)."""
    import dynast_cli.weights.fetch as fetch

    ref = vgg16_encoder()
    path = save_weights(ref.state_dict(), tmp_path / "vgg16.safetensors", {"architecture": "vgg16"})
    monkeypatch.setattr(fetch, "verify_vgg16_safetensors", lambda p: None)
    enc = load_vgg16(path)
    assert not enc.training
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(enc(x)[-1], ref(x)[-1])


def test_vgg16_keep_returns_only_the_levels_asked_for():
    """``keep`` drops the levels a method does not read (the DynaST style default: relu3_1..relu5_1), with the
    kept ones unchanged."""
    enc = vgg16_encoder().eval()
    x = torch.rand(1, 3, 36, 44, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        full = enc(x)
        part = enc(x, keep=(2, 3, 4))
        short = enc(x, upto=3, keep=(0, 2))
    assert part[0] is None and part[1] is None and len(part) == 5
    assert all(torch.equal(part[i], full[i]) for i in (2, 3, 4))
    assert short[1] is None and len(short) == 3 and torch.equal(short[0], full[0]) and torch.equal(short[2], full[2])


def test_the_dynast_method_encodes_the_content_keeping_only_its_levels(monkeypatch):
    """The style default's content (and style) encoding holds no relu1_1/relu2_1 (100 MB at 512 px); the
    other methods still get all five levels."""
    from stand_ins import TinyEncoder
    from dynast_cli.models.dynast_style import DynastStyleModel
    from dynast_cli.nn.decoders import VGGDecoder
    from dynast_cli.styles.adain import AdaINMethod
    from dynast_cli.styles.dynast import DynastMethod

    calls = []

    class Recording(TinyEncoder):
        def forward(self, x, upto=5, keep=None):
            calls.append(keep)
            return super().forward(x, upto=upto, keep=keep)

    enc, dec = Recording(), VGGDecoder(skip=True).eval()
    content, style = torch.rand(1, 3, 32, 48), torch.rand(1, 3, 32, 32)
    dynast = DynastMethod(DynastStyleModel(enc, dec).eval())
    with torch.inference_mode():
        dynast.stylize(content, [dynast.prepare_style(style)])
    assert calls and all(keep == (2, 3, 4) for keep in calls if keep is not None)
    assert calls[-1] == (2, 3, 4) and calls.count((2, 3, 4)) >= 2  # the content (last) and the padded style
    calls.clear()
    adain = AdaINMethod(enc, dec)
    with torch.inference_mode():
        adain.stylize(content, [adain.prepare_style(style)])
    assert calls and all(keep is None for keep in calls)
