"""Evaluate `dynast train style --video` weights against the parameter-free cosine AdaAttN default.

Warping error (x1e-3) on the first 30 frames of cutBunny at 256 px (DIS flow) with examples/style.jpg
and style2.jpg, then content/style losses on the bundled examples (2 x 2, 512 px). Run from the
repository root; results go to OUT_DIR (docs/bench/video_train_eval.json has the figures).

usage: python docs/bench/eval_video_training.py OUT_DIR [WEIGHTS]   (no WEIGHTS: the defaults only)
"""
import json
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
from dynast_cli.evaluate import evaluate_style, summarise
from dynast_cli.weights.build import load_vgg16
from dynast_cli.pipelines.video import video_method, evaluate_video

out = Path(sys.argv[1])
weights = sys.argv[2] if len(sys.argv) > 2 else None
out.mkdir(parents=True, exist_ok=True)
video = "../shared/data/video/cutBunny.mp4"
styles = ["examples/style.jpg", "examples/style2.jpg"]
tag = "trained" if weights else "default"
summary = {}
for style in styles:
    rep = evaluate_video(video, style, ["adaattn:cosine"], max_frames=30, max_size=256, per_frame=False,
                         weights=weights, device="cpu", output=out / f"video_{tag}_{Path(style).stem}.json")
    summary[f"warping_x1e-3 {Path(style).stem}"] = {r.name: round(r.warping_error * 1e3, 4) for r in rep.rows}
    print(summary, flush=True)
dev = torch.device("cpu")
methods = {f"adaattn:cosine {tag}": video_method("adaattn", "cosine", weights, device=dev)}
if not weights:
    methods["adaattn:softmax default"] = video_method("adaattn", "softmax", device=dev)
res = evaluate_style([Path("examples/content.jpg"), Path("examples/content2.jpg")], [Path(s) for s in styles],
                     methods, load_vgg16(device=dev), out / f"style_{tag}", size=512, device=dev)
summary["style_eval_512"] = [vars(s) for s in summarise(res)]
(out / f"summary_{tag}.json").write_text(json.dumps(summary, indent=1, default=str))
print(json.dumps(summary, indent=1, default=str))
