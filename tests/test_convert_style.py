"""Parity with the official AdaAttN and StyA2K code, through conversion.

Synthetic checkpoints are written in the official layouts by modules written here as the official
code writes them (Huage001/AdaAttN models/networks.py + adaattn_model.py, LearningHx/StyA2K
models/networks.py + A2K_model.py), saved with ``torch.save`` as ``.pth``. They are converted,
loaded strictly, and our full model must equal the official forward (re-implemented plainly below,
line by line) at 1e-5, with a random-weight VGG19 in the official ``vgg_normalised.pth`` layout.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dynast_cli.errors import WeightsError
from dynast_cli.weights.build import build_model
from stand_ins import as_method
from dynast_cli.weights.convert import convert_adaattn, convert_stya2k
from dynast_cli.weights.io import read_metadata, sha256_file
from test_attention_a2k import _official_block, _official_unblock  # the official StyA2K block helpers

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
STYLE_MODELS = ("adaattn", "stya2k")
SIZE = 128  # square, a multiple of 64: the official StyA2K code needs it


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One thread: faster on a shared 2-core CPU, and the same summation order on both sides."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the official networks, as plainly as the official code -----------------------------------


def official_vgg19() -> nn.Sequential:
    """pytorch-AdaIN's vgg_normalised: 53 children (1x1 conv, then reflection-padded 3x3 convs)."""
    layers: list[nn.Module] = [nn.Conv2d(3, 3, 1)]
    cin = 3
    for block, (width, convs) in enumerate([(64, 2), (128, 2), (256, 4), (512, 4), (512, 4)]):
        for _ in range(convs):
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(cin, width, 3), nn.ReLU()]
            cin = width
        if block < 4:
            layers.append(nn.MaxPool2d(2, 2, 0, ceil_mode=True))
    return nn.Sequential(*layers)


def official_decoder(skip: bool) -> nn.Sequential:
    def conv(cin, cout, relu=True):
        return [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)] + ([nn.ReLU()] if relu else [])

    up = nn.Upsample(scale_factor=2, mode="nearest")
    dec = nn.Module()
    dec.decoder_layer_1 = nn.Sequential(*conv(512, 256), up)
    dec.decoder_layer_2 = nn.Sequential(
        *conv(512 if skip else 256, 256), *conv(256, 256), *conv(256, 256), *conv(256, 128), up,
        *conv(128, 128), *conv(128, 64), up, *conv(64, 64), *conv(64, 3, relu=False),
    )
    return dec


def official_decode(dec, cs, skip_feat=None):
    cs = dec.decoder_layer_1(cs)
    return dec.decoder_layer_2(cs if skip_feat is None else torch.cat((cs, skip_feat), dim=1))


def encode(vgg: nn.Sequential, img):
    children = list(vgg.children())
    feats, x = [], img
    for lo, hi in [(0, 4), (4, 11), (11, 18), (18, 31), (31, 44)]:
        x = nn.Sequential(*children[lo:hi])(x)
        feats.append(x)
    return feats


def mvn(feat, eps=1e-5):
    n, c = feat.shape[:2]
    var = feat.view(n, c, -1).var(dim=2) + eps
    std = var.sqrt().view(n, c, 1, 1)
    mean = feat.view(n, c, -1).mean(dim=2).view(n, c, 1, 1)
    return (feat - mean) / std


def get_key(feats, last):
    _, _, h, w = feats[last].shape
    parts = [mvn(F.interpolate(feats[i], (h, w))) for i in range(last)]
    return torch.cat(parts + [mvn(feats[last])], dim=1)


class OfficialAdaAttN(nn.Module):
    def __init__(self, in_planes, key_planes, max_sample):
        super().__init__()
        self.f = nn.Conv2d(key_planes, key_planes, (1, 1))
        self.g = nn.Conv2d(key_planes, key_planes, (1, 1))
        self.h = nn.Conv2d(in_planes, in_planes, (1, 1))
        self.max_sample = max_sample

    def forward(self, content, style, content_key, style_key, seed=None):
        Fk, G, H = self.f(content_key), self.g(style_key), self.h(style)
        b, _, h_g, w_g = G.size()
        G = G.view(b, -1, w_g * h_g).contiguous()
        if w_g * h_g > self.max_sample:
            torch.manual_seed(seed)
            index = torch.randperm(w_g * h_g)[: self.max_sample]
            G = G[:, :, index]
            style_flat = H.view(b, -1, w_g * h_g)[:, :, index].transpose(1, 2).contiguous()
        else:
            style_flat = H.view(b, -1, w_g * h_g).transpose(1, 2).contiguous()
        b, _, h, w = Fk.size()
        Fk = Fk.view(b, -1, w * h).permute(0, 2, 1)
        S = torch.softmax(torch.bmm(Fk, G), dim=-1)
        mean = torch.bmm(S, style_flat)
        std = torch.sqrt(torch.relu(torch.bmm(S, style_flat**2) - mean**2))
        mean = mean.view(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
        std = std.view(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
        return std * mvn(content) + mean


class OfficialTransformer(nn.Module):
    def __init__(self, max_sample):
        super().__init__()
        self.attn_adain_4_1 = OfficialAdaAttN(512, 960, max_sample)
        self.attn_adain_5_1 = OfficialAdaAttN(512, 1472, max_sample)
        self.merge_conv = nn.Conv2d(512, 512, (3, 3))

    def forward(self, c4, s4, c5, s5, c4k, s4k, c5k, s5k, seed):
        x = self.attn_adain_4_1(c4, s4, c4k, s4k, seed) + F.interpolate(
            self.attn_adain_5_1(c5, s5, c5k, s5k, seed), scale_factor=2, mode="nearest"
        )
        return self.merge_conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))


def official_adaattn_forward(vgg, transformer, adaattn_3, decoder, c, s, seed=6666):
    cf, sf = encode(vgg, c), encode(vgg, s)
    c3 = adaattn_3(cf[2], sf[2], get_key(cf, 2), get_key(sf, 2), seed)
    cs = transformer(cf[3], sf[3], cf[4], sf[4], get_key(cf, 3), get_key(sf, 3), get_key(cf, 4), get_key(sf, 4), seed)
    return official_decode(decoder, cs, c3)


class OfficialA2K(nn.Module):
    def __init__(self, planes):
        super().__init__()
        for name in ("q", "k", "v", "q2", "k2", "v2"):
            setattr(self, name, nn.Conv2d(planes, planes, (1, 1)))
        self.fusion1 = nn.Conv2d(planes, planes, (1, 1))
        self.fusion2 = nn.Conv2d(planes, planes, (1, 1))
        self.sim_alpha = nn.Parameter(torch.ones(1))
        self.sim_beta = nn.Parameter(torch.zeros(1))

    def forward(self, content, style, layer):
        region = {3: 8, 4: 8, 5: 4}[layer]
        b, c, h, w = content.shape
        head = 8
        nc, ns = mvn(content), mvn(style)
        Q1, K1, V1, Q2, K2, V2 = self.q(nc), self.k(ns), self.v(style), self.q2(nc), self.k2(ns), self.v2(style)
        DA_q = _official_block(Q1, region)
        b, c, n, r = DA_q.shape
        DA_q = DA_q.view(b, head, c // head, n, r)
        DA_k = _official_block(K1, region).view(b, head, c // head, n, r)
        DA_v = _official_block(V1, region).view(b, head, c // head, n, r)
        PA_q = _official_block(Q2, region).view(b, head, c // head, n, r)
        PA_k = _official_block(K2, region).view(b, head, c // head, n, r)
        PA_v = _official_block(V2, region).view(b, head, c // head, n, r)
        k_c, v_c = DA_k.mean(-1), DA_v.mean(-1)
        dis = torch.einsum("bhcx,bhcxy->bhxy", k_c, DA_k)
        sim = torch.sigmoid(self.sim_beta + self.sim_alpha * dis)
        k_agg = (torch.einsum("bhxy,bhcxy->bhcx", sim, DA_k) + k_c) / (r + 1)
        v_agg = (torch.einsum("bhxy,bhcxy->bhcx", sim, DA_v) + v_c) / (r + 1)
        scores = torch.softmax(torch.einsum("bhcxy,bhcz->bhyxz", DA_q, k_agg), dim=-1)
        DA = _official_unblock(torch.einsum("bhyxz,bhcz->bhcxy", scores, v_agg).contiguous().view(b, c, n, r), region, h)
        index = torch.argmax(torch.einsum("bhcxy,bhczy->bhxz", PA_q, PA_k), dim=-1).view(b, head, 1, n, 1).expand_as(PA_k)
        k_re, v_re = torch.gather(PA_k, -2, index), torch.gather(PA_v, -2, index)
        scores2 = torch.softmax(torch.einsum("bhcxy,bhcxz->bhxyz", PA_q, k_re), dim=-1)
        PA = _official_unblock(torch.einsum("bhxyz,bhcxz->bhcxy", scores2, v_re).contiguous().view(b, c, n, r), region, h)
        return self.fusion1(DA) + self.fusion2(PA) + content


class OfficialTransform(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn_adain_4_1 = OfficialA2K(512)
        self.attn_adain_5_1 = OfficialA2K(512)
        self.merge_conv = nn.Conv2d(512, 512, (3, 3))

    def forward(self, c4, s4, c5, s5):
        a5 = self.attn_adain_5_1(c5, s5, 5)
        a4 = self.attn_adain_4_1(c4, s4, 4)
        return self.merge_conv(F.pad(a4 + F.interpolate(a5, scale_factor=2, mode="nearest"), (1, 1, 1, 1), mode="reflect"))


def official_stya2k_forward(vgg, a2k, transform, decoder, c, s):
    cf, sf = encode(vgg, c), encode(vgg, s)
    c3 = a2k(cf[2], sf[2], 3) if a2k is not None else None
    return official_decode(decoder, transform(cf[3], sf[3], cf[4], sf[4]), c3)


# --- synthetic checkpoints ---------------------------------------------------------------------


def randomize(module: nn.Module, gen: torch.Generator, gain: float = 1.0) -> nn.Module:
    """Random weights with He-like scale (activations stay alive); biases small."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 4:
                p.copy_(torch.randn(p.shape, generator=gen) * gain * (2.0 / p[0].numel()) ** 0.5)
            elif name.endswith("sim_alpha"):
                p.fill_(0.05)
            elif name.endswith("sim_beta"):
                p.fill_(-0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return module.eval()


def calibrate_decoder(dec: nn.Module, features: torch.Tensor, skip_feat: torch.Tensor | None) -> None:
    """Rescale the last conv so that the decoded test image has mean 0.5 and std 0.2 per channel:
    most of it lands inside (0, 1), so the final clamp hides nothing."""
    with torch.inference_mode():
        out = official_decode(dec, features, skip_feat)
    last = dec.decoder_layer_2[-1]
    raw = out - last.bias.view(1, 3, 1, 1)
    scale = 0.2 / raw.std(dim=(0, 2, 3))
    with torch.no_grad():
        last.weight.mul_(scale.view(3, 1, 1, 1))
        last.bias.copy_(0.5 - raw.mean(dim=(0, 2, 3)) * scale)


def save(module: nn.Module, path: Path) -> Path:
    torch.save(module.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """Official-layout networks with random weights, their .pth files, a content and a style."""
    gen = torch.Generator().manual_seed(0)
    d = tmp_path_factory.mktemp("official")
    nets = {"vgg": randomize(official_vgg19(), gen)}
    nets["vgg"][0].weight.data = torch.eye(3).view(3, 3, 1, 1) * 255.0  # vgg_normalised-like stem
    nets["vgg"][0].bias.data = torch.tensor([-103.9, -116.8, -123.7])
    # adaattn: lower max_sample so the seeded subsampling happens at test size
    # (relu3_1: 32*32 = 1024 > 300, relu4_1: 16*16 = 256 > 200, relu5_1: 64 <= 200)
    nets["transformer"] = randomize(OfficialTransformer(max_sample=200), gen, gain=0.3)
    nets["adaattn_3"] = randomize(OfficialAdaAttN(256, 448, max_sample=300), gen, gain=0.3)
    nets["a2k"] = randomize(OfficialA2K(256), gen)
    nets["transform"] = randomize(OfficialTransform(), gen)
    for name, skip in [("adaattn_decoder", True), ("a2k_decoder", True), ("a2k_decoder_noskip", False)]:
        nets[name] = randomize(official_decoder(skip), gen)
    images = torch.rand(2, 3, SIZE, SIZE, generator=gen)
    content, style = images[:1], images[1:]
    with torch.inference_mode():
        cf, sf = encode(nets["vgg"], content), encode(nets["vgg"], style)
        key = [(get_key(cf, i), get_key(sf, i)) for i in range(5)]
        c3 = nets["adaattn_3"](cf[2], sf[2], *key[2], 6666)
        cs = nets["transformer"](cf[3], sf[3], cf[4], sf[4], *key[3], *key[4], 6666)
        calibrate_decoder(nets["adaattn_decoder"], cs, c3)
        cs = nets["transform"](cf[3], sf[3], cf[4], sf[4])
        calibrate_decoder(nets["a2k_decoder"], cs, nets["a2k"](cf[2], sf[2], 3))
        calibrate_decoder(nets["a2k_decoder_noskip"], cs, None)
    files = {name: save(net, d / f"{name}.pth") for name, net in nets.items()}
    return nets, files, content, style, d


def _check_parity(ours: torch.Tensor, ref: torch.Tensor) -> None:
    inside = ((ref > 0) & (ref < 1)).float().mean().item()
    assert inside > 0.3, f"degenerate test: only {inside:.0%} of the reference output is inside (0, 1)"
    torch.testing.assert_close(ours, ref.clamp(0, 1), rtol=1e-5, atol=1e-5)


# --- tests -------------------------------------------------------------------------------------


def test_adaattn_conversion_and_parity(official):
    nets, files, content, style, d = official
    out = convert_adaattn(files["transformer"], files["adaattn_decoder"], files["adaattn_3"], files["vgg"], out=d / "a.safetensors")
    meta = read_metadata(out)
    assert meta["architecture"] == "adaattn"
    assert json.loads(meta["source_sha256"])["transformer"] == sha256_file(files["transformer"])
    model = build_model(out, STYLE_MODELS, max_sample=200, max_sample_3=300)
    with torch.inference_mode():
        ours = as_method(model).stylize(content, [model.prepare_style(style)], [1.0])
        ref = official_adaattn_forward(nets["vgg"], nets["transformer"], nets["adaattn_3"], nets["adaattn_decoder"], content, style)
    _check_parity(ours, ref)


def test_stya2k_conversion_and_parity(official):
    nets, files, content, style, d = official
    out = convert_stya2k(files["a2k"], files["transform"], files["a2k_decoder"], files["vgg"], out=d / "s.safetensors")
    meta = read_metadata(out)
    assert meta["architecture"] == "stya2k" and json.loads(meta["config"])["skip3"] is True
    model = build_model(out, STYLE_MODELS)
    with torch.inference_mode():
        ours = as_method(model).stylize(content, [model.prepare_style(style)], [1.0])
        ref = official_stya2k_forward(nets["vgg"], nets["a2k"], nets["transform"], nets["a2k_decoder"], content, style)
    _check_parity(ours, ref)


def test_stya2k_decoder_without_relu3_input(official):
    # the layout of shared/reference/stya2k_keys.txt: decoder_layer_2.1 takes 256 channels
    nets, files, content, style, d = official
    out = convert_stya2k(files["a2k"], files["transform"], files["a2k_decoder_noskip"], files["vgg"], out=d / "n.safetensors")
    model = build_model(out, STYLE_MODELS)
    assert model.a2k is None and json.loads(read_metadata(out)["config"])["skip3"] is False
    with torch.inference_mode():
        ours = as_method(model).stylize(content, [model.prepare_style(style)], [1.0])
        ref = official_stya2k_forward(nets["vgg"], None, nets["transform"], nets["a2k_decoder_noskip"], content, style)
    _check_parity(ours, ref)
    with pytest.raises(WeightsError, match="latest_net_A2K.pth is needed"):
        convert_stya2k(None, files["transform"], files["a2k_decoder"], out=d / "x.safetensors")


def test_wrong_checkpoints_name_the_file_and_key(official, tmp_path):
    _, files, _, _, d = official
    with pytest.raises(WeightsError) as err:  # decoder given as the transformer
        convert_adaattn(files["adaattn_decoder"], files["adaattn_decoder"], files["adaattn_3"], out=tmp_path / "x.safetensors")
    assert str(files["adaattn_decoder"]) in str(err.value) and "attn_adain_4_1.f.weight" in str(err.value)
    sd = torch.load(files["adaattn_3"], weights_only=True)
    sd["g.weight"] = sd["g.weight"][:, :256]
    bad = save_sd(sd, tmp_path / "bad_adaattn_3.pth")
    with pytest.raises(WeightsError, match=r"bad_adaattn_3\.pth: key 'g.weight' has shape \(448, 256, 1, 1\)"):
        convert_adaattn(files["transformer"], files["adaattn_decoder"], bad, out=tmp_path / "x.safetensors")
    garbage = tmp_path / "latest_net_transform.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"latest_net_transform.pth: not a PyTorch checkpoint \(corrupt or truncated\)$"):
        convert_stya2k(files["a2k"], garbage, files["a2k_decoder"], out=tmp_path / "x.safetensors")
    with pytest.raises(WeightsError, match="unexpected key 'extra'"):
        sd = torch.load(files["a2k"], weights_only=True)
        sd["extra"] = torch.zeros(1)
        convert_stya2k(save_sd(sd, tmp_path / "a2k_extra.pth"), files["transform"], files["a2k_decoder"], out=tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def save_sd(sd: dict, path: Path) -> Path:
    torch.save(sd, path)
    return path


def test_loading_needs_an_encoder_and_the_right_file(official, tmp_path):
    _, files, _, _, _ = official
    out = convert_adaattn(files["transformer"], files["adaattn_decoder"], files["adaattn_3"], out=tmp_path / "noenc.safetensors")
    with pytest.raises(WeightsError, match="holds no encoder"):
        build_model(out, STYLE_MODELS)
    from dynast_cli.weights.io import save_weights

    other = save_weights({"x": torch.zeros(1)}, tmp_path / "dec.safetensors", {"architecture": "decoder"})
    with pytest.raises(WeightsError, match="dec.safetensors: holds 'decoder' weights"):
        build_model(other, STYLE_MODELS)


def test_cli_converts_a_folder(official, tmp_path):
    from typer.testing import CliRunner

    from dynast_cli.cli import app

    _, files, _, _, _ = official
    folder = tmp_path / "AdaAttN"
    folder.mkdir()
    for role, name in [("transformer", "latest_net_transformer.pth"), ("adaattn_decoder", "latest_net_decoder.pth"),
                       ("adaattn_3", "latest_net_adaattn_3.pth"), ("vgg", "vgg_normalised.pth")]:
        (folder / name).symlink_to(files[role])
    out = tmp_path / "adaattn.safetensors"
    result = CliRunner().invoke(app, ["convert", "adaattn", str(folder), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(read_metadata(out)["source_files"])["vgg"] == "vgg_normalised.pth"
    again = CliRunner().invoke(app, ["convert", "adaattn", str(folder), "-o", str(out)])
    assert again.exit_code == 4 and "already exists" in again.output
    (folder / "latest_net_decoder.pth").unlink()
    missing = CliRunner().invoke(app, ["convert", "adaattn", str(folder), "-o", str(tmp_path / "b.safetensors")])
    assert missing.exit_code == 3 and "latest_net_decoder.pth: no such file" in missing.output
    (folder / "latest_net_transformer.pth").unlink()  # several missing: all named at once, in one line
    missing = CliRunner().invoke(app, ["convert", "adaattn", str(folder), "-o", str(tmp_path / "b.safetensors")])
    assert missing.exit_code == 3 and missing.output.strip() == (
        f"error: {folder}: 2 checkpoint files missing: latest_net_transformer.pth, latest_net_decoder.pth")
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = CliRunner().invoke(app, ["convert", "stya2k", str(empty), "-o", str(tmp_path / "c.safetensors")])
    assert missing.exit_code == 3 and missing.output.strip() == (
        f"error: {empty}: 2 checkpoint files missing: latest_net_transform.pth, latest_net_decoder.pth")
    assert not (tmp_path / "b.safetensors").exists() and not (tmp_path / "c.safetensors").exists()
    # files given one by one, an explicit --vgg among them: full paths, no folder prefix
    missing = CliRunner().invoke(app, ["convert", "adaattn", "--transformer", str(tmp_path / "t.pth"), "--decoder",
                                       str(files["adaattn_decoder"]), "--adaattn3", str(files["adaattn_3"]),
                                       "--vgg", str(tmp_path / "v.pth"), "-o", str(tmp_path / "d.safetensors")])
    assert missing.exit_code == 3 and missing.output.strip() == (
        f"error: 2 checkpoint files missing: {tmp_path / 't.pth'}, {tmp_path / 'v.pth'}")


def _reference_layout(name: str) -> dict[str, dict[str, tuple[int, ...]]]:
    path = REFERENCE / name
    if not path.is_file():
        pytest.skip("shared/reference is absent (fresh clone)")
    files: dict[str, dict[str, tuple[int, ...]]] = {}
    for line in path.read_text().splitlines():
        if line.startswith("== "):
            current = files.setdefault(line[3:].strip(), {})
        elif line.strip():
            key, shape = line.split("\t")[:2]
            current[key] = tuple(int(x) for x in re.findall(r"\d+", shape))
    return files


def test_official_modules_here_match_the_shared_key_lists():
    layouts = _reference_layout("adaattn_keys.txt")

    def shapes(m):
        return {k: tuple(v.shape) for k, v in m.state_dict().items()}

    with torch.device("meta"):
        assert shapes(OfficialTransformer(1)) == layouts["latest_net_transformer.pth"]
        assert shapes(OfficialAdaAttN(256, 448, 1)) == layouts["latest_net_adaattn_3.pth"]
        assert shapes(official_decoder(skip=True)) == layouts["latest_net_decoder.pth"]
        a2k = _reference_layout("stya2k_keys.txt")
        assert shapes(OfficialA2K(256)) == a2k["latest_net_A2K.pth"]
        assert shapes(OfficialTransform()) == a2k["latest_net_transform.pth"]


def test_our_trained_export_loads_with_the_vgg16_it_names(tmp_path, monkeypatch):
    """`dynast train style --method adaattn` exports without encoder keys, config "encoder": "vgg16"."""
    from dynast_cli.weights import build as vgg_module
    from dynast_cli.models.adaattn import AdaAttNModel
    from dynast_cli.weights.io import save_weights
    from stand_ins import TinyEncoder

    encoder = TinyEncoder()
    model = AdaAttNModel(encoder, learned=True).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    path = save_weights(state, tmp_path / "adaattn_vgg16.safetensors",
                        {"architecture": "adaattn", "config": {**model.config(), "encoder": "vgg16"}})
    monkeypatch.setattr(vgg_module, "load_vgg16", lambda device="cpu": encoder)
    loaded = build_model(path, STYLE_MODELS)
    assert loaded.encoder is encoder
    content, style = torch.rand(1, 3, 32, 48), torch.rand(1, 3, 40, 40)
    with torch.inference_mode():
        expected = as_method(model).stylize(content, [model.prepare_style(style)], [1.0])
        got = as_method(loaded).stylize(content, [loaded.prepare_style(style)], [1.0])
    torch.testing.assert_close(got, expected)


def test_an_official_file_converted_without_its_vgg19_is_refused_by_the_style_methods(official, tmp_path, monkeypatch):
    """Without ``encoder.*`` the style method ran the official decoder on the ImageNet VGG16 with no word
    (other outputs than the official code's); our own trained files (config encoder vgg16) still load."""
    from dynast_cli.styles import base, build_method

    _, files, _, _, _ = official
    out = convert_adaattn(files["transformer"], files["adaattn_decoder"], files["adaattn_3"], out=tmp_path / "noenc.safetensors")
    monkeypatch.setattr(base, "vgg16", lambda device, path=None: pytest.fail("the VGG16 must not be loaded"))
    with pytest.raises(WeightsError, match=r"noenc.safetensors: holds no encoder: an official checkpoint needs its "
                                           r"VGG19; convert it again with --vgg vgg_normalised.pth"):
        build_method("adaattn", weights=str(out))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_checkpoint_holding_nan_is_refused_when_read(tmp_path, bad):
    """It was converted (exit 0) and only the run with the converted file failed, naming that file."""
    from dynast_cli.weights.io import load_torch_checkpoint

    path = tmp_path / "latest_net_decoder.pth"
    torch.save({"w": torch.tensor([1.0, bad])}, path)
    with pytest.raises(WeightsError, match=r"latest_net_decoder.pth: tensor 'w' holds NaN or infinite values"):
        load_torch_checkpoint(path)
