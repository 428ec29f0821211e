"""Any folder of images plus a CSV (``source: csv``).

The CSV (``csv_file``, default: the only ``*.csv`` in ``root``) has a path column (relative
to ``root``) and labels as either one 0/1 column per finding (``label_columns``) or one
column of ``|``-separated names (``labels_column``, names from ``findings``, default
ChestX-ray14's). With neither set, the columns named like ChestX-ray14 findings are used.
``patient_column`` groups images (without it each image is its own patient); a
``split_column`` (train / val / test) fixes the splits, else test and val are carved out by
patients (``test_fraction``, then ``val_fraction`` of the rest).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.data.cache import SplitPlan
from explorer.data.config import DataConfig
from explorer.data.findings import FINDINGS
from explorer.data.rows import (
    require_distinct,
    require_filled,
    require_inside,
    require_unique_header,
)
from explorer.data.splits import carve
from explorer.data.tabular import (
    parse_label_sets,
    plan_splits,
    read_csv,
    require_columns,
    require_root,
)
from explorer.errors import DataError

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test"}


def find_csv(root: Path, cfg: DataConfig) -> Path:
    if cfg.csv_file is not None:
        path = Path(cfg.csv_file).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "is not a file" if path.exists() \
                else "is missing"
            raise DataError(f"label file {path} {what}: fix data.csv_file")
        return path
    found = sorted(p for p in root.glob("*.csv") if p.is_file())
    if len(found) != 1:
        what = "no *.csv" if not found else f"several CSVs ({[p.name for p in found]})"
        raise DataError(f"{what} in {root}: set data.csv_file")
    return found[0]


def _labels(df: pd.DataFrame, cfg: DataConfig, path: Path) -> tuple[tuple[str, ...], np.ndarray]:
    if cfg.labels_column is not None:
        require_columns(df, [cfg.labels_column], path, "fix data.labels_column")
        require_distinct(cfg.findings or [], "data.findings")
        vocabulary = tuple(cfg.findings) if cfg.findings else FINDINGS
        hint = "declare your names in data.findings" if not cfg.findings else "fix data.findings"
        return vocabulary, parse_label_sets(df[cfg.labels_column], vocabulary, path,
                                            cfg.labels_column, hint)
    columns = cfg.label_columns
    if columns is not None and not columns:
        raise DataError("data.label_columns is an empty list: name the 0/1 finding columns, or "
                        "set it to null to use the ChestX-ray14 finding names found in the file")
    require_distinct(columns or [], "data.label_columns")
    if columns is None:
        columns = [f for f in FINDINGS if f in df.columns]
        if not columns:
            raise DataError(f"{path} has no ChestX-ray14 finding columns (it has "
                            f"{list(df.columns)}): set data.label_columns or data.labels_column")
    require_columns(df, columns, path, "fix data.label_columns")
    out = np.zeros((len(df), len(columns)), np.float32)
    for j, name in enumerate(columns):
        v = pd.to_numeric(df[name], errors="coerce")
        if v.isna().any() or not v.isin([0, 1]).all():
            raise DataError(f"{path} column '{name}' must hold only 0 or 1 (row "
                            f"{int(np.flatnonzero(~v.isin([0, 1]).to_numpy())[0]) + 2}): fix "
                            f"the file or data.label_columns")
        out[:, j] = v.to_numpy()
    return tuple(columns), out


def plan_csv(cfg: DataConfig) -> tuple[tuple[str, ...], dict[str, SplitPlan], dict]:
    root = require_root(cfg)
    if not root.is_dir():
        raise DataError(f"data root {root} is not a folder: point data.root at the image folder")
    path = find_csv(root, cfg)
    df = read_csv(path, dtype={c: str for c in (cfg.path_column, cfg.patient_column,
                                                cfg.split_column) if c})
    require_columns(df, [cfg.path_column], path, "fix data.path_column")
    keys = [k for k in ("patient_column", "split_column") if getattr(cfg, k) is not None]
    for key in keys:
        require_columns(df, [getattr(cfg, key)], path, f"fix data.{key}")
    findings, labels = _labels(df, cfg, path)
    identity = [cfg.path_column, *(getattr(cfg, k) for k in keys)]
    require_unique_header(path, [*identity, *([cfg.labels_column] if cfg.labels_column
                                               else findings)])
    require_filled(df, identity, path)

    rel = df[cfg.path_column].astype(str).str.strip()
    files = [root / r for r in rel]
    require_inside(root, files, rel.tolist(), path, cfg.allow_outside_root)
    patient = df[cfg.patient_column].astype(str) if cfg.patient_column else rel
    rows = pd.DataFrame({
        "image_id": rel.to_numpy(),
        "patient": patient.to_numpy(),
        "path": [str(f) if os.path.isfile(f) else None for f in files],
        "split": "train",
    })
    has_file = rows["path"].notna().to_numpy()
    if cfg.split_column:
        raw = df[cfg.split_column].astype(str).str.strip().str.lower()
        unknown = sorted(set(raw) - set(SPLIT_NAMES))
        if unknown:
            raise DataError(f"{path} column '{cfg.split_column}' has values {unknown}; valid: "
                            f"train, val (valid, validation), test: fix the file")
        rows["split"] = raw.map(SPLIT_NAMES).to_numpy()
        rule = f"from column '{cfg.split_column}'"
    else:
        pats = rows["patient"].to_numpy()
        to_test = carve(pats[has_file], cfg.test_fraction, cfg.split_seed, "csv/test")
        rows.loc[np.flatnonzero(has_file)[to_test], "split"] = "test"
        rest = has_file & (rows["split"] == "train").to_numpy()
        to_val = carve(pats[rest], cfg.val_fraction, cfg.split_seed, "csv/val")
        rows.loc[np.flatnonzero(rest)[to_val], "split"] = "val"
        rule = (f"test = {cfg.test_fraction:.0%} of patients, val = {cfg.val_fraction:.0%} of "
                f"the rest (seed {cfg.split_seed})")
    plans, notes = plan_splits(rows, labels, cfg, root, f"csv {path.name}")
    notes.update({"label_file": path.name, "split_rule": rule})
    if not cfg.patient_column:
        notes["patient_ids"] = ("no patient column: each image is its own patient, so splits "
                                "and bootstraps cannot group a patient's images")
    return findings, plans, notes
