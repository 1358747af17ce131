"""dynast bench: the registry, the measurements, the guard, the CLI (table, --json, --plot, errors)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from typer.testing import CliRunner

import dynast_cli.cli  # noqa: F401  (registers the subcommands)
from dynast_cli import bench
from dynast_cli.cli.app import app

CPU = torch.device("cpu")
KERNELS = [name for name, case in bench.CASES.items() if case.kind == "kernel"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny kernels on a shared machine: one thread avoids waiting for a second, busy core at every op."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_peak_memory_counts_the_transient_allocations_of_the_call():
    def transient() -> torch.Tensor:
        big = torch.ones(1024, 1024)  # 4 MiB, freed before returning
        return big.sum(0)  # 4 KiB kept

    assert bench.peak_memory_bytes(transient, CPU) == 4 * 1024 * 1024 + 4 * 1024


def test_time_call_returns_one_positive_time_per_repeat():
    calls = []
    times = bench.time_call(lambda: calls.append(1), CPU, warmup=2, repeat=3)
    assert len(calls) == 5 and len(times) == 3 and all(t >= 0 for t in times)


@pytest.mark.parametrize("name", KERNELS)
def test_every_kernel_runs_at_size_8_with_well_formed_results(name):
    results = bench.run_benchmarks([bench.CASES[name]], [8], bench.BenchOptions(warmup=1, repeat=2))
    (r,) = results
    if r.fast.note.startswith("unavailable"):
        pytest.skip(r.fast.note)
    assert (r.case, r.kind, r.size) == (name, "kernel", 8)
    assert r.fast.ok and r.fast.median_ms > 0 and r.fast.peak_mb > 0 and len(r.fast.times_ms) == 2
    assert r.naive is not None and r.naive.ok, r.naive.note  # every kernel has a working naive twin
    assert r.speed_ratio == pytest.approx(r.naive.median_ms / r.fast.median_ms)
    assert r.memory_ratio == pytest.approx(r.naive.peak_mb / r.fast.peak_mb)
    row = r.to_dict()
    assert {"fast_ms", "naive_ms", "speed_ratio", "fast_peak_mb", "naive_peak_mb", "memory_ratio"} <= row.keys()
    json.dumps(row)


def test_fast_and_naive_of_the_full_baseline_agree():
    variants = bench.CASES["full"].prepare(8, CPU)
    torch.testing.assert_close(variants["fast"](), variants["naive"](), rtol=1e-4, atol=1e-5)


def test_guard_skips_sizes_expected_over_budget_and_says_so():
    opts = bench.BenchOptions(warmup=1, repeat=1, budget_mb=0.05)
    small, big = bench.run_benchmarks([bench.CASES["full"]], [4, 16], opts)
    assert small.fast.ok and small.naive.ok  # the smallest size always runs
    assert not big.fast.ok and "budget" in big.fast.note
    assert not big.naive.ok and big.naive.note.startswith("skipped")
    assert big.speed_ratio is None and big.memory_ratio is None


def test_the_first_size_is_guarded_too():
    """A first size had nothing smaller to extrapolate from: the kernels are first called, unreported, at 8 and
    16, so --sizes 4096 with a 100 MB budget skips (and says how much it expected) instead of allocating."""
    opts = bench.BenchOptions(warmup=1, repeat=1, budget_mb=100)
    (row,) = bench.run_benchmarks([bench.CASES["full"]], [4096], opts)
    assert row.size == 4096 and not row.fast.ok and not row.naive.ok
    assert re.fullmatch(r"skipped: ~[\d,]+ MB expected > budget 100 MB", row.fast.note)
    assert row.naive.note.startswith("skipped: ~")
    (small,) = bench.run_benchmarks([bench.CASES["full"]], [24], opts)  # a probed kernel still runs its sizes
    assert small.size == 24 and small.fast.ok and small.naive.ok


def test_inputs_that_cannot_be_allocated_are_a_row_not_a_crash():
    """--sizes 100000 (nothing smaller to extrapolate from) went to the allocator and ended in exit 70."""
    def prepare(n, device):
        if n > 8:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")
        return bench.CASES["full"].prepare(n, device)

    case = bench.BenchCase("full", "", "kernel", prepare, twin=True)
    small, big = bench.run_benchmarks([case], [8, 16], bench.BenchOptions(warmup=1, repeat=1))
    assert small.fast.ok and not big.fast.ok
    assert big.fast.note == "error: [enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory"
    assert big.to_dict()["naive_note"] == big.fast.note  # not "no naive twin": the kernel has one


def test_a_row_that_measures_nothing_keeps_the_kernels_naive_twin():
    """A kernel's skipped or unavailable row said "no naive twin" in the JSON; a case without one still does."""
    assert bench.CASES["full"].twin and bench.CASES["adaattn"].twin and not bench.e2e_case("adain").twin
    twin = bench.BenchCase("ghost", "", "kernel", lambda n, d: bench._load("dynast_cli.attention.ghost:attend"), twin=True)
    (r,) = bench.run_benchmarks([twin], [8])
    assert r.to_dict()["naive_note"] == r.to_dict()["fast_note"] == "unavailable: dynast_cli.attention.ghost is not available (dynast_cli.attention.ghost missing)"
    opts = bench.BenchOptions(warmup=1, repeat=1, budget_mb=0.05)
    rows = bench.run_benchmarks([bench.CASES["full"]], [4, 16, 64], opts)
    assert rows[2].naive is not None and rows[2].naive.note.startswith("skipped")  # every variant skipped


def test_extrapolation_fits_the_growth_between_linear_and_quadratic():
    assert bench._extrapolate([(16, 1.0)], 32) == 16.0  # one point: quadratic in positions
    assert bench._extrapolate([(16, 1.0), (32, 4.0)], 64) == pytest.approx(16.0)  # linear in positions
    assert bench._extrapolate([(16, 1.0), (32, 1.0)], 64) == pytest.approx(4.0)  # never below linear


def test_unavailable_case_is_reported_not_raised():
    case = bench.BenchCase("ghost", "a kernel not written yet", "kernel",
                           lambda n, d: {"fast": bench._load("dynast_cli.attention.ghost:attend")})
    (r,) = bench.run_benchmarks([case], [8])
    assert not r.fast.ok and r.fast.note.startswith("unavailable: dynast_cli.attention.ghost")


def test_select_cases():
    assert [c.name for c in bench.select_cases(["full"])] == ["full"]
    assert [c.name for c in bench.select_cases(None)] == KERNELS
    with pytest.raises(bench.DynastError, match="unknown kernel 'nope'"):
        bench.select_cases(["full", "nope"])


def test_plot_writes_a_png(tmp_path):
    results = bench.run_benchmarks([bench.CASES["full"]], [4, 8], bench.BenchOptions(repeat=1))
    bench.plot_results(results, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


runner = CliRunner()


def test_cli_table_json_and_plot(tmp_path):
    out_json, out_png = tmp_path / "b.json", tmp_path / "b.png"
    res = runner.invoke(app, ["bench", "--kernels", "full", "--sizes", "4,8", "--repeat", "2", "--device", "cpu",
                              "--json", str(out_json), "--plot", str(out_png)])
    assert res.exit_code == 0, res.output
    assert "full" in res.output and "speed ratio" in res.output and "memory ratio" in res.output
    payload = json.loads(out_json.read_text())
    assert payload["environment"]["device"] == "cpu" and payload["environment"]["repeat"] == 2
    rows = payload["results"]
    assert [(r["case"], r["size"]) for r in rows] == [("full", 4), ("full", 8)]
    for row in rows:
        assert row["fast_ms"] > 0 and row["naive_ms"] > 0 and row["fast_peak_mb"] > 0
        assert row["speed_ratio"] == pytest.approx(row["naive_ms"] / row["fast_ms"])
        assert len(row["fast_times_ms"]) == 2
    assert out_png.read_bytes()[:4] == b"\x89PNG"


def test_cli_unknown_kernel_is_one_line_error():
    res = runner.invoke(app, ["bench", "--kernels", "full,warp9", "--sizes", "4"])
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines == [f"error: unknown kernel 'warp9' (choose from all, {', '.join(KERNELS)})"]


@pytest.mark.parametrize("args, message", [
    (["--sizes", "8,x"], "--sizes takes comma-separated integers"),
    (["--sizes", "0"], "--sizes needs positive integers"),
    (["--plot", "out.jpg"], "the plot is written as PNG"),
    (["--json", "no/such/dir/b.json"], "folder does not exist"),
    (["--kernels", ","], "--kernels: names no kernel"),
])
def test_cli_bad_options_fail_before_measuring(args, message):
    res = runner.invoke(app, ["bench", "--kernels", "full", *args])
    assert res.exit_code != 0 and message in res.output
    assert "speed ratio" not in res.output


def test_cli_e2e_without_weights_explains_why(monkeypatch):
    def missing(name, device):
        raise bench.Unavailable("weights/manifest.json: no default universal decoder is installed")

    monkeypatch.setattr(bench, "_style_method", missing)
    monkeypatch.setattr(bench, "e2e_methods", lambda: ["adain"])
    res = runner.invoke(app, ["bench", "--kernels", "full", "--sizes", "4", "--repeat", "1", "--e2e",
                              "--image-sizes", "32"])
    assert res.exit_code == 0, res.output
    assert "e2e:adain" in res.output and "unavailable: weights/manifest.json" in res.output


def test_cpu_clock_counts_work_not_sleep():
    import time

    (slept,) = bench.time_call(lambda: time.sleep(0.05), CPU, warmup=0, repeat=1, clock="cpu")
    (wall,) = bench.time_call(lambda: time.sleep(0.05), CPU, warmup=0, repeat=1, clock="wall")
    assert slept < 25 <= 50 <= wall


def test_cli_unknown_clock():
    res = runner.invoke(app, ["bench", "--kernels", "full", "--sizes", "4", "--clock", "sundial"])
    assert res.exit_code == 1 and "unknown --clock 'sundial'" in res.output


def test_loop_heavy_calls_are_timed_without_profiling_their_memory(monkeypatch):
    monkeypatch.setattr(bench, "MAX_PROFILED_OPS", 2)  # SDPA is one operator, the naive version several
    (r,) = bench.run_benchmarks([bench.CASES["full"]], [8], bench.BenchOptions(repeat=1))
    assert r.fast.ok and r.fast.peak_mb > 0 and not r.fast.note
    assert r.naive.ok and r.naive.peak_mb is None and "operators" in r.naive.note
    assert r.speed_ratio is not None and r.memory_ratio is None


def test_every_kernel_keeps_its_tensors_on_the_inputs_device():
    """On the 'meta' device (shapes only) a tensor made on the CPU by mistake fails as it would on CUDA:
    the naive twins once built index and statistic tensors on the CPU and failed on an H200."""
    from dynast_cli.bench import select_cases

    data_dependent = {("a2k-prog", "naive")}  # reads matched block indices with .item()
    ran = 0
    for case in select_cases(["all"]):
        for variant, fn in case.prepare(16, torch.device("meta")).items():
            if (case.name, variant) not in data_dependent:
                out = fn()
                ran += 1
                first = out[0] if isinstance(out, tuple) else getattr(out, "output", out)
                assert first.device.type == "meta", (case.name, variant)
    assert ran >= 13
