"""A torch Dataset over a cached split."""

from __future__ import annotations

import mmap
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from explorer.data.bundle import Split


class XrayDataset(torch.utils.data.Dataset):
    """Item i: (transform(grey PIL image), target float32 [C]); with ``build_transform`` the
    image is uint8 [1, H, W], normalised later on the device.

    Pickling (DataLoader workers started with spawn/forkserver) sends the memmap's file path,
    not its pixels: every worker reopens the same cache file.
    """

    def __init__(self, split: Split, transform: Callable[[Image.Image], torch.Tensor]):
        self.split = split
        self.transform = transform
        self._targets = torch.from_numpy(np.ascontiguousarray(split.labels, np.float32))

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = Image.fromarray(np.asarray(self.split.images[i]), mode="L")
        return self.transform(image), self._targets[i]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        images = self.split.images
        # Only a whole mapped file (not a view of one) can be reopened from its path.
        if isinstance(images, np.memmap) and isinstance(images.base, mmap.mmap):
            state["split"] = _SplitByPath(self.split, images.filename)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["split"], _SplitByPath):
            state["split"] = state["split"].reopen()
        self.__dict__.update(state)


class _SplitByPath:
    """A Split whose images travel as the path of their cache file."""

    def __init__(self, split: Split, filename: str):
        self.fields = {k: getattr(split, k) for k in ("name", "labels", "image_ids", "patient_ids")}
        self.filename = filename

    def reopen(self) -> Split:
        return Split(images=np.load(self.filename, mmap_mode="r"), **self.fields)
