"""Inference hygiene: BatchNorm folded into convolutions at load time (same outputs), --compile off CUDA."""

from __future__ import annotations

import torch
from stand_ins import one_thread  # noqa: F401  (autouse: one torch thread)

from dynast_cli.models.dynast import DynastConfig, DynastGenerator, fold_batchnorm
from dynast_cli.memory import prepare_generator


def test_fold_batchnorm_matches_the_unfolded_generator():
    torch.manual_seed(0)
    config = DynastConfig(ngf=8, max_multi=2, n_layers=2, top_k=2, pos_dim=2, prune_dim=2, semantic_nc=5, crop_size=32)
    model = DynastGenerator(config)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # non-trivial statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.3, 0.3)
    model.eval().double()  # float64: top-k near-ties must not depend on the CPU's float32 rounding
    g = torch.Generator().manual_seed(3)
    f64 = {"generator": g, "dtype": torch.float64}
    inputs = (torch.rand(2, 5, 32, 32, **f64), torch.rand(2, 3, 32, 32, **f64) * 2 - 1, torch.rand(2, 5, 32, 32, **f64))
    with torch.inference_mode():
        reference = model(*inputs)
        fold_batchnorm(model)
        folded = model(*inputs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    blk = model.transformer_2[1].res_block
    assert blk.relu is blk.model[2]  # the shared PReLU survives
    torch.testing.assert_close(folded, reference, atol=1e-9, rtol=0)


def test_fold_batchnorm_leaves_training_batchnorms_alone():
    seq = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    fold_batchnorm(seq.train())
    assert isinstance(seq[1], torch.nn.BatchNorm2d)


def test_prepare_generator_compile_on_cpu_is_a_notice():
    model = torch.nn.Conv2d(3, 3, 1)
    notes = []
    assert prepare_generator(model, (16, 16), compile=True, notify=notes.append) is model
    assert notes == ["--compile: torch.compile is used on CUDA only; running uncompiled on cpu"]


def test_channels_last_modules_give_the_contiguous_result():
    """Every style method works on channels-last features (odd sizes, block padding, views)."""
    from stand_ins import TinyEncoder, as_method

    from dynast_cli.models.adaattn import AdaAttNModel
    from dynast_cli.models.dynast_style import DynastStyleModel
    from dynast_cli.models.stya2k import StyA2KModel
    from dynast_cli.nn.decoders import VGGDecoder
    from dynast_cli.pipelines.style import stylize
    from dynast_cli.styles.adain import AdaINMethod
    from dynast_cli.styles.base import inference_layout

    torch.manual_seed(0)
    enc, dec = TinyEncoder(), VGGDecoder(skip=True).eval()
    models = [as_method(AdaAttNModel(enc, learned=False, decoder=dec)),
              as_method(StyA2KModel(enc, learned=False, residual=False, decoder=dec)),
              as_method(DynastStyleModel(enc, dec)), AdaINMethod(enc, dec)]
    g = torch.Generator().manual_seed(1)
    content, style = torch.rand(1, 3, 29, 43, generator=g), torch.rand(1, 3, 40, 56, generator=g)
    with torch.inference_mode():
        expected = [stylize(m, content, [m.prepare_style(style)]) for m in models]
        inference_layout(enc)
        inference_layout(dec)
        assert dec.decoder_layer_2[1].weight.is_contiguous(memory_format=torch.channels_last)
        for m, ref in zip(models, expected, strict=True):
            torch.testing.assert_close(stylize(m, content, [m.prepare_style(style)]), ref, atol=1e-5, rtol=1e-5)
