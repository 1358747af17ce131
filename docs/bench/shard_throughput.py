"""Time `dynast style` over a folder in 1 process against 2 processes (issue #17, batch jobs across processes).

    python docs/bench/shard_throughput.py photos32/ examples/style.jpg [--method dynast] [--repeat 3] [-- --size 512]

Three set-ups, each run `--repeat` times, interleaved (1, shards, torchrun, 1, shards, torchrun, ...) so
that a change of load on the machine hits them alike:

* `one`: one `dynast style FOLDER STYLE --threads 1` process;
* `one, 2 threads`: the same with `--threads 2` (one process using both cores: no scaling out);
* `shards`: `--shard 0/2` and `--shard 1/2` started together, 1 thread each (a job array of 2);
* `torchrun`: `python -m torch.distributed.run --nproc_per_node 2 -m dynast_cli style ...`, 1 thread per rank.

Each run is timed from its first process's start to its last one's end (wall seconds, start-up and model
loading included, as a user sees it) and writes into a fresh temporary folder. Prints the median seconds,
images/s and the speed-up of each 2-process set-up over `one`; `--json FILE` keeps every run. Run it on an
otherwise idle machine with at least 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DYNAST = [sys.executable, "-m", "dynast_cli", "style"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(commands: list[list[str]]) -> float:
    """Start the commands together, wait for all; wall seconds. A failure stops the benchmark."""
    began = time.perf_counter()
    procs = [subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd in commands]
    results = [(proc, *proc.communicate()) for proc in procs]
    seconds = time.perf_counter() - began
    for proc, out, err in results:
        if proc.returncode != 0:
            sys.exit(f"failed ({proc.returncode}): {' '.join(proc.args)}\n{out}{err}")
    return seconds


def setups(folder: Path, style: Path, method: str, extra: list[str]) -> dict:
    """Set-up name -> function(output folder) -> the commands of one run."""
    common = [str(folder), str(style), "-m", method, *extra]
    args = [*common, "--threads", "1"]
    return {
        "one": lambda out: [[*DYNAST, *args, "-o", str(out)]],
        # what a user gets without scaling out: one process using both cores
        "one, 2 threads": lambda out: [[*DYNAST, *common, "--threads", "2", "-o", str(out)]],
        "shards": lambda out: [[*DYNAST, *args, "-o", str(out), "--shard", f"{i}/2"] for i in range(2)],
        "torchrun": lambda out: [[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                  "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                                  "-m", "dynast_cli", "style", *args, "-o", str(out)]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="folder of contents (32 images for the reference figure)")
    ap.add_argument("style", type=Path)
    ap.add_argument("--method", default="dynast")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write every run here")
    a, extra = ap.parse_known_args()  # the rest: more `dynast style` options (after --)
    extra = [x for x in extra if x != "--"]
    n_images = sum(1 for p in a.folder.iterdir() if p.is_file() and not p.name.startswith("."))
    runs: dict[str, list[float]] = {}
    plan = setups(a.folder, a.style, a.method, extra)
    for r in range(a.repeat):
        for name, commands in plan.items():
            with tempfile.TemporaryDirectory() as tmp:
                seconds = _run(commands(Path(tmp) / "out"))
            runs.setdefault(name, []).append(seconds)
            print(f"run {r + 1}/{a.repeat} {name}: {seconds:.2f} s", file=sys.stderr, flush=True)
    medians = {name: statistics.median(times) for name, times in runs.items()}
    print(f"{n_images} images, --method {a.method}, 1 thread per process, median of {a.repeat}:")
    print("| set-up | seconds | images/s | speed-up |")
    print("|---|---:|---:|---:|")
    for name, median in medians.items():
        print(f"| {name} | {median:.2f} | {n_images / median:.2f} | {medians['one'] / median:.2f}x |")
    if a.json:
        a.json.write_text(json.dumps({"images": n_images, "method": a.method, "runs": runs, "medians": medians},
                                     indent=1))


if __name__ == "__main__":
    main()
