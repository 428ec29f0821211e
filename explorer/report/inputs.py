"""The report's inputs, checked before any section is computed: a damaged results store (a
truncated table, a missing or mistyped column, junk ``meta.json``) is one line naming the file,
never a traceback from deep inside a figure.

Tables may be absent (a search without pre-training has no encoder tables, the report shows
what there is); a table that is present must be readable Parquet with the columns below, of
the kind below. The schema is the one ``explorer.results`` documents.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from explorer.errors import UserError
from explorer.results import PARAM_PREFIX, STATUSES, TABLES, Results, results_dir

NUM, TEXT, BYTES = "numbers", "text", "bytes"
#: Stricter kinds for the arrays every AUC is computed from.
FINITE, BINARY = "finite numbers", "only 0 and 1"
#: Columns that name things: a blank one cannot be joined or sorted.
KEYS = ("trial_id", "split", "image_id", "patient_id", "pretrain_key")
#: table -> {column: kind}; every column listed is required when the table is present.
SCHEMA: dict[str, dict[str, str]] = {
    "trials": {"trial_id": TEXT, "kind": TEXT, "label": TEXT, "arch": TEXT, "status": TEXT,
               "epochs_run": NUM, "epochs_planned": NUM, "best_epoch": NUM, "seed": NUM},
    "epochs": {"trial_id": TEXT, "epoch": NUM, "val_mean_auc": NUM},
    "classes": {},
    "predictions": {"trial_id": TEXT, "split": TEXT, "image_id": TEXT},
    "labels": {"split": TEXT, "image_id": TEXT, "patient_id": TEXT},
    "encoders": {"pretrain_key": TEXT},
    "encoder_epochs": {"pretrain_key": TEXT, "epoch": NUM, "loss": NUM},
    "reconstructions": {"pretrain_key": TEXT, "image_id": TEXT, "panel": TEXT, "png": BYTES},
}
#: Optional columns: checked for their kind when present.
OPTIONAL = {"trials": {"val_mean_auc": NUM, "test_mean_auc": NUM, "wall_time_s": NUM},
            "epochs": {"train_loss": NUM, "lr": NUM, "epoch_time_s": NUM}}
#: Rows a table holds once: a repeated one would double an image in every AUC.
UNIQUE = {"predictions": ["trial_id", "split", "image_id"], "labels": ["split", "image_id"],
          "trials": ["trial_id"]}
ENUMS = {("trials", "kind"): ("recipe", "baseline"), ("trials", "status"): STATUSES}


def _is_space(space: object) -> bool:
    if not isinstance(space, dict):
        return False
    if space.get("type") == "categorical":
        return isinstance(space.get("choices"), list)
    return space.get("type") in ("float", "int") and all(
        isinstance(space.get(k), (int, float)) and not isinstance(space.get(k), bool)
        for k in ("low", "high"))


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e}): the results store is damaged; rebuild "
                        "it (run the search again with --resume)") from None
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    findings = meta.get("findings")
    if not isinstance(findings, list) or not findings or \
            not all(isinstance(f, str) for f in findings):
        raise UserError(f"{path}: 'findings' must be a non-empty list of names, got "
                        f"{findings!r}"[:300])
    if len(set(findings)) != len(findings):
        raise UserError(f"{path}: 'findings' names a finding twice")
    for key, kind in (("searched", dict), ("spec", dict), ("data", dict), ("name", str),
                      ("scale", str)):
        if key in meta and meta[key] is not None and not isinstance(meta[key], kind):
            raise UserError(f"{path}: '{key}' must be {'a mapping' if kind is dict else 'text'}"
                            f", got {type(meta[key]).__name__}")
    searched = meta.get("searched")
    if not isinstance(searched, dict) or not all(_is_space(v) for v in searched.values()):
        raise UserError(f"{path}: 'searched' must map each searched parameter to its space "
                        "(type float/int with numbers low and high, or categorical with a list "
                        f"of choices), got {searched!r}"[:400])
    return meta


def _kind_ok(values: pd.Series, kind: str) -> bool:
    if kind == NUM:
        return pd.api.types.is_numeric_dtype(values) or values.isna().all()
    if kind in (FINITE, BINARY):
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            return False
        array = values.to_numpy(dtype=float)
        return bool(np.isfinite(array).all() and (kind == FINITE or np.isin(array, (0, 1)).all()))
    cls = str if kind == TEXT else bytes
    return values.dropna().map(lambda v: isinstance(v, cls)).all()


def _odd_value(values: pd.Series, kind: str) -> object:
    """A value that breaks ``kind``, to show in the message."""
    if kind in (FINITE, BINARY) and pd.api.types.is_numeric_dtype(values):
        array = values.to_numpy(dtype=float)
        bad = ~np.isfinite(array) | (~np.isin(array, (0, 1)) if kind == BINARY else False)
        return array[bad][0].item() if bad.any() else None
    present = values.dropna()
    return present.iloc[0] if len(present) else None


def _expected(name: str, df: pd.DataFrame, meta: dict) -> dict[str, str]:
    """{column: kind} that table ``name`` must hold (optional columns only when present)."""
    columns = dict(SCHEMA[name])
    if name in ("predictions", "labels"):
        columns.update({f: FINITE if name == "predictions" else BINARY
                        for f in meta["findings"]})
    if name == "trials":
        for param, space in meta["searched"].items():
            if space.get("type") in ("float", "int") and PARAM_PREFIX + param in df.columns:
                columns[PARAM_PREFIX + param] = NUM   # absent: a parameter no trial reached
    columns.update({c: k for c, k in OPTIONAL.get(name, {}).items() if c in df.columns})
    return columns


def _check_column(df: pd.DataFrame, column: str, kind: str, path: Path) -> None:
    if column not in df.columns:
        raise UserError(f"{path}: no column '{column}': the results store is damaged or from "
                        "another version; rebuild it (run the search again with --resume)")
    if not _kind_ok(df[column], kind):
        raise UserError(f"{path}: column '{column}' should hold {kind}, but holds "
                        f"{df[column].dtype} values such as {_odd_value(df[column], kind)!r}"
                        [:300] + ": the results store is damaged; rebuild it")
    if column in KEYS and df[column].isna().any():
        raise UserError(f"{path}: column '{column}' is blank in {int(df[column].isna().sum())} "
                        "row(s): the results store is damaged; rebuild it")
    allowed = ENUMS.get((path.stem, column))
    bad = sorted(set(df[column].dropna()) - set(allowed)) if allowed else []
    if bad:
        raise UserError(f"{path}: column '{column}' holds {bad[0]!r}; expected one of "
                        f"{', '.join(allowed)}")


def _check_table(name: str, df: pd.DataFrame, path: Path, meta: dict) -> None:
    for column, kind in _expected(name, df, meta).items():
        _check_column(df, column, kind, path)
    keys = UNIQUE.get(name)
    if keys and df.duplicated(keys).any():
        row = df[df.duplicated(keys)].iloc[0]
        raise UserError(f"{path}: a row for " + ", ".join(f"{k} {row[k]!r}" for k in keys)
                        + " appears more than once: the results store is damaged; rebuild it")


def load_checked(run_dir: str | Path) -> Results:
    """``explorer.results.load_results`` with every table and ``meta.json`` checked."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"{run_dir}: no results here ("
                        + ("a file, not" if run.exists() else "no such folder; expected")
                        + " a search's run folder, holding results/)")
    src = results_dir(run)
    if not (src / "meta.json").is_file():
        raise UserError(f"{run_dir}: no results here (expected {src / 'meta.json'})")
    meta = _read_meta(src / "meta.json")
    frames = {}
    for name in TABLES:
        path = src / f"{name}.parquet"
        if not path.exists():
            frames[name] = pd.DataFrame()
            continue
        if not path.is_file():
            raise UserError(f"{path}: not a file: the results store is damaged")
        try:
            frames[name] = pd.read_parquet(path)
        except (OSError, ValueError, pa.ArrowException) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UserError(f"{path}: not a readable Parquet table ({type(e).__name__}: "
                            f"{first}): the file is damaged; rebuild it (run the search again "
                            "with --resume)") from None
        if len(frames[name]):  # a table with no rows (no epochs before a crash, no
            _check_table(name, frames[name], path, meta)  # encoders) may hold no columns
    return Results(meta=meta, **frames)
