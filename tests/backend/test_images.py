"""Image decoding for every kind of file a task can point at (pure)."""

import io

import numpy as np
import pytest
from PIL import Image

from backend.images import ImageError, decode


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_rgb_becomes_bgr():
    d = decode(encode(Image.new("RGB", (30, 20), (255, 0, 0))))
    assert d.bgr.shape == (20, 30, 3) and tuple(d.bgr[0, 0]) == (0, 0, 255) and (d.width, d.height) == (30, 20)


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("CMYK", "JPEG"), ("P", "PNG"), ("RGBA", "PNG"),
                                      ("I;16", "PNG"), ("LA", "PNG")])
def test_other_modes_become_3_channel_8_bit(mode, fmt):
    img = Image.new(mode, (16, 12))
    if mode == "I;16":
        img = Image.fromarray((np.arange(16 * 12).reshape(12, 16) * 300).astype(np.uint16))
    d = decode(encode(img, fmt))
    assert d.bgr.shape == (12, 16, 3) and d.bgr.dtype == np.uint8
    if mode == "I;16":
        assert d.bgr.max() == 255 and d.bgr.min() == 0  # stretched, not clipped to black


def test_exif_rotation_is_applied_and_reported_as_displayed_size():
    img = Image.new("RGB", (40, 10), (0, 255, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    d = decode(encode(img, "JPEG", exif=exif.tobytes()))
    assert (d.width, d.height) == (10, 40) and d.bgr.shape == (40, 10, 3)


def test_huge_images_are_scaled_down_but_report_their_original_size():
    d = decode(encode(Image.new("RGB", (5000, 1000)), "JPEG"), max_side=1024)
    assert (d.width, d.height) == (5000, 1000) and max(d.bgr.shape) <= 1024


@pytest.mark.parametrize("data,reason", [(b"", "empty"), (b"not an image", "cannot be decoded"),
                                         (encode(Image.new("RGB", (64, 64)), "JPEG")[:200], "cannot be decoded")])
def test_broken_files_raise_a_reason(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode(data)
