"""Cluster (patient) resampling and the AUCs of many weighted resamples at once.

A bootstrap resample that draws patient ``p`` ``k`` times holds ``k`` copies of every image of
``p``. Rather than building each resample, a draw is kept as a count matrix ``counts [B, P]``
(how often each patient was drawn) and the AUC of every resample is computed from per-image
weights ``counts[b, patient[i]]``:

    AUC_b = U_b / (W+_b W-_b),   U_b = sum over positive i, negative j of
            w_bi w_bj ([s_i > s_j] + 0.5 [s_i == s_j])

which is the Mann-Whitney statistic of the replicated rows, i.e. exactly what
``sklearn.metrics.roc_auc_score`` gives on the expanded resample (ties count one half).

Per class the images are sorted once. Negatives are put into bins between consecutive positive
score levels (strictly below level k, or tied with level k); two sparse ``[P, bins]`` matrices
then give, for all resamples at once, the weight of positives at each level and of negatives in
each bin (one sparse product each), and a cumulative sum over bins gives the negative weight
below every positive level. The cost is O(B x N) per class with no Python loop over resamples.
Weights are whole numbers held in float64, so U_b is exact and each AUC is one rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

# Resamples drawn (and scored) per block: bounds memory at about 256 x max(P, bins) floats.
# Fixed, so that a seed gives the same resamples whatever the data size.
RESAMPLE_BLOCK = 256


def cluster_codes(ids) -> tuple[np.ndarray, int]:
    """Map ``ids [N]`` (patient ids of any sortable type) to codes ``0..P-1`` (sorted id order)."""
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"patient_ids must be 1-D, got shape {ids.shape}")
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64), 0
    unique, codes = np.unique(ids, return_inverse=True)
    return codes.reshape(-1).astype(np.int64), len(unique)


def iter_cluster_counts(n_clusters: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks ``[<=RESAMPLE_BLOCK, n_clusters]`` of draw counts, ``n_resamples`` rows in all.

    Each row draws ``n_clusters`` clusters with replacement (a multinomial with equal
    probabilities); the row sums to ``n_clusters``.
    """
    if n_clusters < 1:
        raise ValueError("cannot resample zero patients")
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, RESAMPLE_BLOCK):
        rows = min(RESAMPLE_BLOCK, n_resamples - start)
        draws = rng.integers(0, n_clusters, size=(rows, n_clusters))
        draws += np.arange(rows)[:, None] * n_clusters  # one bincount for the whole block
        counts = np.bincount(draws.reshape(-1), minlength=rows * n_clusters)
        yield counts.reshape(rows, n_clusters).astype(np.float64)


def draw_patient_counts(n_patients: int, n_resamples: int, seed: int) -> np.ndarray:
    """The ``[n_resamples, n_patients]`` draw counts that ``bootstrap_auc`` uses for ``seed``.

    Patient ``p`` is column ``p`` of the sorted unique patient ids.
    """
    return np.concatenate(list(iter_cluster_counts(n_patients, n_resamples, seed)))


@dataclass(frozen=True)
class _ClassBins:
    """One class's sparse maps from clusters to score bins (see the module docstring)."""

    positives_at_level: sp.csr_array  # [P, L]: positive images of cluster p at positive level k
    negatives_in_bin: sp.csr_array  # [P, 2L]: column 2k below level k, 2k+1 tied with level k
    positives_per_cluster: np.ndarray  # [P]
    negatives_per_cluster: np.ndarray  # [P]


def _class_bins(y: np.ndarray, s: np.ndarray, codes: np.ndarray, n_clusters: int) -> _ClassBins:
    _, level = np.unique(s, return_inverse=True)
    level = level.reshape(-1)
    pos_levels = np.unique(level[y])
    n_levels = len(pos_levels)
    pos_column = np.searchsorted(pos_levels, level[y])
    neg_level = level[~y]
    # Number of positive levels strictly below each negative; equal to n_levels above them all.
    below = np.searchsorted(pos_levels, neg_level)
    tied = (below < n_levels) & (pos_levels[np.minimum(below, max(n_levels - 1, 0))] == neg_level)
    neg_column = 2 * below + tied
    # Negatives above every positive never sit below a positive: they only enter W-.
    keep = neg_column < 2 * n_levels

    width = max(n_levels, 1)  # a class with no positive keeps one empty level: AUC NaN

    def counts(rows, cols, n_columns):
        return sp.csr_array((np.ones(len(rows)), (rows, cols)), shape=(n_clusters, n_columns))

    return _ClassBins(
        positives_at_level=counts(codes[y], pos_column, width),
        negatives_in_bin=counts(codes[~y][keep], neg_column[keep], 2 * width),
        positives_per_cluster=np.bincount(codes[y], minlength=n_clusters).astype(np.float64),
        negatives_per_cluster=np.bincount(codes[~y], minlength=n_clusters).astype(np.float64),
    )


def _weighted_auc(bins: _ClassBins, counts: np.ndarray) -> np.ndarray:
    """AUC ``[B]`` of each resample in ``counts [B, P]``; NaN where it has no pos. or no neg."""
    pos_weight = counts @ bins.positives_at_level  # [B, L]
    neg_weight = counts @ bins.negatives_in_bin  # [B, 2L]
    # Cumulative column 2k = negatives in bins 0..k and ties with levels 0..k-1: all below k.
    neg_below = np.cumsum(neg_weight, axis=1)[:, 0::2]
    u = np.einsum("bk,bk->b", pos_weight, neg_below + 0.5 * neg_weight[:, 1::2])
    total = (counts @ bins.positives_per_cluster) * (counts @ bins.negatives_per_cluster)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, u / total, np.nan)


def resampled_aucs(y_true, y_score, groups, counts, columns=None) -> np.ndarray:
    """AUCs of weighted resamples: image ``i`` appears ``counts[b, groups[i]]`` times in ``b``.

    Args:
        y_true: ``[N, C]`` bool labels. y_score: ``[N, C]`` finite scores.
        groups: ``[N]`` cluster code of each image, in ``0..P-1`` (``cluster_codes``); pass
            ``arange(N)`` for an image-level resample.
        counts: ``[B, P]`` non-negative whole numbers (draw counts).
        columns: the class columns to score (default all); the others are NaN.

    Returns:
        ``[B, C]`` AUCs equal to ``roc_auc_score`` on each expanded resample; NaN where a
        resample has no positive or no negative case of the class.
    """
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(y_score, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.float64)
    out = np.full((counts.shape[0], y.shape[1]), np.nan)
    for c in range(y.shape[1]) if columns is None else columns:
        bins = _class_bins(y[:, c], s[:, c], groups, counts.shape[1])
        out[:, c] = _weighted_auc(bins, counts)
    return out


def bootstrap_replicates(y, scores, codes, n_clusters, columns, n_resamples, seed):
    """Per-class AUC replicates ``[B, C]`` of each ``[N, C]`` score array in ``scores``.

    All score arrays are scored on the same resamples (a paired bootstrap); only ``columns``
    are computed, the rest stay NaN.
    """
    out = [np.full((n_resamples, y.shape[1]), np.nan) for _ in scores]
    if n_clusters == 0 or len(columns) == 0:
        return out
    bins = [[_class_bins(y[:, c], s[:, c], codes, n_clusters) for c in columns] for s in scores]
    start = 0
    for block in iter_cluster_counts(n_clusters, n_resamples, seed):
        rows = slice(start, start + len(block))
        for model_bins, model_out in zip(bins, out):
            for c, class_bins in zip(columns, model_bins):
                model_out[rows, c] = _weighted_auc(class_bins, block)
        start += len(block)
    return out
