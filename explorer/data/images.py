"""Decode one image file to a grey uint8 array at the size the cache stores (aspect kept).

Real releases mix formats: NIH PNGs are L, RGB with R=G=B, RGBA with alpha 255 and a few
16-bit; CheXpert ships JPEGs. Everything becomes one 8-bit channel here, so the rest of the
code sees one kind of image.

Geometry follows the study's transforms (torchvision ``Resize(int)``: the shorter side becomes
the given size, the longer one ``int(size * long / short)``, bicubic), never a squashed square:
an evaluation image is exactly the study's ``Resize(256)`` of the original (centre-cropped
later), and a training image keeps the whole field of view for ``RandomResizedCrop``.
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


def stored_size(width: int, height: int, shorter: int, *, upscale: bool) -> tuple[int, int]:
    """(width, height) of an image after torchvision's ``Resize(shorter)``; with
    ``upscale=False`` an image whose shorter side is already at most ``shorter`` keeps its size
    (a training cache never invents pixels: the crop upsamples from the original instead)."""
    short, long = sorted((width, height))
    if not upscale and short <= shorter:
        return width, height
    new_long = int(shorter * long / short)   # torchvision's rounding, so sizes match exactly
    return (shorter, new_long) if width <= height else (new_long, shorter)


def _resized(grey: Image.Image, size: tuple[int, int]) -> Image.Image:
    # Plain PIL bicubic, what torchvision's Resize calls on PIL images (no reducing_gap, which
    # would change the pixels): an eval image equals the study's Resize(256) output.
    return grey if grey.size == size else grey.resize(size, Image.Resampling.BICUBIC)


def read_size(path: str) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                return im.size
    except DECODE_ERRORS as e:
        raise BadImage(f"{type(e).__name__}: {e}") from None


def decode_grey(path: str, shorter: int, *, upscale: bool = True, exact: bool = True
                ) -> np.ndarray:
    """Read ``path`` as uint8 [H, W] with the size ``stored_size`` gives (aspect kept).

    ``exact=False`` lets big JPEGs decode at a reduced scale in the DCT domain first (much
    faster; the result differs slightly from resizing the full decode, so evaluation images,
    which must equal the study's, are always exact).

    Raises ``BadImage`` for files Pillow cannot fully decode (truncation is an error: Pillow's
    ``LOAD_TRUNCATED_IMAGES`` would silently pad them with grey).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # e.g. odd PNG chunks: decoding decides, not warnings
            with Image.open(path) as im:
                size = stored_size(*im.size, shorter, upscale=upscale)
                if im.format == "JPEG" and not exact:
                    im.draft("L", size)   # keeps at least ``size`` pixels per side
                im.load()
                grey = to_grey(im)
    except DECODE_ERRORS as e:
        raise BadImage(f"{type(e).__name__}: {e}") from None
    return np.asarray(_resized(grey, size), dtype=np.uint8)


def resize_grey(array: np.ndarray, shorter: int, *, upscale: bool = True) -> np.ndarray:
    """uint8 [H, W] -> uint8 at ``stored_size``, with the same filter as files get."""
    h, w = array.shape
    size = stored_size(w, h, shorter, upscale=upscale)
    if size == (w, h):
        return array
    im = Image.fromarray(np.ascontiguousarray(array), mode="L")
    return np.asarray(_resized(im, size))
