"""Images in and out.

* :func:`load_image` reads any file Pillow can (JPEG, PNG incl. 16-bit and alpha, WebP, TIFF, BMP,
  CMYK JPEGs), applies the EXIF orientation, composites alpha over white and returns a float tensor
  ``(3, H, W)`` in ``[0, 1]``, RGB.
* :func:`save_image` writes atomically (a temporary file in the same folder, then a rename), so an
  interrupted or failed run never leaves a partial or half-overwritten output.
* :func:`list_images` lists a folder in natural order (``img2`` before ``img10``).

Every failure is an :class:`~dynast_cli.errors.InputError` / :class:`~dynast_cli.errors.OutputError`
whose one-line message names the file and the problem.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from dynast_cli.errors import InputError, OutputError
from dynast_cli.io.atomic import atomic_output
from dynast_cli.io.outputs import check_output

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif"}
WRITE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

# Refuse absurd sizes early with a clear message instead of an out-of-memory crash.
Image.MAX_IMAGE_PIXELS = 200_000_000


def natural_key(path: str | Path) -> list:
    """Sort key that orders ``frame2`` before ``frame10``."""
    name = Path(path).name
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder`` in natural order (hidden files skipped)."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError("no such folder", folder)
    if not folder.is_dir():
        raise InputError("not a folder", folder)
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    return sorted(files, key=natural_key)


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> float32 (H, W, 3) in [0, 1]."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        peak = 65535.0 if arr.max(initial=0) > 255 or img.mode.startswith("I;16") else 255.0
        arr = np.clip(arr / peak, 0.0, 1.0)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == "F":
        arr = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def read_image_array(path: str | Path) -> np.ndarray:
    """Read an image file as float32 ``(H, W, 3)`` RGB in ``[0, 1]``; clear errors."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path)
    if path.is_dir():
        raise InputError("is a folder, expected an image file", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                img = ImageOps.exif_transpose(img)
                return _to_rgb(img)
    except UnidentifiedImageError:
        if path.stat().st_size == 0:
            raise InputError("empty file (0 bytes), not an image", path) from None
        raise InputError("not an image file (unknown or unsupported format)", path) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError("image is too large (over 200 megapixels)", path) from None
    except PermissionError:
        raise InputError("permission denied", path) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"corrupt or truncated image ({exc})", path) from None


def load_image(path: str | Path) -> torch.Tensor:
    """Read an image file as a float tensor ``(3, H, W)``, RGB, in ``[0, 1]``."""
    arr = read_image_array(path)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def read_image_size(path: str | Path) -> tuple[int, int] | None:
    """``(H, W)`` of an image file from its header (EXIF rotation applied), without decoding it; None when
    it cannot be read (:func:`load_image` then reports why)."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            rotated = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    return (w, h) if rotated else (h, w)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` or ``(1, 3, H, W)`` float in [0, 1] -> ``(H, W, 3)`` uint8."""
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {image.shape[0]}")
        image = image[0]
    arr = image.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(arr)


def check_output_path(path: str | Path, overwrite: bool) -> Path:
    """Validate an output image path *before* any work is done: a known image format, then the shared
    check (:func:`dynast_cli.io.outputs.check_output`: exists without ``overwrite``, a folder in the
    way, a parent that is a file, a folder that cannot be written or created)."""
    path = Path(path)
    if path.suffix.lower() not in WRITE_SUFFIXES:
        raise OutputError(
            f"unsupported output format '{path.suffix or '(none)'}' "
            f"(use one of {', '.join(sorted(WRITE_SUFFIXES))})",
            path,
        )
    return check_output(path, overwrite)


def check_image_size(
    path: str | Path,
    hw: tuple[int, int],
    min_side: int,
    fitted: tuple[int, int] | None = None,
    fitting: str = "",
    hint: str = "",
    frame: bool = False,
) -> None:
    """Refuse an image (or, with ``frame``, a keypoint file's frame) of ``hw`` ``(H, W)`` whose smaller side
    is under ``min_side`` pixels, or whose size ``fitted`` ``(H, W)`` after resizing (described by
    ``fitting``, e.g. ``"--max-size 20"``) is: an :class:`InputError` naming ``path``, e.g.
    ``a.png: is 1x1; the smallest side must be at least 32 px``. ``hint`` ends the message."""
    h, w = hw
    what = f"has a {w}x{h} frame" if frame else f"is {w}x{h}"
    tail = f"; the smallest side must be at least {min_side} px{hint}"
    if min(h, w) < min_side:
        raise InputError(f"{what}{tail}", path)
    if fitted is not None and min(fitted) < min_side:
        raise InputError(f"{what}, which {fitting} makes {fitted[1]}x{fitted[0]}{tail}", path)


#: zlib level of written PNGs (see :func:`save_image`).
PNG_COMPRESS_LEVEL = 3


def save_image(image: torch.Tensor | np.ndarray, path: str | Path, quality: int = 95) -> Path:
    """Write ``image`` (float tensor in [0, 1] or uint8 HxWx3 array) atomically to ``path``."""
    path = Path(path)
    arr = image if isinstance(image, np.ndarray) else to_uint8(image)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise OutputError(f"unsupported output format '{path.suffix}'", path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP",
           ".tif": "TIFF", ".tiff": "TIFF"}[suffix]
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "PNG":  # lossless either way; PIL's default level 6 took 0.40 s for a 1024x1024 photo,
        kwargs["compress_level"] = PNG_COMPRESS_LEVEL  # level 3 0.12 s for a 12% larger file
    try:
        with atomic_output(path) as tmp:
            Image.fromarray(arr).save(tmp, format=fmt, **kwargs)
    except OSError as exc:
        raise OutputError(f"cannot write ({exc.strerror or exc})", path) from None
    return path


#: Height in pixels of the label band :func:`label_columns` puts above a grid.
LABEL_BAND = 22


def label_columns(grid: torch.Tensor, labels: list[str], cell: int, pad: int = 4) -> torch.Tensor:
    """A grid of :func:`dynast_cli.ops.image_grid` (3, H, W) with a white band on top naming each column:
    ``labels[c]`` centred over column c (Pillow's own font; a label wider than the cell loses its middle to
    "...") -> (3, H + band, W)."""
    from PIL import ImageDraw, ImageFont

    band = Image.new("RGB", (grid.shape[-1], LABEL_BAND), "white")
    draw = ImageDraw.Draw(band)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    for c, text in enumerate(labels):
        if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow < 10.1's bitmap font draws Latin-1 only
            text = text.encode("latin-1", "replace").decode("latin-1")
        full, kept = text, len(text)
        while kept > 1 and draw.textlength(text, font=font) > cell:  # cut in the middle: the ends stay apart
            kept -= 1
            text = full[: (kept + 1) // 2] + "..." + full[len(full) - kept // 2:]
        left = pad + c * (cell + pad) + (cell - draw.textlength(text, font=font)) / 2
        draw.text((left, 4), text, fill="black", font=font)
    header = torch.from_numpy(np.asarray(band, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return torch.cat([header, grid.float().cpu()], dim=1)
