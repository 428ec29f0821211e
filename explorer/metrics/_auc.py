"""Per-class ROC AUC that names the classes without one, and why (never a silent 0).

A class with no positive (or no negative) image in a split has no ROC curve, so it has no AUC.
The original study turned that error into 0 and then quietly left the class out of the mean;
here it is NaN, ``defined`` is False, ``reason`` says why, and the mean says which classes it
left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

NO_IMAGES = "no images"
NO_POSITIVE = "no positive case"
NO_NEGATIVE = "no negative case"


def check_labels(y_true, findings: Sequence[str] | None = None) -> np.ndarray:
    """Validate labels ``[N, C]`` of 0/1 and return them as a bool array of the same shape."""
    y = np.asarray(y_true)
    if y.ndim != 2:
        raise ValueError(f"y_true must be a 2-D [images, findings] array, got shape {y.shape}")
    if findings is not None and len(findings) != y.shape[1]:
        raise ValueError(f"{len(findings)} findings named for {y.shape[1]} label columns")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        raise ValueError(f"y_true must hold only 0/1, found {y[bad].flat[0]!r}")
    return y.astype(bool)


def check_scores(y_true, y_score, findings: Sequence[str] | None = None):
    """Validate labels and scores of the same ``[N, C]`` shape; return ``(bool labels, floats)``."""
    y = check_labels(y_true, findings)
    s = np.asarray(y_score, dtype=np.float64)
    if s.shape != y.shape:
        raise ValueError(f"y_score has shape {s.shape}, y_true has shape {y.shape}")
    finite = np.isfinite(s).all(axis=0)
    if not finite.all():
        column = int(np.flatnonzero(~finite)[0])
        name = findings[column] if findings is not None else f"column {column}"
        raise ValueError(f"y_score has NaN or infinite values for {name}")
    return y, s


def undefined_reasons(y: np.ndarray) -> list[str | None]:
    """Why each class of bool labels ``[N, C]`` has no AUC (None where it has one)."""
    positives = y.sum(axis=0)
    reasons: list[str | None] = []
    for pos in positives:
        if len(y) == 0:
            reasons.append(NO_IMAGES)
        elif pos == 0:
            reasons.append(NO_POSITIVE)
        elif pos == len(y):
            reasons.append(NO_NEGATIVE)
        else:
            reasons.append(None)
    return reasons


def per_class_auc(y_true, y_score, findings: Sequence[str]) -> pd.DataFrame:
    """ROC AUC of each finding, NaN with a reason where it is undefined.

    Args:
        y_true: ``[N, C]`` labels in {0, 1}.
        y_score: ``[N, C]`` scores (probabilities or logits: only their order matters).
        findings: the ``C`` finding names, in column order.

    Returns:
        One row per finding: ``finding`` str, ``auc`` float (``sklearn.metrics.roc_auc_score``,
        NaN when undefined), ``positives`` int, ``negatives`` int, ``defined`` bool, ``reason``
        (None, ``"no positive case"``, ``"no negative case"`` or ``"no images"``).
    """
    y, s = check_scores(y_true, y_score, findings)
    reasons = undefined_reasons(y)
    aucs = [
        float(roc_auc_score(y[:, c], s[:, c])) if reason is None else np.nan
        for c, reason in enumerate(reasons)
    ]
    positives = y.sum(axis=0).astype(np.int64)
    return pd.DataFrame(
        {
            "finding": pd.Series([str(f) for f in findings], dtype=object),
            "auc": np.asarray(aucs, dtype=np.float64),
            "positives": positives,
            "negatives": len(y) - positives,
            "defined": np.asarray([r is None for r in reasons], dtype=bool),
            # object dtype keeps None as None (pandas 3 would turn it into NaN in a str column).
            "reason": pd.Series(reasons, dtype=object),
        }
    )


def mean_auc(y_true, y_score) -> float:
    """Mean ROC AUC over the classes where it is defined; NaN if no class has one.

    Which classes were left out is given by :func:`undefined_classes`.
    """
    y, _ = check_scores(y_true, y_score)
    table = per_class_auc(y_true, y_score, [str(c) for c in range(y.shape[1])])
    defined = table["auc"][table["defined"]]
    return float(defined.mean()) if len(defined) else float("nan")


def undefined_classes(y_true, findings: Sequence[str]) -> list[tuple[str, str]]:
    """``(finding, reason)`` for every class of ``y_true [N, C]`` that has no AUC."""
    y = check_labels(y_true, findings)
    return [
        (str(name), reason)
        for name, reason in zip(findings, undefined_reasons(y))
        if reason is not None
    ]
