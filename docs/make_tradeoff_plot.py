"""docs/images/style_tradeoff.png: the strength sweeps of `dynast eval style --alphas` side by side.

    python docs/make_tradeoff_plot.py docs/bench/style_sweep_examples.json "bundled examples (2 x 2)" \
        docs/bench/style_sweep_heldout.json "held-out pairs (2 x 2, ../shared/data)" -o docs/images/style_tradeoff.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dynast_cli.evaluate import PairResult, plot_tradeoff, summarise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="pairs of: style_eval.json of a sweep, panel title")
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args()
    if len(args.runs) % 2:
        parser.error("give each JSON file a title")
    panels = []
    for path, title in zip(args.runs[::2], args.runs[1::2]):
        payload = json.loads(Path(path).read_text())
        results = [PairResult(**row) for row in payload["pairs"]]
        panels.append((f"{title}, {payload['size']} px", summarise(results)))
    plot_tradeoff(panels, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
