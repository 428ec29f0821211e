"""Patient-bootstrap intervals: nominal coverage, and why images are not the resampling unit."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from explorer.metrics import (
    NO_POSITIVE,
    bootstrap_auc,
    cluster_codes,
    draw_patient_counts,
    percentile_interval,
)

SHIFT = 1.19  # binormal separation: true AUC = Phi(SHIFT / sqrt(2)) = 0.80
TRUE_AUC = norm.cdf(SHIFT / math.sqrt(2))


def _clustered(rng, n_patients=80, per_patient=5, icc=0.8):
    """Binormal scores with a shared patient effect; a patient's images share the label.

    Positive minus negative image scores ~ N(SHIFT, 2) (different patients), so the population
    AUC is Phi(SHIFT / sqrt(2)) while images of one patient are strongly correlated.
    """
    patient_positive = np.arange(n_patients) < 0.4 * n_patients
    pid = np.repeat(np.arange(n_patients), per_patient)
    y = patient_positive[pid]
    score = (
        SHIFT * y
        + math.sqrt(icc) * rng.normal(size=n_patients)[pid]
        + math.sqrt(1 - icc) * rng.normal(size=len(pid))
    )
    return y[:, None].astype(int), score[:, None], pid


def test_patient_bootstrap_covers_true_auc_and_image_bootstrap_undercovers():
    rng = np.random.default_rng(2024)
    patient_hits = image_hits = 0
    datasets = 200
    for r in range(datasets):
        y, s, pid = _clustered(rng)
        by_patient = bootstrap_auc(y, s, pid, ["x"], n_resamples=300, seed=r)
        by_image = bootstrap_auc(y, s, np.arange(len(y)), ["x"], n_resamples=300, seed=r)
        patient_hits += by_patient.mean_ci[0] <= TRUE_AUC <= by_patient.mean_ci[1]
        image_hits += by_image.mean_ci[0] <= TRUE_AUC <= by_image.mean_ci[1]
    assert 0.90 <= patient_hits / datasets <= 0.99
    # Five correlated images per patient count as five independent ones: far too narrow.
    assert image_hits / datasets < 0.85


def _multi_class(seed=0, n_patients=60, per_patient=3):
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n_patients), per_patient)
    y = (rng.random((len(pid), 4)) < 0.3).astype(int)
    y[:, 2] = 0  # no positive case in the split
    y[:, 3] = 0
    y[pid == 7, 3] = 1  # one patient carries every positive of a rare class
    s = rng.normal(size=y.shape) + 1.5 * y
    return y, s, pid


def test_summary_names_what_it_left_out_and_why():
    y, s, pid = _multi_class()
    summary = bootstrap_auc(y, s, pid, ["A", "B", "Hernia", "Rare"], n_resamples=400, seed=5)
    assert summary.included == ["A", "B", "Rare"]
    assert summary.excluded == [("Hernia", NO_POSITIVE)]
    assert (summary.n_images, summary.n_patients) == (180, 60)
    assert (summary.n_resamples, summary.level, summary.seed) == (400, 0.95, 5)
    table = summary.per_class.set_index("finding")
    assert table.loc["Hernia", ["auc", "ci_low", "ci_high"]].isna().all()
    assert table.loc["Hernia", "resamples_undefined"] == 400
    assert table.loc["Rare", "positive_patients"] == 1
    assert table.loc["Rare", "positives"] == 3
    assert summary.mean == pytest.approx(table.loc[["A", "B", "Rare"], "auc"].mean(), rel=1e-15)
    for name in ("A", "B"):
        assert table.loc[name, "ci_low"] < table.loc[name, "auc"] < table.loc[name, "ci_high"]
        assert table.loc[name, "resamples_undefined"] == 0


def test_resamples_missing_a_class_are_dropped_from_its_interval_and_from_the_mean():
    y, s, pid = _multi_class()
    summary = bootstrap_auc(y, s, pid, ["A", "B", "Hernia", "Rare"], n_resamples=400, seed=5)
    codes, n_patients = cluster_codes(pid)
    counts = draw_patient_counts(n_patients, 400, seed=5)
    rare_missing = counts[:, codes[pid == 7][0]] == 0  # the one positive patient not drawn
    assert 0 < rare_missing.sum() < 400  # about (1 - 1/60)^60 = 36% of resamples
    assert np.array_equal(np.isnan(summary.replicates[:, 3]), rare_missing)
    assert summary.per_class.loc[3, "resamples_undefined"] == rare_missing.sum()
    assert summary.mean_resamples_used == 400 - rare_missing.sum()
    assert np.array_equal(np.isnan(summary.mean_replicates), rare_missing)
    kept = summary.replicates[~rare_missing][:, [0, 1, 3]].mean(axis=1)
    expected = np.quantile(kept, [0.025, 0.975])
    assert summary.mean_ci == pytest.approx(tuple(expected), rel=1e-12)
    rare = summary.replicates[~rare_missing, 3]
    assert summary.per_class.loc[3, "ci_low"] == pytest.approx(np.quantile(rare, 0.025))


def test_percentile_interval_ignores_nan_and_keeps_all_nan_columns_nan():
    reps = np.column_stack([np.arange(101.0), np.full(101, np.nan)])
    reps[::10, 0] = np.nan
    low, high = percentile_interval(reps, 0.9)
    kept = reps[~np.isnan(reps[:, 0]), 0]
    assert (low[0], high[0]) == pytest.approx(tuple(np.quantile(kept, [0.05, 0.95])), rel=1e-12)
    assert math.isnan(low[1]) and math.isnan(high[1])


def test_same_seed_same_interval():
    y, s, pid = _multi_class(seed=1)
    a = bootstrap_auc(y, s, pid, list("ABCD"), n_resamples=100, seed=9)
    b = bootstrap_auc(y, s, pid, list("ABCD"), n_resamples=100, seed=9)
    assert a.mean_ci == b.mean_ci
    assert np.array_equal(a.replicates, b.replicates, equal_nan=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_resamples": 0}, "n_resamples"), ({"level": 1.0}, "level"), ({"level": 95}, "level")],
)
def test_bad_options_are_rejected(kwargs, message):
    y, s, pid = _multi_class()
    with pytest.raises(ValueError, match=message):
        bootstrap_auc(y, s, pid, list("ABCD"), **kwargs)


def test_patient_ids_must_match_the_images():
    y, s, pid = _multi_class()
    with pytest.raises(ValueError, match="patient ids for 180 images"):
        bootstrap_auc(y, s, pid[:-1], list("ABCD"), n_resamples=10)
