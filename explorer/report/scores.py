"""The data step's core: each model's predictions joined with the labels, the patient-bootstrap
summary of every (trial, split), and the ranking of trials by validation mean AUC.

The statistics are recomputed from ``predictions.parquet`` + ``labels.parquet`` with
``explorer.metrics``, never copied from the trials table, so a reader can reproduce every
interval with pandas.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from explorer.errors import UserError
from explorer.metrics import AucSummary, bootstrap_auc
from explorer.report._format import is_missing
from explorer.results import PARAM_PREFIX, Results

LEVEL = 0.95


class Scores(NamedTuple):
    """One model's predictions on one split, aligned with the labels (rows sorted by image)."""

    image_ids: np.ndarray  # [N] str
    patient_ids: np.ndarray  # [N] str
    y_true: np.ndarray  # [N, C] int 0/1, columns in ``results.findings`` order
    y_score: np.ndarray  # [N, C] float


class Evaluation(NamedTuple):
    """Bootstrap summaries of every (trial, split) that has predictions."""

    summaries: dict[tuple[str, str], AucSummary]
    n_resamples: int
    seed: int
    level: float

    def get(self, trial_id: str, split: str) -> AucSummary | None:
        return self.summaries.get((trial_id, split))


def _check_columns(df: pd.DataFrame, table: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UserError(f"{table}.parquet: missing column {missing[0]!r} (meta.json findings "
                        f"and the tables disagree; rebuild the results store)")


def model_scores(results: Results, trial_id: str, split: str) -> Scores | None:
    """Predictions of ``trial_id`` on ``split`` joined with the labels; None if it has none."""
    preds = results.predictions
    if preds.empty:
        return None
    rows = preds[(preds["trial_id"] == trial_id) & (preds["split"] == split)]
    if rows.empty:
        return None
    findings = results.findings
    _check_columns(rows, "predictions", ["image_id", *findings])
    labels = results.labels
    _check_columns(labels, "labels", ["split", "image_id", "patient_id", *findings])
    labels = labels[labels["split"] == split]
    merged = rows[["image_id", *findings]].merge(
        labels[["image_id", "patient_id", *findings]], on="image_id", how="left",
        suffixes=("", "__label"), validate="one_to_one", indicator=True)
    unlabelled = merged["_merge"] != "both"
    if unlabelled.any():
        first = merged.loc[unlabelled, "image_id"].iloc[0]
        raise UserError(f"predictions.parquet: trial {trial_id} has {int(unlabelled.sum())} "
                        f"{split} image(s) missing from labels.parquet (first: {first})")
    merged = merged.sort_values("image_id", kind="stable")
    return Scores(
        image_ids=merged["image_id"].astype(str).to_numpy(),
        patient_ids=merged["patient_id"].astype(str).to_numpy(),
        y_true=merged[[f"{f}__label" for f in findings]].to_numpy(dtype=np.int64),
        y_score=merged[findings].to_numpy(dtype=np.float64),
    )


def evaluate(results: Results, *, n_resamples: int = 2000, seed: int = 0,
             level: float = LEVEL) -> Evaluation:
    """``bootstrap_auc`` (patients resampled) of every trial and split with predictions."""
    summaries = {}
    if not results.predictions.empty:
        pairs = results.predictions[["trial_id", "split"]].drop_duplicates()
        for trial_id, split in pairs.itertuples(index=False):
            s = model_scores(results, trial_id, split)
            summaries[(trial_id, split)] = bootstrap_auc(
                s.y_true, s.y_score, s.patient_ids, results.findings,
                n_resamples=n_resamples, seed=seed, level=level)
    return Evaluation(summaries, n_resamples, seed, level)


def trial_params(row: pd.Series | dict) -> dict[str, object]:
    """``{dotted.path: value}`` of a trials-table row (missing values as None)."""
    return {k[len(PARAM_PREFIX):]: (None if is_missing(v) else _plain(v))
            for k, v in dict(row).items() if k.startswith(PARAM_PREFIX)}


def _plain(v):
    """numpy scalars to Python ones (so ``fmt_value`` and JSON see ints and floats)."""
    return v.item() if isinstance(v, np.generic) else v


def val_score(evaluation: Evaluation, row) -> float:
    """A trial's validation mean AUC: recomputed from predictions, else the trials table's."""
    s = evaluation.get(row["trial_id"], "val")
    if s is not None:
        return s.mean
    v = row.get("val_mean_auc")
    return float("nan") if is_missing(v) else float(v)


def ranked_trials(results: Results, evaluation: Evaluation) -> pd.DataFrame:
    """The trials table sorted by validation mean AUC (best first, no score last, then label)."""
    t = results.trials.copy()
    if t.empty:
        return t
    t["_val"] = [val_score(evaluation, r) for _, r in t.iterrows()]
    t["_nan"] = t["_val"].isna()
    t = t.sort_values(["_nan", "_val", "label"], ascending=[True, False, True], kind="stable")
    return t.drop(columns=["_nan"]).reset_index(drop=True)


def best_trial(ranked: pd.DataFrame, evaluation: Evaluation, kind: str, arch: str | None = None,
               prefer_split: str = "test") -> pd.Series | None:
    """Best trial of ``kind`` (and ``arch``) with validation predictions, by validation mean AUC.

    Among those scored on ``prefer_split`` (the finalists) when any is, so the choice is still
    made on validation but the comparison can use the test split.
    """
    if ranked.empty:
        return None
    has_val = [evaluation.get(t, "val") is not None for t in ranked["trial_id"]]
    pool = ranked[(ranked["kind"] == kind) & np.asarray(has_val, dtype=bool)]
    if arch is not None:
        pool = pool[pool["arch"] == arch]
    scored = pool[[evaluation.get(t, prefer_split) is not None for t in pool["trial_id"]]]
    pool = scored if len(scored) else pool
    return None if pool.empty else pool.iloc[0]


def data_source(meta: dict) -> str | None:
    data = meta.get("data")
    src = data.get("source") if isinstance(data, dict) else None
    return src or meta.get("source")
