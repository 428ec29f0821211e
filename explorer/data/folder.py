"""A plain folder of unlabelled images (``source: folder``, pre-training pools only).

Every image file under ``root`` (recursively, in sorted order) is one image; its id is its path
relative to ``root`` and, with no patient information, it is its own patient. ``images.train``
caps the count (a deterministic subsample, as for the other sources).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from explorer.data.cache import SplitPlan, file_signature
from explorer.data.config import DataConfig
from explorer.data.splits import cap
from explorer.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def list_images(root: Path) -> list[str]:
    """Absolute paths of the image files under ``root``, sorted (hidden folders skipped)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(folder, f) for f in files
                  if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith(".")]
    return sorted(found)


def plan_folder(cfg: DataConfig, root: Path) -> SplitPlan:
    """One split plan (``all``) over the folder's images, with no labels (C = 0)."""
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise DataError(f"data root {root} {what}: fix data.root")
    paths = list_images(root)
    if not paths:
        raise DataError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {root}: fix "
                        f"data.root")
    ids = np.array([Path(p).relative_to(root).as_posix() for p in paths], dtype=str)
    keep = cap(ids, cfg.images.train, cfg.split_seed, "folder/cap")
    paths = [p for p, k in zip(paths, keep) if k]
    ids = ids[keep]
    sigs = [file_signature(p, i) for p, i in zip(paths, ids)]
    return SplitPlan(name="all", labels=np.zeros((len(ids), 0), np.float32), image_ids=ids,
                     patient_ids=ids, key={"files": sigs}, paths=paths)
