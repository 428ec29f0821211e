"""The driver's split plan shipped to the trials (explorer.data.prepare.ship / receive)."""

from __future__ import annotations

import pickle
import shutil

import numpy as np

from explorer.data import DataConfig, load_data
from explorer.data.packed import PackedImages
from explorer.data.prepare import receive, ship


def test_a_trial_opens_the_shipped_splits_without_planning_again(nih_folder):
    cfg = DataConfig(source="chestxray14", root=str(nih_folder), image_size=40,
                     eval_crop_pct=1.0)
    bundle = load_data(cfg)
    shipped = ship(bundle, cfg)
    blob = pickle.dumps(shipped)
    pixels = sum(bundle.split(s).images.nbytes for s in ("train", "val", "test"))
    assert len(blob) < pixels / 4   # labels and ids travel, pixels stay in the node's cache
    shutil.rmtree(nih_folder)   # planning again would need the files: the trial must not
    got = receive(pickle.loads(blob), cfg.model_copy(update={"loader_workers": 3}))
    assert got.fingerprint == bundle.fingerprint and got.findings == bundle.findings
    assert got.notes["shipped"] is True
    for name in ("train", "val", "test"):
        a, b = bundle.split(name), got.split(name)
        assert isinstance(b.images, PackedImages) and b.images.stem is not None  # mapped
        np.testing.assert_array_equal(a.images.index, b.images.index)
        np.testing.assert_array_equal(a.images.pixels, b.images.pixels)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert list(a.image_ids) == list(b.image_ids)
        assert list(a.patient_ids) == list(b.patient_ids)


def test_other_data_settings_or_a_node_without_the_cache_load_the_data(tmp_path, monkeypatch):
    cfg = DataConfig(image_size=16, eval_crop_pct=1.0, images={"train": 24, "val": 8, "test": 8})
    shipped = ship(load_data(cfg), cfg)
    other = cfg.model_copy(update={"phantom_strength": 2.0})   # e.g. a searched data.* value
    got = receive(shipped, other)
    assert "shipped" not in got.notes and got.fingerprint == load_data(other).fingerprint
    assert got.fingerprint != shipped.fingerprint
    monkeypatch.setenv("CXR_EXPLORER_CACHE", str(tmp_path / "empty-cache"))  # another node
    got = receive(shipped, cfg)
    assert "shipped" not in got.notes and got.notes["cache"]["dir"] == str(tmp_path /
                                                                            "empty-cache")
    assert got.fingerprint == shipped.fingerprint
