"""NIH ChestX-ray14 in its official release layout.

``root`` holds ``Data_Entry_2017_v2020.csv`` (or the original ``Data_Entry_2017.csv``),
``train_val_list.txt``, ``test_list.txt`` and the PNGs, either in ``images/`` or still in the
tarball folders ``images_001/images/ ... images_012/images/``. Partial downloads work: rows
without a file are counted and left out. Validation is a seeded, patient-disjoint share
(``val_fraction`` of the patients with images) of train_val; test is the official test list
(empty when none of its images are present).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from explorer.data.cache import SplitPlan
from explorer.data.config import DataConfig
from explorer.data.findings import FINDINGS
from explorer.data.rows import require_filled, require_unique_header
from explorer.data.splits import carve
from explorer.data.tabular import (
    index_files,
    parse_label_sets,
    plan_splits,
    read_csv,
    require_columns,
    require_file,
    require_root,
)
from explorer.errors import DataError

CSV_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
COLUMNS = ("Image Index", "Finding Labels", "Patient ID")


def find_label_csv(root: Path) -> Path:
    for name in CSV_NAMES:
        if (root / name).is_file():
            return root / name
    others = sorted(p for p in root.glob("Data_Entry_2017*.csv") if p.is_file())
    if others:
        return others[0]
    raise DataError(f"no label file {' or '.join(CSV_NAMES)} in {root}: download it from the "
                    f"NIH site into that folder or fix data.root")


def image_folders(root: Path) -> list[Path]:
    """``images/`` and the tarball folders ``images_0NN/images/`` (or ``images_0NN/``)."""
    tarballs = sorted(root.glob("images_*"))
    return [root / "images", *[t / "images" for t in tarballs], *tarballs]


def _read_list(path: Path) -> list[str]:
    return [s.strip() for s in require_file(path, "split list").read_text().splitlines()
            if s.strip()]


def _check_entries(df: pd.DataFrame, listed: set[str], path: Path) -> None:
    """Rows of listed images have a patient, and an image's repeated rows agree (the first one
    would be used, silently)."""
    rows = df[df["Image Index"].isin(listed)]
    require_filled(rows, ["Patient ID"], path, "the patient ids")
    repeated = rows[rows.duplicated("Image Index", keep=False)]
    differ = repeated.groupby("Image Index")[["Patient ID", "Finding Labels"]].nunique()
    bad = differ[(differ > 1).any(axis=1)]
    if len(bad):
        name = bad.index[0]
        lines = [int(i) + 2 for i in repeated.index[repeated["Image Index"] == name]]
        raise DataError(f"{path}: image {name} has rows that disagree (lines "
                        f"{', '.join(map(str, lines[:3]))}: different patient or labels): keep "
                        "one row per image")


def plan_chestxray14(cfg: DataConfig) -> tuple[tuple[str, ...], dict[str, SplitPlan], dict]:
    root = require_root(cfg)
    csv_path = find_label_csv(root)
    train_val = _read_list(root / "train_val_list.txt")
    test = _read_list(root / "test_list.txt")
    tv_set, test_set = set(train_val), set(test)   # set lookups: pandas' isin is slow on strings
    both = sorted(tv_set & test_set)
    if both:
        raise DataError(f"{root}: {len(both)} image(s) are in both train_val_list.txt and "
                        f"test_list.txt (e.g. {both[0]}), so test images would leak into "
                        "training: list each image in one of them")
    df = read_csv(csv_path, usecols=lambda c: c in COLUMNS, dtype=str)
    require_columns(df, COLUMNS, csv_path, "is this NIH's Data_Entry_2017 file?")
    require_unique_header(csv_path, list(COLUMNS))
    _check_entries(df, tv_set | test_set, csv_path)
    df = df.drop_duplicates("Image Index").set_index("Image Index")

    names = df.index.to_numpy(dtype=object)
    split = np.array(["train" if n in tv_set else "test" if n in test_set else "" for n in names],
                     dtype=object)
    listed = split != ""
    df, names, split = df[listed], names[listed], split[listed]
    labels = parse_label_sets(df["Finding Labels"], FINDINGS, csv_path, "Finding Labels")

    files = index_files(image_folders(root))
    rows = pd.DataFrame({
        "image_id": names,
        "patient": [p.strip().lstrip("0") or "0" for p in df["Patient ID"].to_numpy(dtype=object)],
        "path": [files.get(n) for n in names],
        "split": split,
    })
    has_file = rows["path"].notna().to_numpy()
    in_tv = (rows["split"] == "train").to_numpy() & has_file
    to_val = carve(rows["patient"].to_numpy()[in_tv].astype(str), cfg.val_fraction,
                   cfg.split_seed, "chestxray14/val")
    rows.loc[np.flatnonzero(in_tv)[to_val], "split"] = "val"

    plans, notes = plan_splits(rows, labels, cfg, root, "chestxray14")
    n_test_files = int(((rows["split"] == "test").to_numpy() & has_file).sum())
    notes.update({
        "label_file": csv_path.name,
        "image_folders": sorted({str(Path(p).parent.relative_to(root))
                                 for p in rows["path"].dropna()}),
        "listed_images": {"train_val": len(train_val), "test": len(test)},
        "unlisted_csv_rows": int((~listed).sum()),
        "split_rule": f"val = {cfg.val_fraction:.0%} of train_val patients with images "
                      f"(seed {cfg.split_seed}); test = official test_list.txt",
    })
    if n_test_files == 0:
        notes["test_empty_reason"] = (f"none of the {len(test)} images of test_list.txt is "
                                      f"present under {root}")
    return FINDINGS, plans, notes
