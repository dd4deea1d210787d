"""Image bytes -> the array the model sees, whatever the file: EXIF rotation, CMYK, 16-bit, grayscale,
palette, alpha, and huge images (decoded at reduced size; boxes are reported in percent, so they stay
right for the original)."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

MAX_SIDE = 4096          # larger images are scaled down for inference
MAX_PIXELS = 250_000_000  # refuse anything larger (decompression bombs)


class ImageError(ValueError):
    """This task's image cannot be used; the message says why."""


@dataclass
class Decoded:
    bgr: np.ndarray  # H x W x 3 uint8, what mmdet's pipelines expect
    width: int       # original (displayed) size, for Label Studio's original_width/height
    height: int


def _to_8bit_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def decode(data: bytes, max_side: int = MAX_SIDE) -> Decoded:
    if not data:
        raise ImageError("the image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            rotated = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientations that swap the sides
            if w * h > MAX_PIXELS:
                raise ImageError(f"the image is too large ({w}x{h} pixels, limit {MAX_PIXELS:,})")
            if img.format == "JPEG" and max(w, h) > max_side:
                img.draft("RGB", (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 size: fast and small
            img = ImageOps.exif_transpose(img)
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"the image is too large ({exc})") from None
    except Exception as exc:  # PIL raises many kinds for broken files
        raise ImageError(f"the image cannot be decoded ({type(exc).__name__}: {exc})") from None
    if rotated:
        w, h = h, w
    rgb = _to_8bit_rgb(img)
    if max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.BILINEAR)
    return Decoded(np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1]), w, h)
