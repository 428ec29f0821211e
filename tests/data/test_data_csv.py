"""The generic CSV source on small folders written by the test."""

from __future__ import annotations

import numpy as np
import pytest
from data_files import assert_patient_disjoint, grey_pattern, save_png, truncate

from explorer.data import FINDINGS, DataConfig, load_data
from explorer.errors import DataError


def _folder(tmp_path, rows: list[str], header: str, n: int = 30):
    root = tmp_path / "imgs"
    for k in range(n):
        save_png(root / "sub" / f"img{k:03d}.png", grey_pattern(k, 24), "L")
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


def _cfg(root, **kw) -> DataConfig:
    kw = {"image_size": 16, "eval_crop_pct": 1.0, **kw}
    return DataConfig(source="csv", root=str(root), **kw)


def test_label_columns_with_patients_carved_by_seed(tmp_path):
    rows = [f"sub/img{k:03d}.png,p{k // 3},{k % 2},{int(k % 5 == 0)}" for k in range(30)]
    root = _folder(tmp_path, rows, "file,pid,Lesion,Opacity")
    cfg = _cfg(root, path_column="file", patient_column="pid", label_columns=["Opacity", "Lesion"])
    b = load_data(cfg, cache_dir=tmp_path / "c")
    assert b.findings == ("Opacity", "Lesion")
    assert len(b.train) + len(b.val) + len(b.test) == 30 and min(len(b.val), len(b.test)) > 0
    assert_patient_disjoint(b)
    for iid, lab in zip(b.train.image_ids, b.train.labels):   # columns in the configured order
        k = int(iid[len("sub/img"):-len(".png")])
        assert lab.tolist() == [float(k % 5 == 0), float(k % 2)]
    assert "patient_ids" not in b.notes
    other = load_data(_cfg(root, path_column="file", patient_column="pid",
                           label_columns=["Opacity", "Lesion"], split_seed=5),
                      cache_dir=tmp_path / "c")
    assert set(other.test.patient_ids) != set(b.test.patient_ids)


def test_pipe_labels_split_column_and_no_patients(tmp_path):
    names = ["No Finding", "Mass", "Effusion|Mass", ""]
    split = ["train"] * 20 + ["valid"] * 5 + ["test"] * 5
    rows = [f"sub/img{k:03d}.png,{names[k % 4]},{split[k]}" for k in range(30)]
    root = _folder(tmp_path, rows, "path,labels,fold")
    b = load_data(_cfg(root, labels_column="labels", split_column="fold"),
                  cache_dir=tmp_path / "c")
    assert b.findings == FINDINGS
    assert (len(b.train), len(b.val), len(b.test)) == (20, 5, 5)
    assert "each image is its own patient" in b.notes["patient_ids"]
    assert b.train.labels[2, FINDINGS.index("Effusion")] == 1
    assert b.train.labels[2].sum() == 2 and b.train.labels[0].sum() == 0


def test_custom_vocabulary_and_missing_files(tmp_path):
    rows = [f"sub/img{k:03d}.png,{'Covid' if k % 3 else 'Normal'}" for k in range(30)]
    rows += ["sub/gone.png,Covid"]
    root = _folder(tmp_path, rows, "path,diagnosis")
    b = load_data(_cfg(root, labels_column="diagnosis", findings=["Covid", "Normal"]),
                  cache_dir=tmp_path / "c")
    assert b.findings == ("Covid", "Normal") and b.notes["rows_without_file"] == 1
    assert len(b.train) + len(b.val) + len(b.test) == 30


def test_default_label_columns_are_the_chestxray14_names(tmp_path):
    rows = [f"sub/img{k:03d}.png,{k % 2},{int(k % 3 == 0)}" for k in range(30)]
    root = _folder(tmp_path, rows, "path,Mass,Hernia")
    b = load_data(_cfg(root), cache_dir=tmp_path / "c")
    assert b.findings == ("Mass", "Hernia")
    assert np.isin(b.train.labels, [0, 1]).all()


@pytest.mark.parametrize(("damage", "message"), [
    ("path_column", "has no column(s) ['image']"),
    ("label_columns", "has no column(s) ['Nope']"),
    ("unknown_names", "unknown findings ['Covid']"),
    ("values", "must hold only 0 or 1"),
    ("split_values", "has values ['dev']"),
    ("empty_val", "the val split is empty"),
    ("leak", "appear in both"),
    ("no_csv", "no *.csv"),
    ("csv_file", "label file"),
])
def test_bad_csv_input(tmp_path, damage, message):
    header, kw = "path,pid,Mass,labels,fold", {}
    rows = [f"sub/img{k:03d}.png,p{k // 2},{k % 2},{'Mass' if k % 2 else ''},"
            f"{'test' if k >= 25 else 'val' if k >= 20 else 'train'}" for k in range(30)]
    if damage == "path_column":
        kw = {"path_column": "image"}
    elif damage == "label_columns":
        kw = {"label_columns": ["Nope"]}
    elif damage == "unknown_names":
        rows[3] = rows[3].replace(",Mass,", ",Covid,")
        kw = {"labels_column": "labels"}
    elif damage == "values":
        rows[4] = rows[4].replace(",0,", ",2,")
    elif damage == "split_values":
        rows[0] = rows[0].replace(",train", ",dev")
        kw = {"split_column": "fold"}
    elif damage == "empty_val":
        rows = [r.replace(",val", ",train") for r in rows]
        kw = {"split_column": "fold"}
    elif damage == "leak":   # images 19 and 20 share patient p9 but sit in train and val
        rows[20] = rows[20].replace(",p10,", ",p9,")
        kw = {"split_column": "fold", "patient_column": "pid"}
    elif damage == "csv_file":
        kw = {"csv_file": "other.csv"}
    root = _folder(tmp_path, rows, header)
    if damage == "no_csv":
        (root / "labels.csv").unlink()
    with pytest.raises(DataError) as e:
        load_data(_cfg(root, **kw), cache_dir=tmp_path / "c")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_split_of_only_unreadable_files_is_an_error(tmp_path):
    split = ["train"] * 20 + ["val"] * 5 + ["test"] * 5
    rows = [f"sub/img{k:03d}.png,{k % 2},{split[k]}" for k in range(30)]
    root = _folder(tmp_path, rows, "path,Mass,fold")
    for k in range(20, 25):
        truncate(root / "sub" / f"img{k:03d}.png")
    with pytest.raises(DataError, match="the val split is empty after skipping unreadable"):
        load_data(_cfg(root, split_column="fold", max_bad_fraction=1.0), cache_dir=tmp_path / "c")
