"""DeLong's test for two correlated ROC AUCs measured on the same images.

DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44:837-845. Each positive image i gets the
structural component V10_i = fraction of negatives scored below it (ties count 1/2), each
negative j gets V01_j = fraction of positives scored above it; the AUC is the mean of either.
With S10, S01 the sample covariance matrices (over images, ddof=1) of these components across
models, Cov(AUC) = S10 / m + S01 / n for m positives and n negatives.

The components come from midranks in O(N log N) (Sun & Xu 2014, IEEE Signal Processing Letters
21:1389-1393): for a positive, V10 = (midrank among all - midrank among positives) / n; for a
negative, V01 = 1 - (midrank among all - midrank among negatives) / m. Midranks give ties 1/2.

DeLong treats images as independent. With several images per patient its standard error is
too small; the patient bootstrap in ``paired_comparison`` is the clustering-aware check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata


@dataclass(frozen=True)
class DeLongResult:
    """Model A against model B on the same images: AUCs, their difference and its test."""

    auc_a: float
    auc_b: float
    delta: float  # auc_a - auc_b
    se: float  # DeLong standard error of delta; NaN with fewer than 2 positives or negatives
    z: float  # delta / se
    p_value: float  # two-sided, normal approximation


def delong_covariance(y_true_1d, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs ``[K]`` of ``K`` models and DeLong's covariance matrix ``[K, K]`` of those AUCs.

    Args:
        y_true_1d: ``[N]`` labels in {0, 1}, with at least one of each.
        scores: ``[K, N]`` (or ``[N]`` for one model) finite scores on the same images.

    Returns:
        ``(aucs, cov)``; ``cov`` is all NaN when there are fewer than 2 positives or 2 negatives
        (a sample covariance needs two observations).
    """
    y = np.asarray(y_true_1d)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise ValueError("y_true_1d must be a 1-D array of 0/1 labels")
    y = y.astype(bool)
    x = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if x.shape[1] != len(y):
        raise ValueError(f"scores have {x.shape[1]} images, labels have {len(y)}")
    if not np.isfinite(x).all():
        raise ValueError("scores contain NaN or infinite values")
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        raise ValueError(f"AUC is undefined with {m} positives and {n} negatives")
    rank_all = rankdata(x, axis=1)  # midranks: ties share the mean rank
    v10 = (rank_all[:, y] - rankdata(x[:, y], axis=1)) / n  # [K, m]
    v01 = 1.0 - (rank_all[:, ~y] - rankdata(x[:, ~y], axis=1)) / m  # [K, n]
    aucs = v10.mean(axis=1)
    k = x.shape[0]
    if m < 2 or n < 2:
        return aucs, np.full((k, k), np.nan)
    cov = np.cov(v10).reshape(k, k) / m + np.cov(v01).reshape(k, k) / n
    return aucs, cov


def delong_test(y_true_1d, score_a_1d, score_b_1d) -> DeLongResult:
    """DeLong's two-sided test of AUC(A) = AUC(B) for two models scored on the same images.

    ``z = (AUC_A - AUC_B) / se`` with ``se^2 = Var A + Var B - 2 Cov(A, B)`` from
    :func:`delong_covariance`, ``p = 2 (1 - Phi(|z|))``.

    Degenerate cases: when ``se == 0`` (both models rank the images identically, or each is
    perfect) the difference shows no sampling variability under this model, so ``p = 1`` if
    ``delta == 0`` and ``p = 0`` otherwise (``z`` is 0 or +-inf). With fewer than 2 positives or
    2 negatives the variance cannot be estimated: ``se``, ``z`` and ``p_value`` are NaN.
    """
    aucs, cov = delong_covariance(y_true_1d, np.stack([score_a_1d, score_b_1d]))
    delta = float(aucs[0] - aucs[1])
    variance = cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1]
    if np.isnan(variance):
        se = z = p = float("nan")
    else:
        se = float(np.sqrt(max(variance, 0.0)))  # rounding can leave a tiny negative
        if se == 0.0:
            z = 0.0 if delta == 0.0 else float(np.copysign(np.inf, delta))
            p = 1.0 if delta == 0.0 else 0.0
        else:
            z = delta / se
            p = float(2.0 * norm.sf(abs(z)))
    return DeLongResult(float(aucs[0]), float(aucs[1]), delta, se, z, p)
