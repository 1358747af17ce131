"""--max-memory: parsing, the memory planner, tiles that never change results, early failures,
--compile on the CPU.

Real VGG16/decoder weights are replaced by the tiny stand-ins; tiles are made tiny (monkeypatched
minimums) so that odd-sized contents are really processed in many chunks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from stand_ins import TinyEncoder, as_method
from typer.testing import CliRunner

import dynast_cli.cli  # noqa: F401  (registers the subcommands)
from dynast_cli import memory
from dynast_cli.cli.app import app
from dynast_cli.memory import MemoryBudgetError, parse_memory
from dynast_cli.models.adaattn import AdaAttNModel
from dynast_cli.models.dynast import DynastConfig, DynastGenerator
from dynast_cli.models.dynast_style import DynastStyleModel
from dynast_cli.models.stya2k import StyA2KModel
from dynast_cli.nn.decoders import VGGDecoder
from dynast_cli.styles.adaattn import style_bytes as adaattn_style_bytes

runner = CliRunner()
GiB, MiB = 1 << 30, 1 << 20


@pytest.mark.parametrize(
    "text, expected",
    [("4G", 4 * GiB), ("500M", 500 * MiB), ("1.5GB", 3 * GiB // 2), ("512MiB", 512 * MiB), ("2g", 2 * GiB),
     ("3000000000", 3_000_000_000), (" 64 M ", 64 * MiB), ("1T", 1 << 40), (None, None), ("", None)],
)
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["lots", "4X", "-1G", "4 G B", "G", "1.2.3G", "0", "100K"])
def test_parse_memory_errors_are_one_line(text):
    with pytest.raises(MemoryBudgetError) as info:
        parse_memory(text)
    message = str(info.value)
    assert "\n" not in message and "--max-memory" in message and text in message


@pytest.fixture
def tiny_tiles(monkeypatch):
    """Minimum tiles small enough that tiny images are cut into many chunks; no process base."""
    monkeypatch.setattr(memory, "MIN_TILE_ELEMENTS", 512)
    monkeypatch.setattr(memory, "MIN_CHUNK", 16)
    monkeypatch.setattr(memory, "BASE", 0)


def _models():
    """The style methods (the one path around each model), by variant."""
    torch.manual_seed(0)
    enc = TinyEncoder()
    return {name: as_method(model) for name, model in {
        "adaattn": AdaAttNModel(enc, learned=False, decoder=VGGDecoder(skip=True)).eval(),
        "adaattn-cosine": AdaAttNModel(enc, learned=False, attention="cosine", decoder=VGGDecoder(skip=True)).eval(),
        "stya2k": StyA2KModel(enc, learned=False, residual=False, decoder=VGGDecoder(skip=True)).eval(),
        "stya2k-learned": StyA2KModel(enc, learned=True).eval(),
        "dynast": DynastStyleModel(enc, VGGDecoder(skip=True)).eval(),
    }.items()}


@pytest.mark.parametrize("name", ["adaattn", "adaattn-cosine", "stya2k", "stya2k-learned", "dynast"])
def test_smallest_tile_gives_the_unchunked_result(tiny_tiles, name):
    model = _models()[name]
    g = torch.Generator().manual_seed(1)
    content = torch.rand(1, 3, 29, 43, generator=g)  # odd sizes: padded blocks, partial chunks
    style = torch.rand(1, 3, 40, 56, generator=g)
    with torch.inference_mode():
        state = model.prepare_style(style)
        # unchunked: one tile holds every score
        model.tile = 1 << 30 if name == "dynast" else 1 << 40
        reference = model.stylize(content, [state], [1.0])
        plan = memory.plan_style(1 << 40, model, (29, 43), [(40, 56)])
        tight = memory.plan_style(plan.minimum, model, (29, 43), [(40, 56)])
        assert tight.tile == (16 if name == "dynast" else 512) and tight.estimate == plan.minimum
        assert tight.max_sample is None and not tight.notes
        memory.apply_style_plan(model, tight)
        chunked = model.stylize(content, [state], [1.0])
    torch.testing.assert_close(chunked, reference, atol=1e-5, rtol=1e-5)


def test_budget_picks_the_largest_tile_that_fits(tiny_tiles):
    model = _models()["stya2k"]
    huge = memory.plan_style(1 << 40, model, (100, 100), [(64, 64)])
    assert huge.tile == memory.DEFAULT_TILE_ELEMENTS
    per = memory.TILE_COPIES * memory.FLOAT
    middle = memory.plan_style(huge.minimum + per * 1000, model, (100, 100), [(64, 64)])
    assert middle.tile == 1024 and middle.estimate <= middle.budget  # 1024 <= 512 + 1000 < 2048
    with pytest.raises(MemoryBudgetError) as info:
        memory.plan_style(huge.minimum - 1, model, (100, 100), [(64, 64)])
    assert "estimated minimum" in str(info.value) and "\n" not in str(info.value)


def test_adaattn_cuts_style_keys_only_with_a_notice(tiny_tiles):
    model = _models()["adaattn"]
    style_hw = (512, 512)  # 64*64 relu4_1 positions: 4096 keys at relu4_1
    full = memory.plan_style(1 << 40, model, (64, 64), [style_hw])
    state_full = adaattn_style_bytes(model, style_hw, (4096, 65536))
    state_cut = adaattn_style_bytes(model, style_hw, (2048, 2048))
    budget = full.minimum - (state_full - state_cut)
    plan = memory.plan_style(budget, model, (64, 64), [style_hw])
    assert plan.max_sample == 2048 and plan.estimate <= budget
    assert len(plan.notes) == 1 and "2048" in plan.notes[0] and "4096" in plan.notes[0]
    memory.apply_style_plan(model, plan)
    assert [layer.max_sample for layer in model.model.attention_layers()] == [2048, 2048, 2048]
    with torch.inference_mode():
        state = model.prepare_style(torch.rand(1, 3, *style_hw))
    assert state.levels[1][0].shape[-1] == 2048  # relu4_1 keys really subsampled


def test_stya2k_never_cuts_keys(tiny_tiles):
    model = _models()["stya2k"]
    full = memory.plan_style(1 << 40, model, (64, 64), [(512, 512)])
    with pytest.raises(MemoryBudgetError):
        memory.plan_style(full.minimum - 1, model, (64, 64), [(512, 512)])


def test_unsupported_method_is_a_clear_error():
    class Optimize:
        name = "optimize"

    with pytest.raises(MemoryBudgetError, match="not supported with --method optimize"):
        memory.plan_style(GiB, Optimize(), (64, 64), [(64, 64)])


def test_generator_chunk_from_a_budget_keeps_the_output(tiny_tiles):
    torch.manual_seed(0)
    config = DynastConfig(ngf=4, max_multi=2, n_layers=2, top_k=2, pos_dim=2, prune_dim=2, semantic_nc=5, crop_size=32)
    model = DynastGenerator(config).eval()
    g = torch.Generator().manual_seed(2)
    inputs = (torch.rand(1, 5, 24, 16, generator=g), torch.rand(1, 3, 24, 16, generator=g) * 2 - 1,
              torch.rand(1, 5, 24, 16, generator=g))
    with torch.inference_mode():
        model.chunk = 1 << 30
        reference = model(*inputs)
        big = memory.plan_generator(1 << 40, model, (24, 16))
        plan = memory.budget_generator(model, (24, 16), big.minimum)
        assert plan.tile == 16 and model.chunk == 16
        torch.testing.assert_close(model(*inputs), reference, atol=1e-5, rtol=1e-5)
    with pytest.raises(MemoryBudgetError, match="estimated minimum"):
        memory.budget_generator(model, (24, 16), big.minimum - 1)


# --- the CLI -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["adaattn", "adain"])
def test_cli_budget_too_small_fails_early_with_the_minimum(stand_ins, image_file, tmp_path, method):
    content = image_file(37, 53, "c.png")
    out = tmp_path / "out.png"
    result = runner.invoke(app, ["style", str(content), str(content), "-o", str(out), "-m", method,
                                 "--max-memory", "2M"])
    assert result.exit_code == MemoryBudgetError.exit_code == 6
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --max-memory 2 MB is below the estimated minimum")
    assert "53x37" in lines[0] and not out.exists()


def test_cli_bad_budget_is_one_line(stand_ins, image_file, tmp_path):
    content = image_file(16, 16, "c.png")
    result = runner.invoke(app, ["style", str(content), str(content), "-o", str(tmp_path / "o.png"),
                                 "--max-memory", "four gigs"])
    assert result.exit_code == 1  # a malformed value is a usage error; 6 is a budget that cannot be met
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["error: --max-memory takes a size like 4G, 500M or 1.5GB, got 'four gigs'"]


@pytest.mark.parametrize("method", ["adaattn", "a2k", "dynast"])
def test_cli_budget_gives_the_same_image(stand_ins, image_file, tmp_path, monkeypatch, method):
    content = image_file(21, 35, "c.png")
    style = image_file(24, 24, "s.png", seed=1)
    plain, budgeted = tmp_path / "plain.png", tmp_path / "budget.png"
    args = ["style", str(content), str(style), "-m", method, "-o"]
    assert runner.invoke(app, [*args, str(plain)]).exit_code == 0
    applied = []
    monkeypatch.setattr(memory, "DEFAULT_TILE_ELEMENTS", 128)  # tiles of a couple of queries
    monkeypatch.setattr(memory, "MIN_TILE_ELEMENTS", 64)
    monkeypatch.setattr(memory, "MIN_CHUNK", 2)
    real_apply = memory.apply_style_plan
    monkeypatch.setattr(memory, "apply_style_plan", lambda m, plan: applied.append(plan) or real_apply(m, plan))
    if method == "dynast":
        monkeypatch.setattr(DynastStyleModel, "__init__", _small_chunk(DynastStyleModel.__init__))
    result = runner.invoke(app, [*args, str(budgeted), "--max-memory", "64G"])
    assert result.exit_code == 0, result.output
    assert applied and applied[0].tile == (2 if method == "dynast" else 128)
    assert np.array_equal(np.asarray(Image.open(plain)), np.asarray(Image.open(budgeted)))


def _small_chunk(init):
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.chunk = 2  # the budget starts from the method's own chunk
    return wrapped


def test_cli_compile_on_cpu_prints_a_notice_and_runs(stand_ins, image_file, tmp_path):
    content = image_file(20, 24, "c.png")
    out = tmp_path / "out.png"
    result = runner.invoke(app, ["style", str(content), str(content), "-o", str(out), "--compile", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "--compile: torch.compile is used on CUDA only; running uncompiled on cpu" in result.output
    assert out.is_file()


def test_cli_face_budget_too_small_fails_before_generating(image_file, tmp_path):
    from dynast_cli.weights.io import save_weights

    config = DynastConfig(ngf=4, max_multi=2, n_layers=2, top_k=2, pos_dim=2, prune_dim=2, semantic_nc=15, crop_size=256)
    tensors = {k: v.clone() for k, v in DynastGenerator(config).state_dict().items()}
    weights = tmp_path / "tiny.safetensors"
    save_weights(tensors, weights, {"architecture": "dynast", "config": config.to_json()})
    photo = image_file(64, 64, "face.png")
    out = tmp_path / "out.png"
    result = runner.invoke(app, ["face", str(photo), str(photo), "-o", str(out), "--weights", str(weights),
                                 "--device", "cpu", "--max-memory", "20M"])
    assert result.exit_code == 6, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --max-memory 20 MB is below the estimated minimum")
    assert "256x256 DynaST generation" in lines[0] and not out.exists()


def test_video_budget_lowers_the_batch_with_a_note(tmp_path, tiny_tiles, image_file):
    from dynast_cli.pipelines.video import run_video

    frames = tmp_path / "in"
    for i in range(3):
        image_file(24, 40, f"in/frame_{i + 1:06d}.png", seed=i)
    style = image_file(32, 32, "style.png", seed=9)
    model = _models()["adaattn"]
    plain = run_video(frames, [style], tmp_path / "plain", method=model, batch=4, device="cpu")
    one = memory.plan_style(1 << 40, model, (24, 40), [(32, 32)])
    report = run_video(frames, [style], tmp_path / "budget", method=model, batch=4, device="cpu",
                       max_memory=one.minimum)
    assert report.notes == ["--max-memory: 1 frame(s) at a time instead of --batch 4"]
    for a, b in zip(sorted((tmp_path / "plain").glob("*.png")), sorted((tmp_path / "budget").glob("*.png")), strict=True):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    assert plain.frames == report.frames == 3
    with pytest.raises(MemoryBudgetError, match="estimated minimum"):
        run_video(frames, [style], tmp_path / "none", method=model, batch=4, device="cpu", max_memory=one.minimum - 1)
