"""DeLong's test against brute-force structural components over all positive/negative pairs."""

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from explorer.metrics import delong_covariance, delong_test


def _psi(pos, neg):
    """[m, n] kernel: 1 if the positive scores higher, 1/2 on a tie, else 0."""
    return (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])


def _brute_force(y, scores):
    """AUCs and DeLong covariance from explicit V10/V01 and hand-written sample covariances."""
    y = y.astype(bool)
    m, n = y.sum(), (~y).sum()
    v10 = np.array([_psi(x[y], x[~y]).mean(axis=1) for x in scores])  # [K, m]
    v01 = np.array([_psi(x[y], x[~y]).mean(axis=0) for x in scores])  # [K, n]
    aucs = np.array([_psi(x[y], x[~y]).sum() / (m * n) for x in scores])
    k = len(scores)
    s10, s01 = np.zeros((k, k)), np.zeros((k, k))
    for r in range(k):
        for t in range(k):
            s10[r, t] = np.sum((v10[r] - aucs[r]) * (v10[t] - aucs[t])) / (m - 1)
            s01[r, t] = np.sum((v01[r] - aucs[r]) * (v01[t] - aucs[t])) / (n - 1)
    return aucs, s10 / m + s01 / n


def _tied_case(seed, n=40):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    y[:2] = [0, 1]
    truth = rng.normal(size=n) + y
    # Coarse scores: ties within and across classes, and correlated models.
    scores = np.stack([np.round(truth + 0.5 * rng.normal(size=n)) for _ in range(3)])
    return y, scores


@pytest.mark.parametrize("seed", range(5))
def test_auc_is_the_exact_mann_whitney_statistic(seed):
    y, scores = _tied_case(seed)
    aucs, _ = delong_covariance(y, scores)
    brute, _ = _brute_force(y, scores)
    np.testing.assert_allclose(aucs, brute, rtol=0, atol=1e-14)
    np.testing.assert_allclose(aucs, [roc_auc_score(y, x) for x in scores], rtol=0, atol=1e-14)


@pytest.mark.parametrize("seed", range(5))
def test_covariance_equals_brute_force_structural_components(seed):
    y, scores = _tied_case(seed)
    _, cov = delong_covariance(y, scores)
    _, brute = _brute_force(y, scores)
    np.testing.assert_allclose(cov, brute, rtol=1e-12, atol=1e-16)
    result = delong_test(y, scores[0], scores[1])
    var = brute[0, 0] + brute[1, 1] - 2 * brute[0, 1]
    assert result.se == pytest.approx(math.sqrt(var), rel=1e-12)
    assert result.z == pytest.approx(result.delta / math.sqrt(var), rel=1e-12)
    assert result.p_value == pytest.approx(2 * norm.sf(abs(result.z)), rel=1e-12)


def test_variance_matches_the_spread_of_auc_over_repeated_samples():
    """DeLong's variance of one AUC estimates its sampling variance (binormal, 1,500 samples)."""
    rng = np.random.default_rng(0)
    aucs, variances = [], []
    y = np.r_[np.ones(30), np.zeros(50)].astype(int)
    for _ in range(1500):
        s = rng.normal(size=80) + 1.0 * y
        auc, cov = delong_covariance(y, s)
        aucs.append(auc[0])
        variances.append(cov[0, 0])
    assert np.mean(variances) == pytest.approx(np.var(aucs, ddof=1), rel=0.12)
    assert np.mean(aucs) == pytest.approx(norm.cdf(1 / math.sqrt(2)), abs=0.005)


def test_identical_rankings_give_zero_se_and_p_one():
    y, scores = _tied_case(0)
    result = delong_test(y, scores[0], 3.0 * scores[0] - 1.0)  # same order of the images
    assert (result.delta, result.se, result.z, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_zero_se_with_a_difference_gives_p_zero():
    y = np.array([0, 0, 0, 1, 1])
    perfect = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    constant = np.full(5, 0.5)  # every pair tied: AUC 1/2 with constant components
    result = delong_test(y, perfect, constant)
    assert (result.auc_a, result.auc_b, result.se) == (1.0, 0.5, 0.0)
    assert result.p_value == 0.0 and result.z == math.inf


def test_one_positive_leaves_the_variance_unestimated():
    y = np.array([0, 0, 0, 1])
    result = delong_test(y, np.array([0.1, 0.5, 0.3, 0.4]), np.array([0.2, 0.1, 0.3, 0.4]))
    assert result.auc_a == pytest.approx(2 / 3) and result.auc_b == 1.0
    assert math.isnan(result.se) and math.isnan(result.p_value)


def test_undefined_auc_is_an_error():
    with pytest.raises(ValueError, match="0 positives"):
        delong_test(np.zeros(4), np.arange(4.0), np.arange(4.0))
