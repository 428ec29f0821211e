"""ChestX-ray14 source: the real mini folder and NIH-layout folders written by the tests."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from data_files import assert_patient_disjoint, grey_pattern, truncate

from explorer.data import FINDINGS, DataConfig, load_data
from explorer.errors import DataError


def _cfg(root, **kw) -> DataConfig:
    kw = {"image_size": 32, "eval_crop_pct": 1.0, **kw}
    return DataConfig(source="chestxray14", root=str(root), **kw)


def test_real_mini_folder_counts_and_splits(nih_mini, tmp_path):
    b = load_data(_cfg(nih_mini, image_size=56, eval_crop_pct=0.875), cache_dir=tmp_path)
    assert len(b.train) + len(b.val) == 690
    patients = set(b.train.patient_ids) | set(b.val.patient_ids)
    assert len(patients) == 249
    assert len(b.test) == 0 and len(b.test.images) == 0
    assert "test_list.txt" in b.notes["test_empty_reason"]
    assert b.notes["rows_without_file"] == 112120 - 690
    assert (b.train.images.shapes == 64).all() and b.train.images[0].dtype == np.uint8
    assert b.findings == FINDINGS
    assert_patient_disjoint(b)
    # README of the mini folder: positives among the 690 images
    total = b.train.labels.sum(0) + b.val.labels.sum(0)
    assert dict(zip(FINDINGS, total.astype(int).tolist()))["Effusion"] == 96
    assert int(total[FINDINGS.index("Hernia")]) == 1
    pos = b.notes["positives"]
    assert pos["train"]["Effusion"] + pos["val"]["Effusion"] == 96
    assert b.notes["sizes"]["val"]["patients"] == round(0.13 * 249)
    json.dumps(b.notes)   # the notes go into reports as they are


def test_every_png_flavour_decodes_to_the_same_grey(nih_folder, tmp_path):
    b = load_data(_cfg(nih_folder, image_size=40), cache_dir=tmp_path)
    assert len(b.train) + len(b.val) == 40 and len(b.test) == 8
    assert b.notes["image_folders"] == ["images_001/images", "images_002/images"]
    assert_patient_disjoint(b)
    for split in (b.train, b.val, b.test):
        for img, iid in zip(split.images, split.image_ids):
            patient, follow = (int(s) for s in iid[:-4].split("_"))
            k = sum(3 if p <= 8 else 2 for p in range(1, patient)) + follow
            assert np.abs(img.astype(int) - grey_pattern(k).astype(int)).max() <= 1, iid


def test_truncated_non_image_and_missing_files_are_skipped_and_listed(nih_folder, tmp_path):
    truncate(nih_folder / "images_001" / "images" / "00000001_000.png")
    (nih_folder / "images_002" / "images" / "00000001_001.png").write_text("not a png")
    (nih_folder / "images_001" / "images" / "00000001_002.png").unlink()
    b = load_data(_cfg(nih_folder, max_bad_fraction=0.2), cache_dir=tmp_path)
    assert b.notes["rows_without_file"] == 1
    skipped = {s["path"]: s for s in b.notes["skipped_files"]}
    assert set(skipped) == {"images_001/images/00000001_000.png",
                            "images_002/images/00000001_001.png"}
    assert all(s["reason"] for s in skipped.values())
    ids = set(b.train.image_ids) | set(b.val.image_ids)
    assert len(ids) == 37 and not {"00000001_000.png", "00000001_001.png"} & ids
    for s in (b.train, b.val):
        assert len(s.images) == len(s.labels) == len(s.image_ids)


def test_too_many_unreadable_files_stop_the_run(nih_folder, tmp_path):
    for k, png in enumerate(sorted(nih_folder.glob("images_00*/images/0000000*.png"))):
        if k < 6:
            truncate(png)
    with pytest.raises(DataError, match="max_bad_fraction") as e:
        load_data(_cfg(nih_folder, max_bad_fraction=0.05), cache_dir=tmp_path)
    assert "\n" not in str(e.value)


def test_original_csv_name_and_flat_images_folder(nih_folder, tmp_path):
    (nih_folder / "Data_Entry_2017_v2020.csv").rename(nih_folder / "Data_Entry_2017.csv")
    (nih_folder / "images").mkdir()
    for png in nih_folder.glob("images_00*/images/*.png"):
        shutil.move(png, nih_folder / "images" / png.name)
    b = load_data(_cfg(nih_folder), cache_dir=tmp_path)
    assert b.notes["label_file"] == "Data_Entry_2017.csv"
    assert len(b.train) + len(b.val) + len(b.test) == 48


def test_caps_are_patient_wise_and_deterministic(nih_folder, tmp_path):
    cfg = _cfg(nih_folder, images={"train": 10, "val": 4, "test": 3})
    a, b = load_data(cfg, cache_dir=tmp_path), load_data(cfg, cache_dir=tmp_path / "other")
    assert len(a.train) <= 10 and len(a.val) <= 4 and len(a.test) <= 3
    assert a.train.image_ids.tolist() == b.train.image_ids.tolist()
    full = load_data(_cfg(nih_folder), cache_dir=tmp_path)
    for capped, whole in ((a.train, full.train), (a.val, full.val), (a.test, full.test)):
        kept = set(capped.patient_ids)   # a kept patient keeps all of their images of the split
        assert sum(p in kept for p in whole.patient_ids) == len(capped)


def test_val_depends_on_split_seed(nih_folder, tmp_path):
    a = load_data(_cfg(nih_folder, split_seed=0), cache_dir=tmp_path)
    b = load_data(_cfg(nih_folder, split_seed=1), cache_dir=tmp_path)
    assert set(a.val.patient_ids) != set(b.val.patient_ids)
    assert a.fingerprint != b.fingerprint


def test_missing_test_images_give_an_empty_test_split(nih_folder, tmp_path):
    for name in (nih_folder / "test_list.txt").read_text().split():
        for png in nih_folder.glob(f"images_00*/images/{name}"):
            png.unlink()
    b = load_data(_cfg(nih_folder), cache_dir=tmp_path)
    assert len(b.test) == 0 and "test_empty_reason" in b.notes
    assert b.notes["positives"]["test"] == dict.fromkeys(FINDINGS, 0)


@pytest.mark.parametrize(("damage", "message"), [
    ("no_root", "data.root is not set"),
    ("bad_root", "does not exist"),
    ("no_csv", "Data_Entry_2017_v2020.csv or Data_Entry_2017.csv"),
    ("no_train_list", "train_val_list.txt is missing"),
    ("no_test_list", "test_list.txt is missing"),
    ("unknown_finding", "unknown findings ['Lung Opacity']"),
    ("wrong_columns", "has no column(s) ['Finding Labels']"),
    ("no_train_images", "the train split is empty"),
])
def test_bad_input_raises_one_line_data_error(nih_folder, tmp_path, damage, message):
    root = nih_folder
    csv = root / "Data_Entry_2017_v2020.csv"
    if damage == "no_root":
        root = None
    elif damage == "bad_root":
        root = tmp_path / "nowhere"
    elif damage == "no_csv":
        csv.unlink()
    elif damage == "no_train_list":
        (root / "train_val_list.txt").unlink()
    elif damage == "no_test_list":
        (root / "test_list.txt").unlink()
    elif damage == "unknown_finding":
        csv.write_text(csv.read_text().replace("No Finding", "Lung Opacity", 1))
    elif damage == "wrong_columns":
        csv.write_text(csv.read_text().replace("Finding Labels", "Labels", 1))
    elif damage == "no_train_images":
        for name in (root / "train_val_list.txt").read_text().split():
            for png in root.glob(f"images_00*/images/{name}"):
                png.unlink()
    cfg = DataConfig(source="chestxray14", root=None if root is None else str(root),
                     image_size=32, eval_crop_pct=1.0)
    with pytest.raises(DataError) as e:
        load_data(cfg, cache_dir=tmp_path / "cache")
    assert message in str(e.value) and "\n" not in str(e.value)
    if damage == "unknown_finding":
        assert "Pleural_Thickening" in str(e.value)   # lists the valid names
