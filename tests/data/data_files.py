"""Real files for the data tests: NIH-layout folders with every PNG flavour, written per test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explorer.data import FINDINGS, DataBundle


def grey_pattern(seed: int, size: int = 40, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A smooth uint8 picture (gradient + blob), distinct per seed."""
    h, w = shape or (size, size)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(0.2, 0.8, 2)
    img = 60 + 120 * x + 70 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.02)
    return np.clip(img, 0, 255).astype(np.uint8)


def save_png(path: Path, grey: np.ndarray, mode: str) -> None:
    """Write ``grey`` as an L, RGB (R=G=B), RGBA (alpha 255), 16-bit or 12-in-16-bit PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "L":
        im = Image.fromarray(grey, "L")
    elif mode == "RGB":
        im = Image.fromarray(np.stack([grey] * 3, -1), "RGB")
    elif mode == "RGBA":
        im = Image.fromarray(np.dstack([grey] * 3 + [np.full_like(grey, 255)]), "RGBA")
    elif mode == "I16":
        im = Image.fromarray(grey.astype(np.uint16) * 257)
    elif mode == "I12":   # 12-bit detector values stored in a 16-bit PNG
        im = Image.fromarray(grey.astype(np.uint16) * 16)
    else:
        raise ValueError(mode)
    im.save(path)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def assert_patient_disjoint(bundle: DataBundle) -> None:
    sets = [set(s.patient_ids.tolist()) for s in (bundle.train, bundle.val, bundle.test)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])


MODES = ("L", "RGB", "RGBA", "I16", "I12")


@pytest.fixture
def nih_folder(tmp_path) -> Path:
    """NIH release layout (images_001/images, images_002/images) with 40 train_val images of
    16 patients and 8 test images of 4 patients, all PNG flavours; labels cycle the findings."""
    root = tmp_path / "nih"
    rows, train_val, test = [], [], []
    k = 0
    for patient in range(1, 21):
        n = 3 if patient <= 8 else 2
        for f in range(n):
            name = f"{patient:08d}_{f:03d}.png"
            labels = "|".join(sorted({FINDINGS[k % 14], FINDINGS[(k * 5) % 14]})) if k % 3 else \
                "No Finding"
            rows.append(f"{name},{labels},{f},{patient},50,M,PA,64,64,0.1,0.1")
            (test if patient > 16 else train_val).append(name)
            folder = root / f"images_{1 + k % 2:03d}" / "images"
            save_png(folder / name, grey_pattern(k), MODES[k % len(MODES)])
            k += 1
    header = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
              "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
    (root / "Data_Entry_2017_v2020.csv").write_text("\n".join([header, *rows]) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    return root
