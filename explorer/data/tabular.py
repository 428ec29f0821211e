"""Shared steps of the file-based sources: check inputs, parse labels, assemble split plans.

Each source turns its own layout into one table of rows (image id, patient, file path,
labels, split); ``plan_splits`` then drops rows without a file, applies the caps and builds
the ``SplitPlan``s the cache decodes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.data.bundle import SPLITS
from explorer.data.cache import SplitPlan, file_signature
from explorer.data.config import DataConfig
from explorer.data.findings import NO_FINDING
from explorer.data.rows import require_once
from explorer.data.splits import cap
from explorer.errors import DataError, error_line


def require_root(cfg: DataConfig) -> Path:
    if cfg.root is None or not cfg.root.strip():
        raise DataError(f"data.root is not set for source '{cfg.source}': "
                        f"set data.root (--set data.root=/path/to/data)")
    root = Path(cfg.root).expanduser()
    try:
        if not root.exists():
            raise DataError(f"data root {root} does not exist: fix data.root")
        return root.resolve(strict=True)
    except (OSError, RuntimeError) as e:   # a name too long, a link loop, no permission
        raise DataError(f"data root {root} cannot be used ({getattr(e, 'strerror', None) or e})"
                        f": fix data.root") from None


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{what} {path} is missing: put it there or fix data.root")
    return path


def read_csv(path: Path, **kw) -> pd.DataFrame:
    if not path.is_file():   # a folder or a pipe named like the file: reading would fail or hang
        raise DataError(f"{path} is not a file: point at the label file itself")
    try:
        return pd.read_csv(path, **kw)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not a readable CSV ({error_line(e, limit=10**6)}): "
                        f"fix or replace the file") from None
    except OSError as e:
        raise DataError(f"{path} cannot be read ({e.strerror or e}): fix its permissions or "
                        "replace it") from None


def require_columns(df: pd.DataFrame, columns: Iterable[str], path: Path, hint: str = "") -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path} has no column(s) {missing} (it has {list(df.columns)})"
                        + (f": {hint}" if hint else ""))


def parse_label_sets(values: pd.Series, vocabulary: tuple[str, ...], path: Path,
                     column: str, hint: str = "") -> np.ndarray:
    """'|'-separated names (``No Finding`` or blank: none) -> float32 [N, len(vocabulary)]."""
    index = {f: j for j, f in enumerate(vocabulary)}
    values = values.fillna("").astype(str)
    uniq, inverse = np.unique(values.to_numpy(), return_inverse=True)   # ~800 sets for NIH
    table = np.zeros((len(uniq), len(vocabulary)), np.float32)
    unknown: set[str] = set()
    for i, s in enumerate(uniq):
        for name in (n.strip() for n in s.split("|")):
            if not name or name == NO_FINDING:
                continue
            if name in index:
                table[i, index[name]] = 1.0
            else:
                unknown.add(name)
    if unknown:
        raise DataError(f"{path} column '{column}' names unknown findings {sorted(unknown)}; "
                        f"valid: {list(vocabulary)}" + (f" ({hint})" if hint else ""))
    return table[inverse.reshape(-1)]


def index_files(folders: Iterable[Path]) -> dict[str, str]:
    """File name -> absolute path for every regular file directly inside ``folders``."""
    found: dict[str, str] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    if _is_file(entry):
                        found.setdefault(entry.name, entry.path)
        except OSError as e:
            raise DataError(f"image folder {folder} cannot be listed ({e.strerror or e}): fix "
                            "its permissions") from None
    return found


def _is_file(entry: os.DirEntry) -> bool:
    """A regular file (through links); not a folder, a pipe, or a link loop (which raises)."""
    try:
        return entry.is_file()
    except OSError:
        return False


def check_disjoint(patients: dict[str, np.ndarray], where: str) -> None:
    names = [s for s in SPLITS if s in patients]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = np.intersect1d(patients[a], patients[b])
            if both.size:
                raise DataError(
                    f"{where}: {both.size} patient(s) appear in both {a} and {b} "
                    f"(e.g. {both[0]}); splits must be patient-disjoint: fix the split assignment")


def plan_splits(rows: pd.DataFrame, labels: np.ndarray, cfg: DataConfig, root: Path,
                where: str) -> tuple[dict[str, SplitPlan], dict]:
    """Plans for train/val/test from ``rows`` (columns image_id, patient, path (absolute or
    None when the file is missing), split) and labels float32 [N, C].

    Missing files are counted in ``notes["rows_without_file"]`` (not fatal; ``load_data`` warns
    once the data stands); an empty train or val split is.
    """
    present = rows["path"].notna().to_numpy()
    missing = int((~present).sum())
    notes: dict = {"rows_without_file": missing, "planned_images": {}}
    require_once(rows, where)
    check_disjoint({s: rows.loc[present & (rows["split"] == s).to_numpy(), "patient"].unique()
                    for s in SPLITS}, where)
    plans = {}
    for split in SPLITS:
        sel = present & (rows["split"] == split).to_numpy()
        patients = rows["patient"].to_numpy()[sel].astype(str)
        keep = cap(patients, getattr(cfg.images, split), cfg.split_seed, f"{where}/cap/{split}")
        idx = np.flatnonzero(sel)[keep]
        if idx.size == 0 and split != "test" and cfg.source == "csv" and cfg.split_column \
                and not (rows["split"] == split).any():
            raise DataError(
                f"{where}: the {split} split is empty (no row has '{split}' in column "
                f"'{cfg.split_column}'): assign some patients to it, or unset "
                f"data.split_column to carve the splits by patients")
        if idx.size == 0 and split != "test":
            raise DataError(
                f"{where}: the {split} split is empty ({int(sel.sum())} images with a file; "
                f"{missing} labelled images have no file under {root}): put the images there "
                f"or fix data.root")
        paths = rows["path"].to_numpy()[idx].tolist()
        sigs = [file_signature(p, os.path.relpath(p, root)) for p in paths]
        plans[split] = SplitPlan(
            name=split, labels=np.ascontiguousarray(labels[idx], np.float32),
            image_ids=rows["image_id"].to_numpy()[idx].astype(str),
            patient_ids=rows["patient"].to_numpy()[idx].astype(str),
            key={"files": sigs}, paths=paths)
        notes["planned_images"][split] = int(idx.size)
    return plans, notes
