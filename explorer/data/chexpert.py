"""CheXpert v1.0 (full or ``-small``): the 5 competition findings, frontal views.

``root`` is the ``CheXpert-v1.0-small`` folder itself or the folder above it. CSV paths
(``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``) are resolved against
the data folder whatever it is called. Labels: 1 positive, 0 or blank negative, -1
uncertain -> ``cfg.uncertainty`` (default: U-Ones for Atelectasis and Edema, U-Zeros for the
rest, as in the study). Train is split into train and val by patients; the official
``valid.csv`` (the test set proper is not public) is the test split.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from explorer.data.cache import SplitPlan
from explorer.data.config import DataConfig
from explorer.data.findings import CHEXPERT_FINDINGS
from explorer.data.rows import require_filled, require_inside, require_unique_header
from explorer.data.splits import carve
from explorer.data.tabular import plan_splits, read_csv, require_columns, require_root
from explorer.errors import DataError

SPLIT_DIRS = ("train", "valid", "test")


def find_data_dir(root: Path) -> Path:
    """The folder holding train.csv: ``root`` itself or one ``CheXpert*`` folder below it."""
    if (root / "train.csv").is_file() or (root / "valid.csv").is_file():
        return root
    below = sorted(p.parent for p in root.glob("*/train.csv"))
    preferred = [p for p in below if p.name.lower().startswith("chexpert")]
    if len(preferred or below) == 1:
        return (preferred or below)[0]
    if not below:
        raise DataError(f"no CheXpert train.csv in {root} or its subfolders: set data.root to "
                        f"the CheXpert-v1.0-small folder (or the folder above it)")
    raise DataError(f"several CheXpert folders under {root} ({[p.name for p in below]}): "
                    f"set data.root to the one to use")


def resolve(data_dir: Path, rel: str) -> Path:
    """CSV path -> file: drop the data folder's own name, which users often rename."""
    parts = PurePosixPath(rel.replace("\\", "/")).parts
    if parts and parts[0] not in SPLIT_DIRS:
        parts = parts[1:]
    return data_dir.joinpath(*parts)


def _labels(df: pd.DataFrame, cfg: DataConfig, path: Path) -> np.ndarray:
    out = np.zeros((len(df), len(CHEXPERT_FINDINGS)), np.float32)
    for j, name in enumerate(CHEXPERT_FINDINGS):
        v = pd.to_numeric(df[name], errors="coerce")
        bad = v.notna() & ~v.isin([1, 0, -1])
        if df[name].notna().to_numpy().sum() != v.notna().to_numpy().sum() or bad.any():
            raise DataError(f"{path} column '{name}' holds values other than 1, 0, -1 or blank: "
                            f"fix the file")
        uncertain = 1.0 if cfg.uncertainty[name] == "ones" else 0.0
        out[:, j] = np.where(v.to_numpy() == -1, uncertain, np.nan_to_num(v.to_numpy(), nan=0.0))
    return out


def _read(data_dir: Path, name: str, cfg: DataConfig) -> tuple[pd.DataFrame, np.ndarray]:
    path = data_dir / name
    if not path.is_file():
        raise DataError(f"CheXpert file {path} is missing: put {name} there or fix data.root")
    df = read_csv(path)
    needed = ["Path", *CHEXPERT_FINDINGS] + (["Frontal/Lateral"] if cfg.frontal_only else [])
    require_columns(df, needed, path, "is this a CheXpert train.csv / valid.csv?")
    require_unique_header(path, needed)
    require_filled(df, ["Path"], path, "the image paths")
    if cfg.frontal_only:
        df = df[df["Frontal/Lateral"].astype(str).str.lower() == "frontal"]
    df = df.reset_index(drop=True)
    return df, _labels(df, cfg, path)


def plan_chexpert(cfg: DataConfig) -> tuple[tuple[str, ...], dict[str, SplitPlan], dict]:
    data_dir = find_data_dir(require_root(cfg))
    frames, labels = [], []
    for name, split in (("train.csv", "train"), ("valid.csv", "test")):
        df, lab = _read(data_dir, name, cfg)
        files = [resolve(data_dir, p) for p in df["Path"].astype(str)]
        require_inside(data_dir, files, df["Path"].astype(str).tolist(), data_dir / name,
                       cfg.allow_outside_root)
        frames.append(pd.DataFrame({
            "image_id": ["/".join(PurePosixPath(str(p)).parts[-4:]) for p in df["Path"]],
            # .../<split>/<patient>/<study>/<view>.jpg: the patient is the third part from the end
            "patient": [f.parts[-3] if len(f.parts) >= 3 else str(f) for f in files],
            "path": [str(f) if os.path.isfile(f) else None for f in files],
            "split": split,
        }))
        labels.append(lab)
    rows = pd.concat(frames, ignore_index=True)
    lab = np.concatenate(labels)
    in_train = ((rows["split"] == "train") & rows["path"].notna()).to_numpy()
    to_val = carve(rows["patient"].to_numpy()[in_train], cfg.val_fraction, cfg.split_seed,
                   "chexpert/val")
    rows.loc[np.flatnonzero(in_train)[to_val], "split"] = "val"
    plans, notes = plan_splits(rows, lab, cfg, data_dir, "chexpert")
    notes.update({
        "data_dir": str(data_dir),
        "uncertainty": {f: f"U-{cfg.uncertainty[f].capitalize()}" for f in CHEXPERT_FINDINGS},
        "blank_labels": "negative",
        "views": "frontal only" if cfg.frontal_only else "frontal and lateral",
        "split_rule": f"val = {cfg.val_fraction:.0%} of train.csv patients (seed "
                      f"{cfg.split_seed}); test = the official valid.csv (CheXpert's test set "
                      f"is not public)",
    })
    return CHEXPERT_FINDINGS, plans, notes
