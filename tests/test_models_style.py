"""AdaAttN and StyA2K models: any size, several styles, alpha, parameter-free modes, batching."""

from __future__ import annotations

import pytest
import torch

from dynast_cli.attention.reference import (
    aggregate_blocks_naive,
    distributed_attention_naive,
    progressive_attention_naive,
)
from dynast_cli.errors import DynastError
from dynast_cli.models.adaattn import AdaAttNModel
from dynast_cli.models.stya2k import A2KLayer, StyA2KModel
from dynast_cli.models.vgg import vgg16_encoder
from dynast_cli.nn.decoders import VGGDecoder
from dynast_cli.nn.norm import adain, mean_variance_norm
from dynast_cli.ops import mix_levels, mix_weights
from dynast_cli.pipelines.style import stylize
from stand_ins import as_method


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return vgg16_encoder().eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, 67, 93, generator=g), torch.rand(1, 3, 50, 80, generator=g), torch.rand(1, 3, 40, 40, generator=g)


MODELS = [
    pytest.param(AdaAttNModel, {}, id="adaattn"),
    pytest.param(AdaAttNModel, {"learned": False}, id="adaattn*"),
    pytest.param(AdaAttNModel, {"learned": False, "attention": "cosine"}, id="adaattn*-cosine"),
    pytest.param(StyA2KModel, {}, id="stya2k"),
    pytest.param(StyA2KModel, {"skip3": False}, id="stya2k-noskip"),
    pytest.param(StyA2KModel, {"learned": False}, id="a2k*"),
]


@pytest.mark.parametrize("cls,kwargs", MODELS)
def test_odd_sizes_and_aspect_ratios(cls, kwargs, encoder, images):
    content, style, _ = images
    torch.manual_seed(1)
    model = cls(encoder, **kwargs).eval()
    with torch.inference_mode():
        out = as_method(model).stylize(content, [model.prepare_style(style)], [1.0])
    assert out.shape == (1, 3, 67, 93)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("cls,kwargs", [MODELS[1], MODELS[5]])
def test_mix_weights_blend_styles(cls, kwargs, encoder, images):
    content, style, style2 = images
    model = cls(encoder, **kwargs).eval()
    method = as_method(model)
    with torch.inference_mode():
        a, b = model.prepare_style(style), model.prepare_style(style2)
        only_a = method.stylize(content, [a], [1.0])
        torch.testing.assert_close(method.stylize(content, [a, b], [1.0, 0.0]), only_a)
        half = stylize(method, content, [a, b], [2.0, 2.0])  # the pipeline normalises the weights
        torch.testing.assert_close(half, method.stylize(content, [a, b], [0.5, 0.5]))
        feats = model.encoder(content)
        parts = [model.transform(feats, s) for s in (a, b)]
        blended = mix_levels(parts, feats[2:], mix_weights([0.25, 0.75], 2))
        for level, (x, y, z) in enumerate(zip(blended, *parts)):
            assert (y - z).abs().max() > 1e-2 * y.abs().max()  # the two styles do differ
            torch.testing.assert_close(x, 0.25 * y + 0.75 * z, rtol=1e-5, atol=1e-4, msg=f"level {level}")


@pytest.mark.parametrize("cls,kwargs", [MODELS[0], MODELS[3]])
def test_alpha_mixes_each_level_with_the_content(cls, kwargs, encoder, images):
    content, style, _ = images
    model = cls(encoder, **kwargs).eval()
    with torch.inference_mode():
        state = model.prepare_style(style)
        feats = model.encoder(content)
        full, none, third = (mix_levels([model.transform(feats, state)], feats[2:], [1.0], alpha) for alpha in (1, 0, 1 / 3))
    for level, i in enumerate((2, 3, 4)):
        torch.testing.assert_close(none[level], feats[i])
        torch.testing.assert_close(third[level], full[level] / 3 + feats[i] * 2 / 3, rtol=1e-5, atol=1e-4)


def test_parameter_free_modes_hold_only_the_decoder(encoder):
    for model in (AdaAttNModel(encoder, learned=False), StyA2KModel(encoder, learned=False)):
        names = {n.split(".")[0] for n, _ in model.named_parameters()}
        assert names <= {"encoder", "decoder"}
    learned = {k.split(".")[0] for k in AdaAttNModel(encoder).state_dict()}
    assert learned == {"encoder", "adaattn_3", "transformer", "decoder"}
    assert {k.split(".")[0] for k in StyA2KModel(encoder).state_dict()} == {"encoder", "a2k", "transformer", "decoder"}


def test_adaattn_chunking_and_batching_do_not_change_results(encoder, images):
    content, style, _ = images
    model = AdaAttNModel(encoder, learned=False).eval()
    small = AdaAttNModel(encoder, learned=False, decoder=model.decoder, chunk_elements=5000).eval()
    method = as_method(model)
    with torch.inference_mode():
        state = model.prepare_style(style)
        out = method.stylize(content, [state], [1.0])
        assert ((out > 0) & (out < 1)).float().mean() > 0.3  # not a clamped, all-black image
        torch.testing.assert_close(as_method(small).stylize(content, [state], [1.0]), out, rtol=1e-5, atol=1e-5)
        flipped = content.flip(-1)
        batch = method.stylize(torch.cat([content, flipped]), [state], [1.0])
        torch.testing.assert_close(batch[1:], method.stylize(flipped, [state], [1.0]), rtol=1e-5, atol=1e-5)
        cosine = AdaAttNModel(encoder, learned=False, attention="cosine", decoder=model.decoder).eval()
        feats = model.encoder(content)
        for soft, cos in zip(model.transform(feats, state), cosine.transform(feats, state)):
            assert (soft - cos).abs().max() > 1e-2 * soft.abs().max()


def test_parameter_free_a2k_layer_is_content_plus_both_attentions():
    g = torch.Generator().manual_seed(2)
    content, style = torch.randn(1, 16, 11, 13, generator=g), torch.randn(1, 16, 9, 6, generator=g)
    layer = A2KLayer(16, block=4, heads=8, learned=False)
    z = layer(content, layer.prepare(style))
    nc, ns = mean_variance_norm(content), mean_variance_norm(style)
    k_agg, v_agg = aggregate_blocks_naive(ns, style, 4, 8, 1.0, 0.0)
    da = distributed_attention_naive(nc.flatten(2), k_agg, v_agg, 8).view_as(content)
    pa = progressive_attention_naive(nc, ns, style, 4, 8)
    torch.testing.assert_close(z, content + da + pa, rtol=1e-5, atol=1e-5)
    # the universal-decoder variant averages the two attentions, drops the residual, matches the style's statistics
    mean_layer = A2KLayer(16, block=4, heads=8, learned=False, residual=False)
    torch.testing.assert_close(mean_layer(content, mean_layer.prepare(style)), adain((da + pa) / 2, style),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="residual=False"):
        StyA2KModel(vgg16_encoder(), learned=True, residual=False)


def test_bad_arguments_are_rejected(encoder):
    with pytest.raises(DynastError, match="--mix has 1 weight"):
        mix_weights([1.0], 2)
    with pytest.raises(DynastError, match="not all zero"):
        mix_weights([0.0, 0.0], 2)
    with pytest.raises(ValueError, match="attention"):
        AdaAttNModel(encoder, attention="dot")
    with pytest.raises(ValueError, match="skip3"):
        StyA2KModel(encoder, skip3=False, decoder=VGGDecoder(skip=True))
