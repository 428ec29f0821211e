"""Grey images of different sizes packed in one memory-mapped file (the cache's pixel layout).

``<stem>.images.npy`` holds every image's rows back to back (uint8, 1-D) and
``<stem>.index.npy`` one row per image: (offset, height, width). Reading image i maps only its
own bytes, so memory stays bounded by what the loader touches, whatever the split's size.

Why not a fixed [N, S, S] box: non-square sources (CheXpert, CSV folders) keep their aspect
ratio, as the study's transforms need (shorter side resized, centre crop at evaluation, training
crops from the whole image). A fixed box with per-image valid sizes pads every image to the
split's largest height and largest width (portrait and landscape 4:3 images mixed: a third more
bytes than they hold), and cropping the longer side to a maximum aspect would cut anatomy the
study's crops can reach. Packing wastes nothing, and for square sources it holds byte for byte
what an [N, S, S] array would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class PackedImages:
    """A read-only sequence of uint8 [H, W] images (``images[i]`` is a view into the file)."""

    def __init__(self, pixels: np.ndarray, index: np.ndarray, stem: str | None = None):
        if index.ndim != 2 or index.shape[1] != 3:
            raise ValueError(f"index must be [N, 3] (offset, height, width), got {index.shape}")
        self.pixels = pixels
        self.index = np.asarray(index, dtype=np.int64)
        self.stem = stem

    @classmethod
    def open(cls, stem: str | Path) -> PackedImages:
        """Memory-map ``<stem>.images.npy`` with its ``<stem>.index.npy``."""
        stem = str(stem)
        index = np.load(stem + ".index.npy")
        # numpy cannot map a zero-byte array (a split whose images are all missing)
        pixels = np.load(stem + ".images.npy", mmap_mode="r" if index.size else None)
        return cls(pixels, index, stem)

    @classmethod
    def from_arrays(cls, images: list[np.ndarray] | np.ndarray) -> PackedImages:
        """In-memory packing of [H, W] arrays (tests, small generated splits)."""
        shapes = [a.shape for a in images]
        sizes = [h * w for h, w in shapes]
        offsets = np.cumsum([0, *sizes[:-1]]) if sizes else np.zeros(0, np.int64)
        index = np.array([(o, h, w) for o, (h, w) in zip(offsets, shapes)], np.int64)
        pixels = (np.concatenate([np.ascontiguousarray(a, np.uint8).ravel() for a in images])
                  if sizes else np.zeros(0, np.uint8))
        return cls(pixels, index.reshape(-1, 3))

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getitem__(self, i: int) -> np.ndarray:
        offset, h, w = self.index[i]
        return self.pixels[offset:offset + h * w].reshape(h, w)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @property
    def shapes(self) -> np.ndarray:
        """int64 [N, 2]: (height, width) of each image."""
        return self.index[:, 1:]

    @property
    def nbytes(self) -> int:
        return int(self.shapes.prod(axis=1).sum())

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """A dense [N, H, W] copy when every image has one shape (square sources)."""
        if len(self) and (self.shapes != self.shapes[0]).any():
            raise ValueError("images of different sizes have no dense [N, H, W] array")
        h, w = self.shapes[0] if len(self) else (0, 0)
        out = np.stack(list(self)) if len(self) else np.zeros((0, h, w), np.uint8)
        return out if dtype is None else out.astype(dtype)

    def __reduce__(self):
        # DataLoader workers (spawn) get the file's name, not its pixels: they map it again.
        if self.stem is not None:
            return (PackedImages.open, (self.stem,))
        return (PackedImages, (np.asarray(self.pixels), self.index))
