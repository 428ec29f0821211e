"""Paired patient bootstrap of model A minus model B, with DeLong per class."""

import math

import numpy as np
import pytest
from scipy.stats import kstest

from explorer.metrics import NO_NEGATIVE, bootstrap_auc, holm, paired_comparison

FINDINGS = ["A", "B", "C", "All positive"]


def _two_models(seed=0, n_patients=100, per_patient=3, gap=0.0):
    """Labels and two models' scores sharing a patient effect; A is ``gap`` more separated."""
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n_patients), per_patient)
    y = (rng.random((len(pid), 4)) < 0.3).astype(int)
    y[:, 3] = 1
    patient = rng.normal(size=(n_patients, 4))[pid]
    score_a = (1.0 + gap) * y + patient + rng.normal(size=y.shape)
    score_b = 1.0 * y + patient + rng.normal(size=y.shape)
    return y, score_a, score_b, pid


def test_identical_models_differ_by_zero_with_p_one():
    y, a, _, pid = _two_models()
    result = paired_comparison(y, a, a.copy(), pid, FINDINGS, n_resamples=300, seed=1)
    assert (result.delta_mean, result.delta_ci, result.p_value) == (0.0, (0.0, 0.0), 1.0)
    defined = result.per_class[result.per_class["defined"]]
    assert (defined["delta"] == 0).all() and (defined["delong_p"] == 1).all()
    assert result.resamples_used == 300


def test_clearly_better_model_has_interval_above_zero_and_small_p():
    y, a, b, pid = _two_models(gap=1.0)
    result = paired_comparison(y, a, b, pid, FINDINGS, n_resamples=500, seed=2)
    assert result.delta_mean > 0.05
    assert result.delta_ci[0] > 0
    assert result.p_value == pytest.approx(1 / 501)  # no resample as far from d as 0 is
    defined = result.per_class[result.per_class["defined"]]
    assert (defined["delta_ci_low"] > 0).all()
    assert (defined["delong_p"] < 0.01).all()


def test_undefined_class_is_named_and_left_out():
    y, a, b, pid = _two_models(gap=0.3)
    result = paired_comparison(y, a, b, pid, FINDINGS, n_resamples=200, seed=3)
    row = result.per_class.set_index("finding").loc["All positive"]
    assert not row["defined"] and row["reason"] == NO_NEGATIVE
    assert row[["auc_a", "auc_b", "delta", "delong_z", "delong_p", "delong_p_holm"]].isna().all()
    defined = result.per_class["defined"]
    expected = (result.per_class["auc_a"][defined] - result.per_class["auc_b"][defined]).mean()
    assert result.delta_mean == pytest.approx(expected, rel=1e-12)


def test_same_resamples_as_bootstrap_auc_and_antisymmetric():
    y, a, b, pid = _two_models(gap=0.2, seed=4)
    result = paired_comparison(y, a, b, pid, FINDINGS, n_resamples=200, seed=7)
    summary_a = bootstrap_auc(y, a, pid, FINDINGS, n_resamples=200, seed=7)
    summary_b = bootstrap_auc(y, b, pid, FINDINGS, n_resamples=200, seed=7)
    np.testing.assert_allclose(
        result.delta_replicates, summary_a.mean_replicates - summary_b.mean_replicates, atol=1e-15
    )
    swapped = paired_comparison(y, b, a, pid, FINDINGS, n_resamples=200, seed=7)
    assert swapped.delta_mean == pytest.approx(-result.delta_mean, abs=1e-15)
    assert swapped.delta_ci == pytest.approx((-result.delta_ci[1], -result.delta_ci[0]))
    assert swapped.p_value == result.p_value


def test_p_value_is_roughly_uniform_under_the_null():
    """Exchangeable models (same distribution, different noise): p ~ U(0, 1)."""
    rng = np.random.default_rng(11)
    p_values = []
    for r in range(200):
        pid = np.repeat(np.arange(60), 3)
        y = (rng.random(60) < 0.4)[pid]
        patient = rng.normal(size=60)[pid]
        a = y + patient + rng.normal(size=len(pid))
        b = y + patient + rng.normal(size=len(pid))
        result = paired_comparison(
            y[:, None].astype(int), a[:, None], b[:, None], pid, ["x"], n_resamples=200, seed=r
        )
        p_values.append(result.p_value)
    p_values = np.array(p_values)
    assert 0.01 <= np.mean(p_values < 0.05) <= 0.10
    assert kstest(p_values, "uniform").pvalue > 0.01


def test_holm_adjustment():
    p = np.array([0.01, np.nan, 0.04, 0.03, 0.5])
    # m = 4 tested: 0.01*4, max(0.04, 0.03*3), max(0.09, 0.04*2), max(0.09, 0.5*1)
    np.testing.assert_allclose(holm(p), [0.04, np.nan, 0.09, 0.09, 0.5])
    assert math.isnan(holm(np.array([np.nan]))[0])
