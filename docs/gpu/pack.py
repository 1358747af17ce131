"""Pack the runs into at most 8 files under $OUT: weights split below 16 MiB, the rest in one tar.gz."""
import io
import os
import sys
import tarfile
from pathlib import Path

from PIL import Image

runs, out = Path(sys.argv[1]), Path(os.environ["OUT"])
CHUNK = 15 * 2**20
with tarfile.open(out / "extras.tar.gz", "w:gz") as tar:
    for run in sorted(runs.iterdir()):
        for f in run.glob("*.json"):
            tar.add(f, f"{run.name}/{f.name}")
        log = runs / f"{run.name}.log"
        samples = sorted((run / "checkpoint" / "samples").glob("*.png"))
        for s in samples[-2:]:
            buf = io.BytesIO()
            Image.open(s).convert("RGB").save(buf, "JPEG", quality=90)
            info = tarfile.TarInfo(f"{run.name}/{s.stem}.jpg")
            info.size = buf.tell()
            buf.seek(0)
            tar.addfile(info, buf)
        for w in run.glob("*.safetensors"):
            data = w.read_bytes()
            for i in range(0, len(data), CHUNK):
                (out / f"{w.stem}.part{i // CHUNK}").write_bytes(data[i : i + CHUNK])
            print(w.name, len(data))
    for log in runs.glob("*.log"):
        tar.add(log, log.name)
print(sorted((p.name, p.stat().st_size) for p in out.iterdir()))
