"""Per-class AUC: scikit-learn's numbers, and undefined classes named instead of zeroed."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from explorer.metrics import (
    NO_IMAGES,
    NO_NEGATIVE,
    NO_POSITIVE,
    mean_auc,
    per_class_auc,
    undefined_classes,
)

FINDINGS = ["Atelectasis", "Hernia", "Effusion", "No negatives", "Mass"]


def _labels_scores(seed=0, n=120):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 5)) < 0.3).astype(np.int8)
    y[:, 1] = 0  # Hernia: no positive case in this split
    y[:, 3] = 1  # every image positive: no negative case
    # Rounded scores so that ties between positives and negatives occur.
    s = np.round(rng.normal(size=(n, 5)) + y, 1).astype(np.float32)
    return y, s


def test_per_class_auc_equals_sklearn_for_defined_classes():
    y, s = _labels_scores()
    table = per_class_auc(y, s, FINDINGS)
    assert list(table.columns) == ["finding", "auc", "positives", "negatives", "defined", "reason"]
    for c in (0, 2, 4):
        row = table.iloc[c]
        assert row["auc"] == roc_auc_score(y[:, c], s[:, c])  # exactly, not approximately
        assert row["defined"] and row["reason"] is None
        assert row["positives"] == y[:, c].sum()
        assert row["negatives"] == len(y) - y[:, c].sum()


def test_undefined_classes_are_nan_with_counts_and_reason():
    y, s = _labels_scores()
    table = per_class_auc(y, s, FINDINGS).set_index("finding")
    hernia, all_pos = table.loc["Hernia"], table.loc["No negatives"]
    assert math.isnan(hernia["auc"]) and not hernia["defined"]
    assert (hernia["positives"], hernia["negatives"], hernia["reason"]) == (0, 120, NO_POSITIVE)
    assert math.isnan(all_pos["auc"]) and not all_pos["defined"]
    assert (all_pos["positives"], all_pos["negatives"], all_pos["reason"]) == (120, 0, NO_NEGATIVE)


def test_mean_auc_excludes_undefined_classes_by_name():
    y, s = _labels_scores(seed=3)
    expected = np.mean([roc_auc_score(y[:, c], s[:, c]) for c in (0, 2, 4)])
    assert mean_auc(y, s) == pytest.approx(expected, rel=1e-15)
    assert undefined_classes(y, FINDINGS) == [
        ("Hernia", NO_POSITIVE),
        ("No negatives", NO_NEGATIVE),
    ]


def test_mean_auc_is_nan_when_no_class_is_defined():
    y = np.zeros((10, 2), dtype=int)
    assert math.isnan(mean_auc(y, np.random.default_rng(0).random((10, 2))))


def test_empty_split_says_no_images():
    table = per_class_auc(np.zeros((0, 2)), np.zeros((0, 2)), ["A", "B"])
    assert table["reason"].tolist() == [NO_IMAGES, NO_IMAGES]
    assert table["auc"].isna().all() and not table["defined"].any()
    assert undefined_classes(np.zeros((0, 2)), ["A", "B"]) == [("A", NO_IMAGES), ("B", NO_IMAGES)]


@pytest.mark.parametrize(
    ("y", "s", "findings", "message"),
    [
        (np.array([[0], [2]]), np.zeros((2, 1)), ["A"], "only 0/1"),
        (np.array([[0], [1]]), np.array([[0.1], [np.nan]]), ["A"], "NaN or infinite values for A"),
        (np.array([[0], [1]]), np.zeros((2, 2)), ["A"], "y_score has shape"),
        (np.array([[0], [1]]), np.zeros((2, 1)), ["A", "B"], "2 findings named for 1"),
        (np.array([0, 1]), np.zeros(2), ["A"], "2-D"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(y, s, findings, message):
    with pytest.raises(ValueError, match=message):
        per_class_auc(y, s, findings)
