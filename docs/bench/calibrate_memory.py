"""Calibrate the memory model of ``dynast_cli/memory.py`` against measured peaks.

    python docs/bench/calibrate_memory.py --methods adaattn,a2k,dynast,adain --sizes 512,1024,1440
    python docs/bench/calibrate_memory.py --check 3840x2160 --method adaattn --budget 4G

Each measurement is a fresh process (one torch thread) that builds the method, prepares the bundled
style at 512 px, then stylises a random content of the given size with the default tiles; it reports
its resident-set high-water mark (``ru_maxrss``) after the imports, after preparing the style and
after stylising. Per method a least-squares line ``peak = c0 + a * padded pixels`` is fitted to the
peaks, with the model's tile and style-state bytes subtracted first; ``a`` is the method's
``bytes_per_pixel`` (its memory profile, in its module under ``dynast_cli/styles/``) and ``c0 - weights``
the ``BASE`` of ``dynast_cli/memory.py``. Prints the fit and, per run, the model's estimate
against the measurement.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(method: str, h: int, w: int, budget: str | None) -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(1)
    from dynast_cli import memory
    from dynast_cli.io.images import load_image
    from dynast_cli.pipelines.style import prepare_styles, stylize
    from dynast_cli.styles import build_method

    base = rss_mb()
    model = build_method(method, device="cpu")
    style = load_image(ROOT / "examples" / "style.jpg")
    from dynast_cli.ops import fit_size

    style_hw = fit_size(*style.shape[-2:], max_size=512)
    plan = None
    if budget:
        plan = memory.plan_style(memory.parse_memory(budget), model, (h, w), [style_hw])
        memory.apply_style_plan(model, plan)
    states = prepare_styles(model, [style], 512, torch.device("cpu"))
    prepared = rss_mb()
    content = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    stylize(model, content, states)
    seconds = time.perf_counter() - t0
    profile = memory.memory_profile(model)
    tile = plan.tile if plan else (model.tile or 0)
    print(json.dumps({
        "method": method, "tile_kind": profile.tile, "h": h, "w": w,
        "pixels": memory.padded((h, w))[0] * memory.padded((h, w))[1],
        "base_mb": base, "prepared_mb": prepared, "peak_mb": rss_mb(), "seconds": seconds,
        "weights": memory.model_bytes(model), "states": profile.style_bytes(model, style_hw),
        "style_hw": list(style_hw), "tile": tile, "plan_estimate_mb": plan.estimate / 2**20 if plan else None,
    }))


def tile_bytes(run: dict) -> float:
    from dynast_cli import memory

    if run["tile_kind"] == "elements":
        return memory.TILE_COPIES * memory.FLOAT * run["tile"]
    if run["tile_kind"] == "queries":  # DynaST's dense relu4_1 row or 5 x top-4 sparse candidates
        n4 = memory.level_sizes(memory.padded(tuple(run["style_hw"])))[1]
        return memory.query_bytes(n4, 20, 256) * run["tile"]
    return 0.0


def measure(method: str, h: int, w: int, budget: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", method, str(h), str(w)] + ([budget] if budget else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
        return
    sys.path.insert(0, str(ROOT))
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="adaattn,a2k,dynast,adain")
    ap.add_argument("--sizes", default="512,1024,1440")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    runs = []
    for method in args.methods.split(","):
        mine = [measure(method, s, s) for s in (int(x) for x in args.sizes.split(","))]
        runs += mine
        if len(mine) < 2:  # one size: nothing to fit
            print(f"{method}: {mine[0]['h']}x{mine[0]['w']}: peak {mine[0]['peak_mb']:.0f} MB, {mine[0]['seconds']:.1f} s")
            continue
        xs = [r["pixels"] for r in mine]
        ys = [r["peak_mb"] * 2**20 - r["states"] - tile_bytes(r) for r in mine]
        mx, my = statistics.mean(xs), statistics.mean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        c0 = my - slope * mx
        print(f"{method}: bytes_per_pixel {slope:.0f} B/px, BASE {(c0 - mine[0]['weights']) / 2**20:.0f} MB "
              f"(import-time RSS {mine[0]['base_mb']:.0f} MB)")
        for r in mine:
            print(f"  {r['h']}x{r['w']}: peak {r['peak_mb']:.0f} MB, {r['seconds']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
