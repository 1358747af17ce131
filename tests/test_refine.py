"""``--refine``: pixel optimisation after a feed-forward method, and the shared objective of ``optimize``."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from dynast_cli.cli import app
from dynast_cli.nn.norm import calc_mean_std, mean_variance_norm
from dynast_cli.ops import fit_size
from dynast_cli.pipelines.style import prepare_styles, stylize
from dynast_cli.styles import build_method, get_spec, parse_method_spec
from dynast_cli.styles.optimize import OptimizeMethod
from dynast_cli.styles.refine import REFINE_BYTES_PER_PIXEL, RefinedMethod, refine_bytes, refine_steps
from stand_ins import TinyEncoder, style_distance, one_thread  # noqa: F401 (autouse fixture)


class Identity:
    """A 'style method' that returns the content: isolates what the refinement does."""

    name = "identity"

    def prepare_style(self, style):
        return None

    def stylize(self, content, states, mix, alpha=1.0):
        return content.clone()


class Darken:
    name = "darken"

    def prepare_style(self, style):
        return None

    def stylize(self, content, states, mix, alpha=1.0):
        return content * 0.5


def _run(method, content, styles, alpha=1.0, mix=None):
    with torch.inference_mode():
        states = [method.prepare_style(s) for s in styles]
    return stylize(method, content, states, mix, alpha)


def test_refinement_moves_the_base_output_toward_the_style_statistics():
    torch.manual_seed(0)
    encoder = TinyEncoder()
    content = torch.rand(1, 3, 32, 48) * 0.5
    style = 0.5 + torch.rand(1, 3, 32, 32) * 0.5
    base = _run(Identity(), content, [style])
    refined = _run(RefinedMethod(Identity(), encoder, steps=20, lr=0.05, content_weight=1e-3), content, [style])
    assert refined.shape == content.shape and 0 <= refined.min() and refined.max() <= 1
    assert style_distance(encoder, refined, style) < 0.5 * style_distance(encoder, base, style)


def test_zero_steps_is_the_base_method_exactly():
    content, style = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    assert torch.equal(_run(RefinedMethod(Darken(), TinyEncoder(), steps=0), content, [style]), content * 0.5)


def test_alpha_zero_targets_the_contents_own_statistics_so_the_content_stays_put():
    """At alpha 0 the statistics target is the content's and the content term is at its minimum: zero
    gradient, so Adam does not move a single pixel."""
    content, style = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    out = _run(RefinedMethod(Identity(), TinyEncoder(), steps=3, lr=0.1), content, [style], alpha=0.0)
    assert torch.equal(out, content)


def test_a_large_image_is_refined_at_the_working_size_and_the_change_upsampled(monkeypatch):
    encoder = TinyEncoder()
    seen = []
    original = encoder.forward

    def spy(x, *args, **kwargs):
        seen.append(tuple(x.shape[-2:]))
        return original(x, *args, **kwargs)

    monkeypatch.setattr(encoder, "forward", spy)
    content, style = 0.4 + 0.2 * torch.rand(1, 3, 48, 96), torch.rand(1, 3, 32, 32)  # small steps: no clamping
    method = RefinedMethod(Identity(), encoder, steps=2, lr=0.01, max_side=32)
    out = _run(method, content, [style])
    assert out.shape == content.shape
    assert max(max(hw) for hw in seen[1:]) == 32  # every pass after the style's ran at the working size
    assert fit_size(48, 96, max_size=32) == (16, 32)
    # the added change is a bilinear 3x upsampling of a 16x32 one (whose values sit at rows/cols 1, 4, 7, ...)
    change = out - content
    coarse = change[..., 1::3, 1::3]
    assert coarse.shape[-2:] == (16, 32) and change.abs().max() > 1e-3
    upsampled = F.interpolate(coarse, size=(48, 96), mode="bilinear", align_corners=False)
    assert torch.allclose(change, upsampled, atol=1e-5)


def test_several_styles_blend_their_statistics_with_the_mix():
    torch.manual_seed(0)
    encoder = TinyEncoder()
    content = torch.rand(1, 3, 32, 32) * 0.2 + 0.4
    dark, bright = torch.rand(1, 3, 32, 32) * 0.2, 0.8 + torch.rand(1, 3, 32, 32) * 0.2
    method = RefinedMethod(Identity(), encoder, steps=0)
    with torch.inference_mode():
        states = [method.prepare_style(s) for s in (dark, bright)]
    method.steps, method.lr, method.content_weight = 30, 0.05, 0.0
    toward_dark = stylize(method, content, states, [0.9, 0.1])
    toward_bright = stylize(method, content, states, [0.1, 0.9])
    assert toward_dark.mean() < content.mean() < toward_bright.mean()


def _reference_optimize(encoder, content, style, steps, lr, w_local, w_global, w_content):
    """The optimize loop written out plainly (as it was before the objective was shared with --refine)."""
    from dynast_cli.models.adaattn import AdaAttNModel

    attn = AdaAttNModel(encoder, learned=False).eval()
    with torch.no_grad():
        state = attn.prepare_style(style)
        stats = [calc_mean_std(f) for f in encoder(style)]
        c_feats = encoder(content)
        local = attn.transform(c_feats, state)
    x = content.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        feats = encoder(x)
        loss = sum(w_local * F.mse_loss(feats[i], t) for i, t in zip((2, 3, 4), local))
        for f, (m, s) in zip(feats, stats):
            fm, fs = calc_mean_std(f)
            loss = loss + w_global * (F.mse_loss(fm, m) + F.mse_loss(fs, s))
        for i in (3, 4):
            loss = loss + w_content * F.mse_loss(mean_variance_norm(feats[i]), mean_variance_norm(c_feats[i]))
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    return x.detach()


def test_optimize_matches_a_plain_reference_loop():
    torch.manual_seed(0)
    encoder = TinyEncoder()
    content, style = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    ours = _run(OptimizeMethod(encoder, steps=5, lr=0.02), content, [style])
    reference = _reference_optimize(encoder, content, style, 5, 0.02, 3.0, 10.0, 1.0)
    assert torch.allclose(ours, reference, atol=1e-6, rtol=0)


def test_defaults_and_specs():
    # no method refines by default (issue #16: the refinement optimised the statistics it was judged by)
    assert get_spec("dynast").refine == 0 and get_spec("adain").refine == 0
    assert refine_steps("dynast", None) == 0 and refine_steps("dynast", 10) == 10 and refine_steps("adain", 3) == 3
    assert parse_method_spec("dynast") == ("dynast", None, None)
    assert parse_method_spec("adain+refine10") == ("adain", None, 10)
    assert parse_method_spec("dynast:none+refine0") == ("dynast", "none", 0)
    assert parse_method_spec("adaattn:runs/a+b.safetensors") == ("adaattn", "runs/a+b.safetensors", None)
    assert refine_bytes((2160, 3840)) == REFINE_BYTES_PER_PIXEL * 288 * 512  # bounded by the working size
    assert refine_bytes((100, 80)) == REFINE_BYTES_PER_PIXEL * 100 * 80


def test_refinement_keeps_the_pipelines_style_preparation(stand_ins):
    """prepare_styles (inference mode) then stylize (inference mode) through the real wrapper."""
    from dynast_cli.styles.refine import with_refinement

    base = build_method("adain")
    assert with_refinement(base, 0, torch.device("cpu")) is base
    method = with_refinement(base, 2, torch.device("cpu"))
    states = prepare_styles(method, [torch.rand(3, 40, 40)], 32, torch.device("cpu"))
    out = stylize(method, torch.rand(3, 24, 40), states)
    assert out.shape == (3, 24, 40) and not out.requires_grad


def test_cli_refines_only_when_asked(stand_ins, image_file, tmp_path):
    content, style = image_file(32, 48, "c.png"), image_file(32, 32, "s.png", seed=3)
    runner = CliRunner()

    def run(*args):
        out = tmp_path / f"o{len(list(tmp_path.glob('o*.png')))}.png"
        result = runner.invoke(app, ["style", str(content), str(style), "-o", str(out), *args])
        assert result.exit_code == 0, result.output
        return out.read_bytes()

    assert run() == run("--refine", "0") != run("--refine", "2")
    assert run("-m", "adain") == run("-m", "adain", "--refine", "0") != run("-m", "adain", "--refine", "3")
    result = runner.invoke(app, ["style", str(content), str(style), "-o", str(tmp_path / "x.png"), "--refine", "-1"])
    assert result.exit_code == 1 and not (tmp_path / "x.png").exists()


def test_eval_labels_refined_methods(stand_ins, tmp_path, monkeypatch):
    from conftest import make_image_folder
    from dynast_cli.weights import build as vgg

    monkeypatch.setattr(vgg, "load_vgg16", lambda *a, **k: TinyEncoder())
    content = make_image_folder(tmp_path, "content", 1, 32, 32)
    style = make_image_folder(tmp_path, "style", 1, 32, 32, seed=4)
    result = CliRunner().invoke(app, ["eval", "style", "--content", str(content), "--style", str(style),
                                      "--methods", "adain,adain+refine2", "--size", "32", "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    summary = {s["method"]: s for s in json.loads((tmp_path / "e" / "style_eval.json").read_text())["summary"]}
    assert set(summary) == {"adain", "adain+refine2"}
    assert summary["adain"]["style_loss"] != summary["adain+refine2"]["style_loss"]


@pytest.mark.parametrize("steps", [1, 4])
def test_refined_outputs_stay_in_range_for_any_step_count(steps):
    out = _run(RefinedMethod(Identity(), TinyEncoder(), steps=steps, lr=0.5), torch.rand(1, 3, 32, 32),
               [torch.rand(1, 3, 32, 32)])
    assert 0 <= out.min() and out.max() <= 1


def test_a_memory_budget_counts_the_refinement_and_says_how_to_drop_it(stand_ins):
    from dynast_cli.memory import MemoryBudgetError, plan_style

    method = build_method("adain")
    plain = plan_style(10**12, method, (480, 640), [(512, 512)])
    refined = plan_style(10**12, method, (480, 640), [(512, 512)], extra_bytes=refine_bytes((480, 640)))
    assert refined.minimum - plain.minimum == REFINE_BYTES_PER_PIXEL * 384 * 512
    with pytest.raises(MemoryBudgetError, match=r"refinement .*; try a smaller --max-size or --refine 0\)"):
        plan_style(plain.minimum, method, (480, 640), [(512, 512)], extra_bytes=refine_bytes((480, 640)))
    with pytest.raises(MemoryBudgetError) as plain_error:
        plan_style(plain.minimum - 1, method, (480, 640), [(512, 512)])
    assert "--refine" not in str(plain_error.value)


@pytest.mark.parametrize("method", ["adain", "adaattn", "a2k", "dynast", "optimize"])
def test_every_method_refines_from_the_cli(stand_ins, image_file, tmp_path, method):
    """`--refine 1` works with every method (it once crashed on adaattn/a2k: no `name` attribute)."""
    from dynast_cli.styles import METHODS

    assert method in METHODS
    content, style = image_file(32, 48, "c.png"), image_file(32, 32, "s.png", seed=3)
    out = tmp_path / "o.png"
    extra = ["--steps", "1"] if method == "optimize" else []
    result = CliRunner().invoke(app, ["style", str(content), str(style), "-o", str(out), "-m", method,
                                      "--refine", "1", *extra])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (48, 32)


def test_the_parametrised_methods_are_all_the_registered_ones():
    from dynast_cli.styles import METHODS

    assert sorted(METHODS) == sorted(["adain", "adaattn", "a2k", "dynast", "optimize"])
