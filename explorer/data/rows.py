"""Checks on the rows of a label file, before any split is planned from them.

Each one stops a file that would load, then fail at the end of a search or silently break a
guarantee: blank cells (a blank patient id becomes the patient ``nan``, and when every cell is
blank all images become one patient spread over train, validation and test), an image listed
twice (in two splits: test images leak into training), a column named twice, and paths that
leave ``data.root`` (refused unless ``data.allow_outside_root``).

Row numbers in messages are the file's line numbers (the header is line 1).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.errors import DataError


def _lines(index: np.ndarray, n: int = 3) -> str:
    shown = ", ".join(str(int(i) + 2) for i in index[:n])
    return f"line{'s' if len(index) > 1 else ''} {shown}" + (
        f" and {len(index) - n} more" if len(index) > n else "")


def require_filled(df: pd.DataFrame, columns: list[str], path: Path, what: str = "") -> None:
    """Every cell of ``columns`` holds something other than blanks."""
    for column in columns:
        cells = df[column]
        blank = cells.isna().to_numpy() | (cells.astype(str).str.strip() == "").to_numpy()
        if blank.any():
            where = np.flatnonzero(blank)
            every = " (every row)" if blank.all() else ""
            raise DataError(f"{path} column '{column}' is blank on {_lines(where)}{every}: "
                            f"fill in {what or 'those cells'} or remove those rows")


def require_unique_header(path: Path, columns: list[str]) -> None:
    """pandas renames a repeated column ``X`` to ``X.1``: the second one would be ignored."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return   # read_csv says what is wrong with the file
    header = [h.strip() for h in header]
    for column in columns:
        if header.count(column) > 1:
            raise DataError(f"{path}: the header names column '{column}' {header.count(column)} "
                            "times: rename or remove the extra ones")


def require_distinct(names: list[str], what: str) -> None:
    """A list setting (e.g. ``data.label_columns``) with no name twice."""
    seen = [n for i, n in enumerate(names) if n in names[:i]]
    if seen:
        raise DataError(f"{what} names '{seen[0]}' twice: a finding is one column")


def inside(root: Path, path: Path) -> bool:
    """``path`` is ``root`` or below it, judged on the path as written (``..`` resolved, links
    not followed: a linked image folder inside ``root`` is the user's choice)."""
    rel = os.path.relpath(os.path.normpath(path), os.path.normpath(root))
    return rel != ".." and not rel.startswith(".." + os.sep) and not os.path.isabs(rel)


def require_inside(root: Path, files: list[Path], listed: list[str], path: Path,
                   allowed: bool) -> None:
    """Refuse paths in the label file that leave ``root`` (absolute, or through ``..``)."""
    if allowed:
        return
    outside = [i for i, f in enumerate(files) if not inside(root, f)]
    if outside:
        i = outside[0]
        raise DataError(f"{path}: {len(outside)} image path(s) lead outside data.root {root} "
                        f"(e.g. {listed[i]!r}): fix the paths, or set "
                        "data.allow_outside_root: true if they are meant to")


def require_once(rows: pd.DataFrame, where: str) -> None:
    """No image file listed twice (``rows``: image_id, patient, path (None: no file), split).

    Paths are compared normalised, so two spellings of one file (``img/a.png``,
    ``./img//a.png``) count as the same image; links are not followed (a stat per row would
    cost seconds on the full NIH set at every start).
    """
    present = rows["path"].notna().to_numpy()
    real = pd.Series([os.path.normpath(p) for p in rows["path"][present]],
                     index=np.flatnonzero(present))
    repeated = real[real.duplicated(keep=False)]
    if repeated.empty:
        return
    first = repeated.index[0]
    other = repeated.index[(repeated == repeated.iloc[0]).to_numpy()][1]
    a, b = rows.iloc[first], rows.iloc[other]
    n = repeated.nunique()
    if a["split"] != b["split"]:
        problem = (f"in {a['split']} (patient {a['patient']}) and in {b['split']} (patient "
                   f"{b['patient']}), so it would leak from one split into the other")
    else:
        problem = f"twice in {a['split']} (as '{a['image_id']}' and '{b['image_id']}')"
    raise DataError(f"{where}: {n} image file(s) are listed more than once, e.g. "
                    f"{a['path']} {problem}: list each image once")
