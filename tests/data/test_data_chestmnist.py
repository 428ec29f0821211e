"""ChestMNIST source on small .npz files written by the test."""

from __future__ import annotations

import numpy as np
import pytest
from data_files import assert_patient_disjoint

from explorer.data import FINDINGS, DataConfig, load_data
from explorer.errors import DataError

SIZES = {"train": 30, "val": 10, "test": 12}


def _write(path, px: int, seed: int = 0, drop: str | None = None) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in SIZES.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, px, px), dtype=np.uint8)
        arrays[f"{split}_labels"] = (rng.random((n, 14)) < 0.2).astype(np.uint8)
    if drop:
        arrays.pop(drop)
    np.savez_compressed(path, **arrays)
    return arrays


def _cfg(root, **kw) -> DataConfig:
    kw = {"image_size": 28, "eval_crop_pct": 1.0, **kw}
    return DataConfig(source="chestmnist", root=str(root), **kw)


def test_official_splits_as_they_are(tmp_path):
    arrays = _write(tmp_path / "chestmnist.npz", 28)
    b = load_data(_cfg(tmp_path / "chestmnist.npz"), cache_dir=tmp_path / "cache")
    assert b.findings == FINDINGS
    for split, n in SIZES.items():
        s = b.split(split)
        assert len(s) == n
        np.testing.assert_array_equal(s.images, arrays[f"{split}_images"])   # 28 -> 28: as is
        np.testing.assert_array_equal(s.labels, arrays[f"{split}_labels"].astype(np.float32))
    assert_patient_disjoint(b)
    assert "no patient ids" in b.notes["patient_ids"]


def test_folder_picks_the_size_that_fits(tmp_path):
    _write(tmp_path / "chestmnist.npz", 28)
    _write(tmp_path / "chestmnist_64.npz", 64, seed=1)
    _write(tmp_path / "chestmnist_128.npz", 128, seed=2)
    assert load_data(_cfg(tmp_path, image_size=56, eval_crop_pct=0.875),   # cache 64 px
                     cache_dir=tmp_path / "c").notes["file"] == "chestmnist_64.npz"
    assert load_data(_cfg(tmp_path, image_size=28),
                     cache_dir=tmp_path / "c").notes["file"] == "chestmnist.npz"
    b = load_data(_cfg(tmp_path, image_size=32, chestmnist_size=128), cache_dir=tmp_path / "c")
    assert b.notes["file"] == "chestmnist_128.npz" and (b.train.images.shapes == 32).all()


def test_caps_subsample_images(tmp_path):
    _write(tmp_path / "chestmnist.npz", 28)
    b = load_data(_cfg(tmp_path, images={"train": 7, "val": 3}), cache_dir=tmp_path / "c")
    assert (len(b.train), len(b.val), len(b.test)) == (7, 3, 12)


@pytest.mark.parametrize(("damage", "message"), [
    ("corrupt", "is not a readable .npz"),
    ("keys", "lacks key(s) ['val_labels']"),
    ("none", "no chestmnist*.npz"),
    ("labels", "expected [N, 14]"),
])
def test_bad_npz(tmp_path, damage, message):
    path = tmp_path / "chestmnist_64.npz"
    if damage == "corrupt":
        _write(path, 8)
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "keys":
        _write(path, 8, drop="val_labels")
    elif damage == "labels":
        arrays = _write(path, 8)
        arrays["train_labels"] = arrays["train_labels"][:, :5]
        np.savez(path, **arrays)
    root = tmp_path if damage == "none" else path
    with pytest.raises(DataError) as e:
        load_data(_cfg(root), cache_dir=tmp_path / "c")
    assert message in str(e.value) and "\n" not in str(e.value)
