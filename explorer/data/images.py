"""Decode one image file to a square grey uint8 array (what the cache stores).

Real releases mix formats: NIH PNGs are L, RGB with R=G=B, RGBA with alpha 255 and a few
16-bit; CheXpert ships JPEGs. Everything becomes one 8-bit channel here, so the rest of the
code sees one kind of image.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from PIL import Image

# What Pillow raises for truncated, corrupt or non-image files.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


class BadImage(Exception):
    """A file that cannot be decoded; the reason goes into ``notes["skipped_files"]``."""


def to_grey(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 'L'. High bit depths are scaled by their *used* bit depth, because
    12-bit detector data is often stored in 16-bit PNGs and /257 would leave it nearly black."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if a.ndim == 3:   # pragma: no cover - Pillow gives 2-D arrays for these modes
            a = a[..., 0]
        top = float(a.max()) if a.size else 0.0
        if im.mode == "F":
            lo = float(a.min())
            a = (a - lo) / max(top - lo, 1e-12) * 255.0
        else:
            bits = max(8, math.ceil(math.log2(top + 1))) if top > 0 else 8
            a = np.clip(a, 0, None) * (255.0 / (2**bits - 1))
        return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), mode="L")
    if im.mode == "L":
        return im
    # RGB/RGBA/LA/P/CMYK: Pillow's luma; equal for R=G=B images, alpha is ignored
    return im.convert("L")


def decode_grey(path: str, size: int) -> np.ndarray:
    """Read ``path`` and resize it to uint8 [size, size] (the whole field of view, no crop).

    Raises ``BadImage`` for files Pillow cannot fully decode (truncation is an error: Pillow's
    ``LOAD_TRUNCATED_IMAGES`` would silently pad them with grey).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # e.g. odd PNG chunks: decoding decides, not warnings
            with Image.open(path) as im:
                if im.format == "JPEG":
                    im.draft("L", (size, size))   # DCT-domain downscale: much faster on big JPEGs
                im.load()
                grey = to_grey(im)
    except DECODE_ERRORS as e:
        raise BadImage(f"{type(e).__name__}: {e}") from None
    if grey.size != (size, size):
        grey = grey.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return np.asarray(grey, dtype=np.uint8)


def resize_grey(array: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W] -> uint8 [size, size] with the same filter as files get."""
    if array.shape == (size, size):
        return array
    im = Image.fromarray(np.ascontiguousarray(array), mode="L")
    return np.asarray(im.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0))
