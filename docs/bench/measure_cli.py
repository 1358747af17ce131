"""Time `dynast style` end to end (process start to file written) per method and size.

    python docs/bench/measure_cli.py --sizes 512,1024 --methods adaattn,a2k,adain,dynast --repeat 3

Each run is a fresh `dynast style` process measured with GNU time (wall seconds, peak RSS), on a
generated content (the bundled cat resized to the size's long side) and the bundled style. Prints a
Markdown table of medians; `--json` writes the raw runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def run_once(content: Path, style: Path, method: str, extra: list[str]) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.png"
        timing = Path(tmp) / "time.txt"
        cmd = ["/usr/bin/time", "-f", "%e %M", "-o", str(timing), sys.executable, "-m", "dynast_cli",
               "style", str(content), str(style), "-o", str(out), "-m", method, *extra]
        subprocess.run(cmd, check=True, capture_output=True)
        wall, kb = timing.read_text().split()[-2:]
        return float(wall), float(kb) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--methods", default="adaattn,a2k,adain,dynast")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--extra", default="", help="extra dynast style arguments, e.g. '--steps 50'")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows, raw = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Image.open(ROOT / "examples" / "content.jpg").convert("RGB")
        for size in [int(s) for s in args.sizes.split(",")]:
            scale = size / max(base.size)
            content = Path(tmp) / f"content_{size}.png"
            base.resize((round(base.width * scale), round(base.height * scale)), Image.BICUBIC).save(content)
            for method in args.methods.split(","):
                runs = [run_once(content, ROOT / "examples" / "style.jpg", method, args.extra.split())
                        for _ in range(args.repeat)]
                raw[f"{method}@{size}"] = runs
                t = statistics.median(r[0] for r in runs)
                m = statistics.median(r[1] for r in runs)
                rows.append(f"| {method} | {size} | {t:.1f} | {m:.0f} |")
                print(rows[-1], flush=True)
    print("\n| method | long side (px) | median wall time (s) | median peak RSS (MB) |\n|---|---|---|---|")
    print("\n".join(rows))
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
