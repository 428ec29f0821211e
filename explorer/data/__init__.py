"""Data: sources, the pre-resized cache, transforms.

``load_data(cfg)`` returns a ``DataBundle`` (train/val/test ``Split``s of grey uint8 images with
their aspect kept, float32 labels, image and patient ids, and ``notes`` for the report)
from one of the sources:

- ``phantom``      built-in procedural thorax phantom (no files), ChestX-ray14 label statistics
- ``chestxray14``  NIH ChestX-ray14 release layout (full or partial download)
- ``chexpert``     CheXpert v1.0 / v1.0-small, 5 competition findings
- ``chestmnist``   MedMNIST ``chestmnist*.npz``
- ``csv``          any image folder plus a CSV of labels

``build_transform`` and ``XrayDataset`` turn a split into model inputs.
"""

from typing import TYPE_CHECKING

from explorer.data.bundle import DataBundle, Split
from explorer.data.config import DataConfig
from explorer.data.findings import CHEXPERT_FINDINGS, FINDINGS
from explorer.data.loader import load_data

if TYPE_CHECKING:
    from explorer.data.dataset import XrayDataset
    from explorer.data.transforms import build_transform

# Imported on first use (PEP 562): they need torch, and the recipe schema (``explorer.spec.config``
# imports ``explorer.data.config``) must not import torch into the search's driver.
_TORCH_NAMES = {"XrayDataset": "explorer.data.dataset",
                "build_transform": "explorer.data.transforms"}


def __getattr__(name: str):
    if name in _TORCH_NAMES:
        import importlib

        return getattr(importlib.import_module(_TORCH_NAMES[name]), name)
    raise AttributeError(f"module 'explorer.data' has no attribute {name!r}")


__all__ = [
    "CHEXPERT_FINDINGS",
    "FINDINGS",
    "DataBundle",
    "DataConfig",
    "Split",
    "XrayDataset",
    "build_transform",
    "load_data",
]
