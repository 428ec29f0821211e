"""ChestMNIST (MedMNIST): ChestX-ray14 resized into one ``.npz``, official splits as they are.

``root`` is the ``.npz`` or a folder with ``chestmnist.npz`` (28 px), ``chestmnist_64.npz``,
``chestmnist_128.npz`` or ``chestmnist_224.npz``. With several, ``chestmnist_size`` picks one,
else the smallest at least ``train_cache_size`` wide (no upsampling), else the largest. ChestMNIST
carries no patient ids: each image is its own patient. MedMNIST's splits are patient-disjoint
upstream, but a per-image bootstrap here cannot group a patient's images.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from explorer.data.cache import SplitPlan, file_signature
from explorer.data.config import DataConfig
from explorer.data.findings import FINDINGS
from explorer.data.images import resize_grey
from explorer.data.splits import cap
from explorer.data.tabular import require_root
from explorer.errors import DataError

#: Largest image side accepted (MedMNIST+ goes up to 224).
MAX_SIDE = 1024
KEYS = tuple(f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels"))
_NAME = re.compile(r"chestmnist(?:_(\d+))?\.npz$", re.IGNORECASE)


def _size_of(path: Path) -> int:
    m = _NAME.search(path.name)
    return int(m.group(1)) if m and m.group(1) else 28


def find_npz(cfg: DataConfig) -> Path:
    root = require_root(cfg)
    if root.is_file():
        return root
    found = sorted(root.glob("chestmnist*.npz"), key=_size_of)
    if not found:
        raise DataError(f"no chestmnist*.npz in {root}: download one from MedMNIST "
                        f"(e.g. chestmnist_64.npz) or point data.root at the file")
    if cfg.chestmnist_size is not None:
        chosen = [p for p in found if _size_of(p) == cfg.chestmnist_size]
        if not chosen:
            raise DataError(f"no chestmnist file of size {cfg.chestmnist_size} in {root} (found "
                            f"{[p.name for p in found]}): fix data.chestmnist_size")
        return chosen[0]
    wide = [p for p in found if _size_of(p) >= cfg.train_cache_size]
    return wide[0] if wide else found[-1]


def _open(path: Path):
    try:
        z = np.load(path, allow_pickle=False)
        missing = [k for k in KEYS if k not in z.files]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"{path} is not a readable .npz ({type(e).__name__}: {e}): "
                        f"download it again") from None
    if missing:
        raise DataError(f"{path} lacks key(s) {missing} (has {z.files}): is it a MedMNIST "
                        f"chestmnist file?")
    return z


def _read(z, key: str, path: Path) -> np.ndarray:
    try:
        return z[key]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: array '{key}' cannot be read ({type(e).__name__}: {e}): "
                        f"download the file again") from None


def _header(z, key: str, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of an array of the .npz from its header, without reading the data (the
    224-px train images are ~4 GB)."""
    try:
        with z.zip.open(f"{key}.npy") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fh)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise DataError(f"{path}: array '{key}' cannot be read ({type(e).__name__}: {e}): "
                        f"download the file again") from None
    return tuple(shape), np.dtype(dtype)


def _check_arrays(z, path: Path) -> None:
    """Shapes that agree: as many labels as images, square uint8 images of a sane size."""
    for split in ("train", "val", "test"):
        (images, itype), (labels, _) = (_header(z, f"{split}_{k}", path)
                                        for k in ("images", "labels"))
        grey = images[:3] if len(images) == 4 and images[-1] in (1, 3) else images
        if len(grey) != 3 or itype != np.uint8 or grey[1] != grey[2] or grey[1] > MAX_SIDE:
            raise DataError(f"{path}: {split}_images is {itype} {list(images)}, expected uint8 "
                            f"[N, H, H] with H up to {MAX_SIDE}: is it the chestmnist file?")
        if len(labels) != 2 or labels[1] != len(FINDINGS):
            raise DataError(f"{path}: {split}_labels has shape {list(labels)}, expected "
                            f"[N, {len(FINDINGS)}]: is it the chestmnist file?")
        if labels[0] != images[0]:
            raise DataError(f"{path}: {split}_images holds {images[0]} images but "
                            f"{split}_labels {labels[0]} rows: the file is damaged, download it "
                            "again")


def plan_chestmnist(cfg: DataConfig) -> tuple[tuple[str, ...], dict[str, SplitPlan], dict]:
    path = find_npz(cfg)
    sig = file_signature(str(path), path.name)
    plans = {}
    with _open(path) as z:
        _check_arrays(z, path)
        for split in ("train", "val", "test"):
            labels = _read(z, f"{split}_labels", path)
            if not np.isin(labels, (0, 1)).all():
                raise DataError(f"{path}: {split}_labels holds values other than 0 and 1: is "
                                "it the chestmnist file?")
            ids = np.array([f"{split}-{i:06d}" for i in range(len(labels))])
            keep = np.flatnonzero(cap(ids, getattr(cfg.images, split), cfg.split_seed,
                                      f"chestmnist/cap/{split}"))
            if keep.size == 0 and split != "test":
                raise DataError(f"{path}: the {split} split is empty: use a complete "
                                f"chestmnist file")

            def fill(out, split=split, keep=keep):   # out: [N, s, s], s from the cache
                with _open(path) as zz:
                    images = _read(zz, f"{split}_images", path)
                if images.ndim == 4 and images.shape[-1] in (1, 3):   # N x H x W x C variants
                    images = images[..., 0]
                if images.ndim != 3 or images.dtype != np.uint8:
                    raise DataError(f"{path}: {split}_images is {images.dtype} {images.shape}, "
                                    f"expected uint8 [N, H, W]")
                for j, i in enumerate(keep):
                    out[j] = resize_grey(images[i], out.shape[1])

            plans[split] = SplitPlan(split, labels[keep].astype(np.float32), ids[keep], ids[keep],
                                     key={"file": sig}, fill=fill, native=_size_of(path))
    notes = {
        "file": path.name,
        "file_size_px": _size_of(path),
        "split_rule": "official MedMNIST train/val/test",
        "patient_ids": "ChestMNIST has no patient ids: each image is its own patient. The "
                       "official splits are patient-disjoint upstream, but a per-image "
                       "bootstrap cannot group a patient's images.",
    }
    return FINDINGS, plans, notes
