"""Build ``.devrun/`` (git-ignored) for a lent GPU machine: the VGG16 in fp16, a training subset, the scripts.

The device gets a copy of the working tree of at most 64 MiB, has no network and no ``../shared``. This
writes what a training call needs beside the tracked files and says whether it fits:

- ``.devrun/vgg16_fp16.safetensors``: the cached ImageNet VGG16 encoder (up to relu5_1) rounded to fp16
  (20 MB; ``train.py`` casts it back to fp32);
- ``.devrun/data/{content,style,kaokore}``: ``--per-folder`` images of each ``../shared/data`` folder
  (``spread_subset``), short side ``--short-side`` px, JPEG ``--quality``. The validation and held-out
  pairs of ``docs/bench/style_default_s8.py`` are left out, so that their scores stay held out;
- ``.devrun/{train,run,pack,bench}``: the scripts of this folder.

It prints the tracked files' size, ``.devrun``'s, and what to move aside if the sum is over the limit
(the 27 MB learned AdaAttN is the one a style-decoder run does not need: move it out of the tree for the
call and ``git checkout weights/`` after). Then, e.g. (``METHODS``: decoder, adaattn, a2k, dynast-decoder)::

    python docs/gpu/prepare.py --per-folder 150 --short-side 320
    # run (device tool), command: METHODS="dynast-decoder adaattn" T=420 bash .devrun/run.sh

Tried on the CPU with tiny settings before use (``docs/gpu/README.md``).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import shutil
import subprocess
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
LIMIT = 64 * 2**20
SCRIPTS = ("train.py", "run.sh", "pack.py", "bench.py")


def _held_out() -> set[str]:
    """File names of every content and style of the harness's val / held / held2 sets."""
    spec = importlib.util.spec_from_file_location("harness", ROOT / "docs" / "bench" / "style_default_s8.py")
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    return {name for contents, styles in harness.SETS.values() for name in (*contents, *styles)}


def _tracked_bytes() -> int:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / f.decode()).stat().st_size for f in files if f and (ROOT / f.decode()).is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-folder", type=int, default=150)
    parser.add_argument("--short-side", type=int, default=320)
    parser.add_argument("--quality", type=int, default=85)
    parser.add_argument("--out", type=Path, default=ROOT / ".devrun")
    args = parser.parse_args()

    import torch  # after argparse: --help stays fast
    from safetensors.torch import save_file

    from dynast_cli.io.images import list_images
    from dynast_cli.train.data import spread_subset
    from dynast_cli.weights.build import load_vgg16

    if args.out.exists():
        shutil.rmtree(args.out)
    (args.out / "data").mkdir(parents=True)
    encoder = load_vgg16()
    save_file({k: v.half().contiguous() for k, v in encoder.state_dict().items()}, args.out / "vgg16_fp16.safetensors")
    held = _held_out()
    for folder in ("content", "style", "kaokore"):
        files = [p for p in list_images(DATA / folder) if p.name not in held]
        (args.out / "data" / folder).mkdir()
        for path in spread_subset(files, args.per_folder):
            with Image.open(path) as image:
                image = image.convert("RGB")
                scale = args.short_side / min(image.size)
                if scale < 1:
                    image = image.resize((round(image.width * scale), round(image.height * scale)),
                                         Image.Resampling.LANCZOS)
                buffer = io.BytesIO()
                image.save(buffer, "JPEG", quality=args.quality)
            (args.out / "data" / folder / f"{path.stem}.jpg").write_bytes(buffer.getvalue())
    for script in SCRIPTS:
        shutil.copy(Path(__file__).with_name(script), args.out / script)
    devrun = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    tracked = _tracked_bytes()
    mib = 2**20
    print(f"tracked files {tracked / mib:.1f} MiB + {args.out.name} {devrun / mib:.1f} MiB = "
          f"{(tracked + devrun) / mib:.1f} MiB (limit {LIMIT / mib:.0f} MiB)")
    if tracked + devrun > LIMIT:
        # the universal decoder stays: every style-decoder task starts from it
        big = sorted((p.stat().st_size, p) for p in (ROOT / "weights").glob("*.safetensors")
                     if p.name != "decoder_vgg16.safetensors")[::-1]
        over = tracked + devrun - LIMIT
        print(f"over by {over / mib:.1f} MiB: move aside for the call (git checkout weights/ after), e.g. "
              + ", ".join(f"{p.relative_to(ROOT)} ({s / mib:.1f} MiB)" for s, p in big[:2]))
    torch.set_num_threads(1)


if __name__ == "__main__":
    main()
