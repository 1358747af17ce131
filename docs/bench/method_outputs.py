"""Every style method's float output on the bundled pairs: record once, compare after a refactor.

    python docs/bench/method_outputs.py record /tmp/method_outputs      # writes CASE.pt per case
    python docs/bench/method_outputs.py compare /tmp/method_outputs     # runs again, prints max |diff|

Each case runs through the Python pipeline exactly as ``dynast style`` does (content resized to
long side ``SIZE``, style to the default ``--style-size``, the method's default ``--refine`` unless
the case sets one), with the real ImageNet VGG16 and the bundled weights, on examples/content.jpg
and content2.jpg x style.jpg and style2.jpg (one output per pair, or one per content for a mix).
The saved tensors are the outputs before 8-bit quantisation, (1, 3, H, W) float32 in [0, 1].
``compare`` exits 1 when any output differs by more than ``--atol`` (default 0: bit-identical).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CONTENTS = ("content.jpg", "content2.jpg")
STYLES = ("style.jpg", "style2.jpg")
SIZE = 256

#: name -> (method, options): weights, refine (None: the method's default), alpha, mix (two styles),
#: keep_color, steps (optimize).
CASES: dict[str, tuple[str, dict]] = {
    "adain": ("adain", {}),
    "adain_keep_color_refine2": ("adain", {"keep_color": True, "refine": 2}),
    "adaattn": ("adaattn", {}),
    "adaattn_none": ("adaattn", {"weights": "none"}),
    "adaattn_alpha05": ("adaattn", {"alpha": 0.5}),
    "adaattn_mix": ("adaattn", {"mix": [0.7, 0.3]}),
    "a2k": ("a2k", {}),
    "a2k_mix": ("a2k", {"mix": [2.0, 1.0]}),
    "dynast": ("dynast", {}),
    "dynast_refine0": ("dynast", {"refine": 0}),
    "dynast_none": ("dynast", {"weights": "none"}),
    "dynast_prune": ("dynast", {"weights": str(ROOT / "weights" / "dynast_prune_vgg16.safetensors")}),
    "dynast_alpha05": ("dynast", {"alpha": 0.5}),
    "dynast_mix": ("dynast", {"mix": [0.7, 0.3]}),
    "optimize3": ("optimize", {"steps": 3}),
}


def run_case(method_name: str, opts: dict) -> dict[str, torch.Tensor]:
    """{output name: float output} of one case on the bundled pairs (the path of ``run_style``)."""
    from dynast_cli.io.images import load_image
    from dynast_cli.ops import fit_size, resize
    from dynast_cli.pipelines.style import prepare_styles, stylize
    from dynast_cli.styles import build_method
    from dynast_cli.styles.refine import refine_steps, with_refinement

    device = torch.device("cpu")
    method_options = {"steps": opts["steps"]} if "steps" in opts else {}
    method = build_method(method_name, weights=opts.get("weights"), device=device, **method_options)
    method = with_refinement(method, refine_steps(method_name, opts.get("refine")), device)
    style_sets = [[s] for s in STYLES] if "mix" not in opts else [list(STYLES)]
    outputs = {}
    for styles in style_sets:
        states = prepare_styles(method, [load_image(EXAMPLES / s) for s in styles], 512, device)
        for c in CONTENTS:
            image = load_image(EXAMPLES / c)
            image = resize(image[None], fit_size(*image.shape[-2:], None, SIZE)).to(device)
            torch.manual_seed(0)
            out = stylize(method, image, states, opts.get("mix"), opts.get("alpha", 1.0), opts.get("keep_color", False))
            outputs[f"{Path(c).stem}__{'+'.join(Path(s).stem for s in styles)}"] = out.cpu()
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("record", "compare"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--cases", default="all", help="comma-separated case names (default: all)")
    parser.add_argument("--atol", type=float, default=0.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = list(CASES) if args.cases == "all" else args.cases.split(",")
    args.folder.mkdir(parents=True, exist_ok=True)
    worst = 0.0
    for name in names:
        method, opts = CASES[name]
        outputs = run_case(method, opts)
        path = args.folder / f"{name}.pt"
        if args.mode == "record":
            torch.save(outputs, path)
            print(f"{name}: recorded {len(outputs)} output(s)", flush=True)
            continue
        saved = torch.load(path)
        diffs = []
        for key, out in outputs.items():
            ref = saved[key]
            diff = (out - ref).abs().max().item() if out.shape == ref.shape else float("inf")
            diffs.append(f"{key} {'identical' if torch.equal(out, ref) else f'max|diff| {diff:.3g}'}")
            worst = max(worst, diff)
        print(f"{name}: " + "; ".join(diffs), flush=True)
    if args.mode == "compare":
        print(f"largest difference: {worst:.3g}")
        return int(worst > args.atol)
    return 0


if __name__ == "__main__":
    sys.exit(main())
