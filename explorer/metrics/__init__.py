"""AUCs a medical reviewer can check: undefined classes named, patient-bootstrap intervals,
paired tests.

- ``_auc``        per-class AUC (scikit-learn), mean over defined classes, undefined classes
- ``_resample``   patient draws and the AUCs of all weighted resamples at once
- ``_bootstrap``  ``bootstrap_auc`` (percentile CIs) and ``paired_comparison`` (A minus B)
- ``_delong``     DeLong's test for two correlated AUCs (fast midrank version)
"""

from explorer.metrics._auc import (
    NO_IMAGES,
    NO_NEGATIVE,
    NO_POSITIVE,
    mean_auc,
    per_class_auc,
    undefined_classes,
)
from explorer.metrics._bootstrap import (
    AucSummary,
    PairedComparison,
    bootstrap_auc,
    holm,
    paired_comparison,
    percentile_interval,
)
from explorer.metrics._delong import DeLongResult, delong_covariance, delong_test
from explorer.metrics._resample import cluster_codes, draw_patient_counts, resampled_aucs

__all__ = [
    "NO_IMAGES",
    "NO_NEGATIVE",
    "NO_POSITIVE",
    "AucSummary",
    "DeLongResult",
    "PairedComparison",
    "bootstrap_auc",
    "cluster_codes",
    "delong_covariance",
    "delong_test",
    "draw_patient_counts",
    "holm",
    "mean_auc",
    "paired_comparison",
    "per_class_auc",
    "percentile_interval",
    "resampled_aucs",
    "undefined_classes",
]
