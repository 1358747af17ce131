"""``--precision``: bf16 convolutions on CPUs with native bfloat16, fp32 elsewhere and on request.

The rest of the suite runs in fp32 (conftest), so no test depends on this CPU's bf16 support; here
the choice is tested with the CPU's answer replaced, and the bf16 path runs on any CPU (emulated
where there is no native bf16: slow for a real network, instant for these small ones).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from dynast_cli import runtime
from dynast_cli.cli import app
from dynast_cli.errors import UsageError
from dynast_cli.styles import base
from stand_ins import TinyEncoder, one_error_line


@pytest.fixture
def auto(monkeypatch):
    monkeypatch.delenv("DYNAST_PRECISION", raising=False)


def test_auto_is_bf16_only_on_a_cpu_with_native_bf16(auto, monkeypatch):
    monkeypatch.setattr(runtime, "native_bf16_cpu", lambda: True)
    assert runtime.inference_precision("cpu") == "bf16"
    assert runtime.inference_precision("cuda") == "fp32"
    monkeypatch.setattr(runtime, "native_bf16_cpu", lambda: False)
    assert runtime.inference_precision("cpu") == "fp32"
    runtime.set_precision("bf16")
    assert runtime.inference_precision("cpu") == "bf16"  # asked for: even where it is emulated
    runtime.set_precision(None)
    monkeypatch.setenv("DYNAST_PRECISION", "bf16")
    assert runtime.inference_precision("cpu") == "bf16"
    with pytest.raises(UsageError, match="unknown --precision 'half'"):
        runtime.set_precision("half")


def test_bf16_convolutions_return_float32_close_to_fp32_and_keep_the_weights():
    encoder = TinyEncoder()
    x = torch.rand(2, 3, 32, 40)
    want = encoder(x)
    state = {k: v.clone() for k, v in encoder.state_dict().items()}
    base.inference_layout(encoder, "cpu")  # fp32 here (conftest): nothing but the layout changes
    assert not hasattr(encoder, "precision")
    runtime.run_in_bf16(encoder, "cpu")
    got = encoder(x, upto=3)  # keyword arguments pass through
    assert len(got) == 3 and all(g.dtype == torch.float32 for g in got)
    for g, w in zip(got, want):
        assert (g - w).abs().max() <= 0.02 * w.abs().max()  # bf16 keeps ~3 significant digits
        assert not torch.equal(g, w)  # and it did run in bf16
    assert all(torch.equal(v, state[k]) for k, v in encoder.state_dict().items())


def test_inference_layout_applies_bf16_once_when_chosen(monkeypatch):
    monkeypatch.setenv("DYNAST_PRECISION", "bf16")
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    base.inference_layout(net, "cpu")
    forward = net.forward
    base.inference_layout(net, "cpu")
    assert net.precision == "bf16" and net.forward is forward
    assert net(torch.rand(1, 3, 8, 8)).dtype == torch.float32


def test_cli_refuses_an_unknown_precision(tmp_path, image_file):
    content, style = image_file(32, 32, "c.png"), image_file(32, 32, "s.png", seed=1)
    res = CliRunner().invoke(app, ["style", str(content), str(style), "-o", str(tmp_path / "o.png"),
                                   "--precision", "half"])
    one_error_line(res, "--precision", "half", code=1)
    assert not (tmp_path / "o.png").exists()


def test_reflection_pad_keeps_bf16_under_autocast_at_inference_with_equal_outputs():
    """CPU autocast pads in float32; the decoders' pad pads the bf16 tensor itself at inference (it only moves
    values: the same result, without two casts of each activation). With autograd on it is the standard op."""
    from dynast_cli.nn.decoders import VGGDecoder
    from dynast_cli.nn.pad import ReflectionPad2d

    x = torch.randn(1, 4, 5, 6).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        standard = nn.ReflectionPad2d(1)(x)
        with torch.inference_mode():
            ours = ReflectionPad2d(1)(x)
        trained = ReflectionPad2d(1)(x.float().requires_grad_())
    assert standard.dtype == torch.float32 and ours.dtype == torch.bfloat16 and trained.dtype == torch.float32
    assert torch.equal(ours.float(), standard)
    decoder = VGGDecoder(skip=True).eval()
    plain = VGGDecoder(skip=True).eval()
    plain.load_state_dict(decoder.state_dict())
    for seq in (plain.decoder_layer_1, plain.decoder_layer_2):
        for i, layer in enumerate(seq):
            if isinstance(layer, ReflectionPad2d):
                seq[i] = nn.ReflectionPad2d(1)
    assert sum(type(m) is nn.ReflectionPad2d for m in plain.modules()) == 9
    cs, skip = torch.rand(1, 512, 4, 5), torch.rand(1, 256, 8, 10)
    for net in (decoder, plain):
        runtime.run_in_bf16(net, "cpu")
    with torch.inference_mode():
        assert torch.equal(decoder(cs, skip=skip), plain(cs, skip=skip))
