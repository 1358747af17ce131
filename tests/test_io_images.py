"""Image IO: formats, EXIF, alpha, 16-bit, atomic writes, natural order, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dynast_cli.errors import InputError, OutputError
from dynast_cli.io.images import check_output_path, list_images, load_image, save_image


def test_roundtrip_png_exact(tmp_path):
    arr = (np.arange(5 * 7 * 3) % 256).astype(np.uint8).reshape(5, 7, 3)
    Image.fromarray(arr).save(tmp_path / "a.png")
    t = load_image(tmp_path / "a.png")
    assert t.shape == (3, 5, 7) and t.dtype == torch.float32
    save_image(t, tmp_path / "b.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), arr)


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (30, 10), (255, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (3, 30, 10)


def test_alpha_composited_on_white_and_16bit(tmp_path):
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "t.png")
    assert torch.allclose(load_image(tmp_path / "t.png"), torch.ones(3, 4, 4))
    Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(tmp_path / "w.png")
    assert torch.allclose(load_image(tmp_path / "w.png"), torch.ones(3, 4, 4))


def test_cmyk_and_grayscale_become_rgb(tmp_path):
    Image.new("CMYK", (6, 5), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    Image.new("L", (6, 5), 128).save(tmp_path / "g.png")
    assert load_image(tmp_path / "c.jpg").shape == (3, 5, 6)
    g = load_image(tmp_path / "g.png")
    assert g.shape == (3, 5, 6) and torch.allclose(g[0], g[2])


@pytest.mark.parametrize(
    "content, message",
    [(None, "no such file"), (b"not an image", "not an image file"), ("truncated", "corrupt or truncated"),
     (b"", "empty file (0 bytes), not an image")],
)
def test_errors_name_file_and_problem(tmp_path, content, message):
    path = tmp_path / "x.jpg"
    if content == "truncated":
        Image.new("RGB", (64, 64), (10, 200, 30)).save(path, quality=95)
        path.write_bytes(path.read_bytes()[:300])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        load_image(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)
    assert "\n" not in str(info.value)


def test_natural_sort(tmp_path):
    for name in ["f10.png", "f2.png", "f1.png", ".hidden.png", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["f1.png", "f2.png", "f10.png"]


def test_output_checks(tmp_path):
    existing = tmp_path / "o.png"
    existing.write_bytes(b"keep")
    with pytest.raises(OutputError, match="already exists"):
        check_output_path(existing, overwrite=False)
    assert check_output_path(existing, overwrite=True) == existing
    with pytest.raises(OutputError, match="unsupported output format"):
        check_output_path(tmp_path / "o.xyz", overwrite=False)


def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OutputError, match="cannot write"):
        save_image(torch.zeros(3, 4, 4), target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_saved_files_get_normal_permissions(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = save_image(torch.zeros(3, 2, 2), tmp_path / "p.png")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
