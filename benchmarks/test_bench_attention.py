"""pytest-benchmark benchmarks of the attention kernels, fast vs naive twin, from :mod:`dynast_cli.bench`.

Not part of the default test run (``testpaths = ["tests"]``, and ``--benchmark-disable`` in the
default options). Run them with::

    pytest benchmarks --benchmark-enable                       # all kernels, 32x32 and 64x64 positions
    pytest benchmarks --benchmark-enable -k "inner or inter"   # some kernels
    pytest benchmarks --benchmark-enable --benchmark-save=cpu  # keep the numbers (.benchmarks/)
    pytest-benchmark compare                                   # compare saved runs

Each kernel and size is one benchmark group, so the report puts the fast kernel next to its naive
twin. Without ``--benchmark-enable`` every benchmark runs its kernel once (a smoke test). For peak
memory and larger sizes use ``dynast bench``.
"""

from __future__ import annotations

import pytest
import torch

from dynast_cli import bench

SIZES = (32, 64)
KERNELS = [name for name, case in bench.CASES.items() if case.kind == "kernel"]
#: Naive twins that loop in Python over positions or blocks take minutes above this size.
NAIVE_MAX_SIZE = {"adaattn": 32, "a2k-prog": 32}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("variant", ["fast", "naive"])
@pytest.mark.parametrize("name", KERNELS)
def test_kernel(benchmark, name: str, variant: str, size: int) -> None:
    if variant == "naive" and size > NAIVE_MAX_SIZE.get(name, size):
        pytest.skip(f"the naive {name} is too slow at {size}x{size}")
    try:
        variants = bench.CASES[name].prepare(size, torch.device("cpu"))
    except bench.Unavailable as exc:
        pytest.skip(str(exc))
    if variant not in variants:
        pytest.skip(f"{name} has no {variant} variant")
    benchmark.group = f"{name} {size}x{size}"
    benchmark.extra_info["positions"] = size * size
    with torch.inference_mode():
        benchmark.pedantic(variants[variant], rounds=5, warmup_rounds=1)
