"""The vectorised bootstrap AUC equals scikit-learn on each explicitly expanded resample."""

import math
from fractions import Fraction

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from explorer.metrics import bootstrap_auc, cluster_codes, draw_patient_counts, resampled_aucs


def _exact_auc(y, s, reps):
    """Mann-Whitney U / (m n) over all pairs of the expanded rows, in exact arithmetic."""
    y, s = np.repeat(y, reps), np.repeat(s, reps)
    pos, neg = s[y], s[~y]
    u = Fraction(int((pos[:, None] > neg[None, :]).sum()))
    u += Fraction(int((pos[:, None] == neg[None, :]).sum()), 2)
    return float(u / (len(pos) * len(neg)))


def _tied_data(seed, n=90, n_patients=30, classes=3):
    rng = np.random.default_rng(seed)
    groups = rng.permutation(np.arange(n) % n_patients)  # every patient has an image
    y = rng.random((n, classes)) < 0.35
    # Few distinct values: many ties within positives, within negatives and across them.
    s = np.round(rng.normal(size=(n, classes)) + y, 0) / 2
    return y, s, groups, n_patients


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_auc_equals_sklearn_on_expanded_resamples(seed):
    y, s, groups, n_patients = _tied_data(seed)
    rng = np.random.default_rng(100 + seed)
    counts = rng.integers(0, 4, size=(6, n_patients)).astype(float)  # zeros included
    counts[0] = 1.0  # the full sample itself
    aucs = resampled_aucs(y, s, groups, counts)
    for b in range(len(counts)):
        reps = counts[b, groups].astype(int)
        for c in range(y.shape[1]):
            expected = roc_auc_score(np.repeat(y[:, c], reps), np.repeat(s[:, c], reps))
            assert aucs[b, c] == pytest.approx(expected, rel=0, abs=1e-14)
            # U is accumulated in whole numbers, so the AUC is the exact ratio, once rounded.
            assert aucs[b, c] == _exact_auc(y[:, c], s[:, c], reps)


def test_image_level_weights_use_one_group_per_image():
    y, s, _, _ = _tied_data(4, n=40)
    counts = np.random.default_rng(0).integers(0, 3, size=(3, 40)).astype(float)
    aucs = resampled_aucs(y, s, np.arange(40), counts)
    for b in range(3):
        reps = counts[b].astype(int)
        assert aucs[b, 0] == pytest.approx(
            roc_auc_score(np.repeat(y[:, 0], reps), np.repeat(s[:, 0], reps)), abs=1e-14
        )


def test_resample_without_a_positive_or_negative_is_nan_not_zero():
    y = np.array([[1], [0], [0], [1]], dtype=bool)
    s = np.array([[0.9], [0.1], [0.4], [0.3]])
    groups = np.array([0, 1, 1, 2])  # patient 1 holds every negative
    counts = np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0], [1.0, 1.0, 1.0]])
    aucs = resampled_aucs(y, s, groups, counts)[:, 0]
    assert math.isnan(aucs[0]) and math.isnan(aucs[1])
    assert aucs[2] == roc_auc_score(y[:, 0], s[:, 0])


def test_bootstrap_replicates_are_patient_resamples():
    """Each replicate is the AUC of whole patients drawn with replacement (string ids)."""
    y, s, groups, n_patients = _tied_data(7, n=120, n_patients=40)
    patient_ids = np.array([f"p{g:05d}" for g in groups])
    summary = bootstrap_auc(y, s, patient_ids, ["A", "B", "C"], n_resamples=300, seed=11)
    counts = draw_patient_counts(n_patients, 300, seed=11)
    assert counts.shape == (300, n_patients)
    assert (counts.sum(axis=1) == n_patients).all()  # P patients drawn per resample
    codes, _ = cluster_codes(patient_ids)
    for b in (0, 1, 257, 299):  # both sides of a 256-resample block
        drawn = np.repeat(np.arange(n_patients), counts[b].astype(int))
        rows = np.concatenate([np.flatnonzero(codes == p) for p in drawn])
        for c in range(3):
            expected = roc_auc_score(y[rows, c], s[rows, c])
            assert summary.replicates[b, c] == pytest.approx(expected, abs=1e-14)


def test_seed_fixes_the_draws():
    a = draw_patient_counts(50, 20, seed=3)
    assert np.array_equal(a, draw_patient_counts(50, 20, seed=3))
    assert not np.array_equal(a, draw_patient_counts(50, 20, seed=4))
