"""Patient-bootstrap confidence intervals for AUCs, and the paired comparison of two models.

Resampling unit: the patient. NIH ChestX-ray14 has many follow-up images per patient whose
labels and scores are correlated; resampling images treats them as independent and gives
intervals that are too narrow. A resample draws ``P`` patients with replacement (``P`` = number
of patients) and takes all of their images (a cluster bootstrap, Davison & Hinkley 1997, §3.8).
Intervals are percentile intervals of the resampled statistic; resamples come from
``numpy.random.default_rng(seed)`` and are the same for every model given the same patients.

A class that is undefined in a resample (the resample holds no positive, or no negative, image
of it) has no AUC there, never 0:

* per class, the interval is taken over the resamples in which the class is defined
  (NaN-aware percentiles); ``resamples_undefined`` says in how many it was not;
* the mean AUC keeps one estimand, the mean over the classes defined in the full sample
  (``included``). A resample in which one of them is undefined has no value of that
  statistic, so it is left out (the bootstrap conditional on the statistic existing), rather
  than averaged over fewer classes, which would mix a different statistic into the
  distribution. ``mean_resamples_used`` reports how many resamples remained; if it is much
  below ``n_resamples``, a rare class is carried by very few patients and its AUC (and the
  mean's interval) is fragile: say so in the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from explorer.metrics._auc import check_scores, per_class_auc
from explorer.metrics._delong import delong_test
from explorer.metrics._resample import bootstrap_replicates, cluster_codes


@dataclass
class AucSummary:
    """Per-class and mean AUC of one model with patient-bootstrap percentile intervals."""

    per_class: pd.DataFrame  # finding, auc, ci_low, ci_high, positives, negatives, defined,
    #                          reason, resamples_undefined, positive_patients
    mean: float  # over `included`; NaN if no class is defined
    mean_ci: tuple[float, float]
    included: list[str]  # classes in the mean
    excluded: list[tuple[str, str]]  # (finding, reason) left out of the mean
    n_images: int
    n_patients: int
    n_resamples: int
    level: float
    seed: int
    mean_resamples_used: int  # resamples in which every included class was defined
    replicates: np.ndarray = field(repr=False)  # [n_resamples, C] AUC per resample (NaN: none)
    mean_replicates: np.ndarray = field(repr=False)  # [n_resamples] (NaN: left out)


@dataclass
class PairedComparison:
    """Model A minus model B on the same images and the same patient resamples."""

    delta_mean: float  # mean AUC of A minus mean AUC of B, over the classes defined here
    delta_ci: tuple[float, float]
    p_value: float  # two-sided bootstrap p-value for delta_mean == 0
    per_class: pd.DataFrame  # finding, auc_a, auc_b, delta, delta_ci_low, delta_ci_high,
    #                          delong_se, delong_z, delong_p, delong_p_holm, defined, reason
    n_resamples: int
    level: float
    seed: int
    resamples_used: int  # resamples in which every included class was defined
    delta_replicates: np.ndarray = field(repr=False)  # [n_resamples] (NaN: left out)


def _check_options(n_resamples: int, level: float) -> int:
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return int(n_resamples)


def _codes(patient_ids, n_images: int) -> tuple[np.ndarray, int]:
    codes, n_patients = cluster_codes(patient_ids)
    if len(codes) != n_images:
        raise ValueError(f"{len(codes)} patient ids for {n_images} images")
    return codes, n_patients


def percentile_interval(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 ignoring NaN; NaN where every replicate is NaN."""
    reps = np.asarray(replicates, dtype=np.float64)
    alpha = (1.0 - level) / 2.0
    some = ~np.isnan(reps).all(axis=0)
    low = np.full(reps.shape[1:], np.nan)
    high = np.full(reps.shape[1:], np.nan)
    if np.any(some):
        q = np.nanquantile(reps[:, some], [alpha, 1.0 - alpha], axis=0)
        low[some], high[some] = q[0], q[1]
    return low, high


def _pair(low, high) -> tuple[float, float]:
    return float(low), float(high)


def bootstrap_auc(
    y_true,
    y_score,
    patient_ids,
    findings: Sequence[str],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> AucSummary:
    """Per-class and mean AUC with percentile intervals from a patient (cluster) bootstrap.

    Args:
        y_true: ``[N, C]`` labels in {0, 1}. y_score: ``[N, C]`` scores.
        patient_ids: ``[N]`` patient of each image; all images of a drawn patient go together.
        findings: the ``C`` finding names.
        n_resamples: bootstrap resamples ``B``. seed: seeds the resampling. level: e.g. 0.95.

    Point estimates are ``per_class_auc`` (scikit-learn) on the full sample. Undefined classes:
    see the module docstring (NaN per resample, NaN-aware percentiles; the mean drops a
    resample in which an included class is undefined and counts it in
    ``mean_resamples_used``).
    """
    n_resamples = _check_options(n_resamples, level)
    y, s = check_scores(y_true, y_score, findings)
    codes, n_patients = _codes(patient_ids, len(y))
    table = per_class_auc(y, s, findings)
    defined = table["defined"].to_numpy()
    (reps,) = bootstrap_replicates(
        y, [s], codes, n_patients, np.flatnonzero(defined), n_resamples, seed
    )
    mean_reps = reps[:, defined].mean(axis=1) if defined.any() else np.full(n_resamples, np.nan)
    low, high = percentile_interval(reps, level)
    mean_low, mean_high = percentile_interval(mean_reps[:, None], level)
    table.insert(2, "ci_low", low)
    table.insert(3, "ci_high", high)
    table["resamples_undefined"] = np.where(defined, np.isnan(reps).sum(axis=0), n_resamples)
    # The cluster bootstrap's real sample size: a class seen in 3 patients is fragile however
    # many images those patients have.
    table["positive_patients"] = [len(np.unique(codes[y[:, c]])) for c in range(y.shape[1])]
    return AucSummary(
        per_class=table,
        mean=float(table["auc"][defined].mean()) if defined.any() else float("nan"),
        mean_ci=_pair(mean_low[0], mean_high[0]),
        included=[str(f) for f in table["finding"][defined]],
        excluded=[(str(f), str(r)) for f, r in zip(table["finding"], table["reason"]) if r],
        n_images=len(y),
        n_patients=n_patients,
        n_resamples=int(n_resamples),
        level=float(level),
        seed=int(seed),
        mean_resamples_used=int((~np.isnan(mean_reps)).sum()),
        replicates=reps,
        mean_replicates=mean_reps,
    )


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; NaN entries stay NaN and do not count."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled) if m else scaled
    return out


def paired_comparison(
    y_true,
    score_a,
    score_b,
    patient_ids,
    findings: Sequence[str],
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> PairedComparison:
    """Mean-AUC difference of model A minus model B with a paired patient bootstrap.

    Both models are scored on the same resamples (the patient draws of ``bootstrap_auc`` with
    the same seed), so their correlation is kept. The mean is over the classes defined in the
    full sample; resamples in which one of them is undefined are left out (module docstring).

    * ``delta_ci``: percentile interval of the resampled differences ``d*_b``.
    * ``p_value``: two-sided, from the bootstrap distribution shifted to the null (Hall &
      Wilson 1991, "Two guidelines for bootstrap hypothesis testing", Biometrics 47:757-762):
      ``p = (1 + #{b : |d*_b - d| >= |d|}) / (B' + 1)`` with ``d`` the full-sample difference
      and ``B'`` the resamples used; the +1 counts the observed sample as one of the draws
      (Davison & Hinkley 1997, §4.2), so ``p >= 1 / (B' + 1)``, and identical models give 1.
    * ``per_class``: AUCs and their difference, the patient-bootstrap interval of each
      class's difference, and DeLong's test (which treats images as independent, so it is
      anti-conservative when patients have several images) with Holm-adjusted p-values over
      the classes tested (14 classes: expect a small unadjusted p by chance).
    """
    n_resamples = _check_options(n_resamples, level)
    y, sa = check_scores(y_true, score_a, findings)
    _, sb = check_scores(y, score_b, findings)
    codes, n_patients = _codes(patient_ids, len(y))
    table_a = per_class_auc(y, sa, findings)
    table_b = per_class_auc(y, sb, findings)
    defined = table_a["defined"].to_numpy()
    reps_a, reps_b = bootstrap_replicates(
        y, [sa, sb], codes, n_patients, np.flatnonzero(defined), n_resamples, seed
    )
    delta_reps = np.full(n_resamples, np.nan)
    delta = float("nan")
    if defined.any():
        delta_reps = reps_a[:, defined].mean(axis=1) - reps_b[:, defined].mean(axis=1)
        delta = float(table_a["auc"][defined].mean() - table_b["auc"][defined].mean())
    used = delta_reps[~np.isnan(delta_reps)]
    low, high = percentile_interval(delta_reps[:, None], level)
    p_value = float("nan")
    if len(used):
        p_value = float((1 + np.sum(np.abs(used - delta) >= abs(delta))) / (len(used) + 1))

    delong = [
        delong_test(y[:, c], sa[:, c], sb[:, c]) if ok else None for c, ok in enumerate(defined)
    ]
    class_low, class_high = percentile_interval(reps_a - reps_b, level)
    delong_p = np.array([r.p_value if r else np.nan for r in delong])
    per_class = pd.DataFrame(
        {
            "finding": table_a["finding"],
            "auc_a": table_a["auc"],
            "auc_b": table_b["auc"],
            "delta": table_a["auc"] - table_b["auc"],
            "delta_ci_low": class_low,
            "delta_ci_high": class_high,
            "delong_se": [r.se if r else np.nan for r in delong],
            "delong_z": [r.z if r else np.nan for r in delong],
            "delong_p": delong_p,
            "delong_p_holm": holm(delong_p),
            "defined": table_a["defined"],
            "reason": table_a["reason"],
        }
    )
    return PairedComparison(
        delta_mean=delta,
        delta_ci=_pair(low[0], high[0]),
        p_value=p_value,
        per_class=per_class,
        n_resamples=int(n_resamples),
        level=float(level),
        seed=int(seed),
        resamples_used=len(used),
        delta_replicates=delta_reps,
    )
