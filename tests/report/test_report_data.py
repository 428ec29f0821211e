"""The data step, checked exactly against explorer.metrics / scikit-learn computed directly."""

from __future__ import annotations

import base64
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from explorer.errors import UserError
from explorer.metrics import bootstrap_auc, mean_auc, per_class_auc
from explorer.report import collect
from explorer.report.scores import model_scores
from explorer.results import load_results, write_results


@pytest.fixture(scope="module")
def results(store):
    return load_results(store)


def test_model_scores_align_predictions_with_labels(results, fx):
    s = model_scores(results, "t0", "val")
    y, p, pids = fx.split_arrays(results, "t0", "val")
    assert list(s.image_ids) == sorted(s.image_ids)
    np.testing.assert_array_equal(s.y_true, y)
    np.testing.assert_array_equal(s.y_score, p)
    np.testing.assert_array_equal(s.patient_ids, pids)
    assert model_scores(results, "t3", "val") is None  # failed: no predictions
    assert model_scores(results, "t4", "test") is None  # not a finalist: never scored on test


def test_model_scores_reject_predictions_without_labels(store):
    r = load_results(store)
    r.labels = r.labels[r.labels.image_id != "val_0005.png"]
    with pytest.raises(UserError, match=r"trial t0 has 1 val image.*val_0005\.png"):
        model_scores(r, "t0", "val")


def test_leaderboard_numbers_equal_metrics_computed_directly(results, report, fx):
    rows = {r.trial_id: r for r in report.leaderboard.rows}
    for tid in ("t0", "t1", "t2", "t4", "b0", "b1", "b2"):
        y, p, pids = fx.split_arrays(results, tid, "val")
        expected = bootstrap_auc(y, p, pids, results.findings, n_resamples=fx.N_RESAMPLES, seed=0)
        assert rows[tid].val_auc == pytest.approx(mean_auc(y, p), abs=1e-12)
        assert rows[tid].val_ci == pytest.approx(expected.mean_ci, abs=1e-12)
    for tid in ("t0", "t1", "b0", "b1", "b2"):
        y, p, pids = fx.split_arrays(results, tid, "test")
        expected = bootstrap_auc(y, p, pids, results.findings, n_resamples=fx.N_RESAMPLES, seed=0)
        assert rows[tid].test_auc == pytest.approx(mean_auc(y, p), abs=1e-12)
        assert rows[tid].test_ci == pytest.approx(expected.mean_ci, abs=1e-12)
    assert rows["t4"].test_auc is None and rows["t2"].test_ci is None


def test_leaderboard_order_status_and_encoders(results, report, fx):
    rows = report.leaderboard.rows
    scored = {tid: mean_auc(*fx.split_arrays(results, tid, "val")[:2])
              for tid in ("t0", "t1", "t2", "t4", "b0", "b1", "b2")}
    assert [r.trial_id for r in rows] == [*sorted(scored, key=scored.get, reverse=True), "t3"]
    by_id = {r.trial_id: r for r in rows}
    assert by_id["t3"].status == "failed" and math.isnan(by_id["t3"].val_auc)
    assert by_id["t3"].error == "RuntimeError: out of memory"
    assert by_id["t2"].status == "stopped_early"
    assert (by_id["t2"].epochs_run, by_id["t2"].epochs_planned) == (2, 6)
    assert by_id["t0"].shares_encoder_with == ["trial_1"]
    assert by_id["t0"].pretrain_role == "trained" and by_id["t1"].pretrain_role == "reused"
    assert by_id["b0"].shares_encoder_with == [] and by_id["b0"].pretrain_key is None
    assert by_id["t1"].params == {"pretrain.mask_ratio": 0.9, "finetune.layer_decay": 0.75,
                                  "finetune.randaug_magnitude": None}
    assert report.leaderboard.param_paths == sorted(report.leaderboard.param_paths)  # meta order
    assert report.leaderboard.reference is None  # phantom data: no published reference


def test_seed_spread_of_baselines(results, report, fx):
    (spread,) = report.leaderboard.spreads
    assert spread.arch == "densenet121" and spread.seeds == sorted(fx.BASELINE_STRENGTHS)
    val = [mean_auc(*fx.split_arrays(results, f"b{s}", "val")[:2]) for s in spread.seeds]
    test = [mean_auc(*fx.split_arrays(results, f"b{s}", "test")[:2]) for s in spread.seeds]
    assert spread.val == pytest.approx(val) and spread.test == pytest.approx(test)
    assert spread.val_mean == pytest.approx(np.mean(val))
    assert spread.val_sd == pytest.approx(np.std(val, ddof=1))
    assert spread.test_sd == pytest.approx(np.std(test, ddof=1))


def test_heatmaps_equal_per_class_auc(results, report, fx):
    val, test = report.heatmaps
    assert (val.split, test.split) == ("val", "test")
    assert val.labels == [r.label for r in report.leaderboard.rows if r.trial_id != "t3"]
    assert test.labels == [r.label for r in report.leaderboard.rows
                           if r.trial_id in ("t0", "t1", "b0", "b1", "b2")]
    i = val.labels.index("trial_0")
    y, p, _ = fx.split_arrays(results, "t0", "val")
    expected = per_class_auc(y, p, results.findings)
    np.testing.assert_allclose(val.auc[i], expected["auc"], rtol=0, atol=1e-12)
    assert val.positives[i] == expected["positives"].tolist()
    hernia = results.findings.index("Hernia")
    assert math.isnan(val.auc[i][hernia]) and val.reasons[i][hernia] == "no positive case"
    assert val.hover[i][hernia] == ("trial_0 / Hernia: no AUC: no positive case in validation "
                                    "(0 of 60 images positive)")
    assert not any(math.isnan(a) for row in test.auc for a in row)


def test_missing_auc_names_the_finding_and_reason(report):
    (m,) = report.missing
    assert (m.split, m.finding, m.reason, m.positives, m.negatives) == (
        "val", "Hernia", "no positive case", 0, 60)
    assert m.models == [r.label for r in report.leaderboard.rows if r.trial_id != "t3"]


def test_learning_curves_mark_asha_stops(results, report):
    curves = {c.trial_id: c for c in report.curves.curves}
    assert set(curves) == set(results.trials.trial_id)
    assert curves["t2"].stopped_at == 2 and curves["t2"].epochs == [1, 2]
    assert all(c.stopped_at is None for t, c in curves.items() if t != "t2")
    ep = results.epochs[results.epochs.trial_id == "t0"]
    assert curves["t0"].values == ep.val_mean_auc.tolist()


def test_roc_panels_are_the_verdict_models_on_test(results, report, fx):
    roc = report.roc
    assert roc.split == "test" and roc.labelled_split == "test"
    assert len(roc.panels) == len(results.findings)
    for c, panel in enumerate(roc.panels):
        assert [cv.label for cv in panel.curves] == ["trial_0", report.verdict.baseline.label]
        for cv in panel.curves:
            tid = "t0" if cv.role == "recipe" else report.verdict.baseline.trial_id
            y, p, _ = fx.split_arrays(results, tid, "test")
            assert cv.auc == pytest.approx(roc_auc_score(y[:, c], p[:, c]), abs=1e-12)
            assert cv.fpr[0] == 0 and cv.tpr[-1] == 1


def test_mae_section_shows_the_best_recipes_encoder(results, report):
    mae = report.mae
    assert (mae.trial_label, mae.pretrain_key, mae.role) == ("trial_0", "pk_a", "trained")
    assert [im.image_id for im in mae.images] == ["val_0000.png", "val_0001.png"]
    rec = results.reconstructions
    stored = rec[(rec.image_id == "val_0001.png") & (rec.panel == "reconstruction")].png.iloc[0]
    assert base64.b64decode(mae.images[1].panels["reconstruction"]) == stored
    assert list(mae.images[0].panels) == ["masked", "reconstruction", "original"]
    assert mae.loss_epochs == [1, 2, 3, 4] and mae.loss_values[0] == pytest.approx(1.0)
    assert mae.encoder["used_by"] == ["trial_0", "trial_1"] and mae.message is None
    assert mae.encoder["trained_by"] == "trial_0" and mae.encoder["epochs"] == 4


def test_mae_section_says_why_it_is_empty(store, make_store):
    r = load_results(store)
    r.trials.loc[r.trials.trial_id == "t0", "pretrain_role"] = "imported"
    data = collect(r, n_resamples=50)
    assert data.mae.images == [] and "imported checkpoint" in data.mae.message
    data = collect(load_results(make_store(with_reconstructions=False)), n_resamples=50)
    assert data.mae.message == "For encoder pk_a: no reconstructions were stored."
    assert data.mae.loss_epochs == [1, 2, 3, 4]


def test_repro_lists_known_keys_in_order_then_unknown_ones(report, tmp_path):
    headings = [h for h, _ in report.repro.facts]
    assert headings[:3] == ["search name", "created", "scale"]
    assert "data (source, fingerprint, split sizes, patients, skipped files)" in headings
    assert dict(report.repro.facts)["wall time per stage"] == {"pretrain": "81.0 s",
                                                               "finetune": "2.0 min"}
    assert [c.config_hash for c in report.repro.configs][:2] == ["hash00", "hash01"]
    assert report.repro.spec_yaml.startswith("name: fixture")

    # A bare store (a search that produced nothing yet) still gives every section.
    write_results(tmp_path, {"name": "bare", "findings": ["A", "B"], "newer_key": {"x": 1}},
                  trials=pd.DataFrame(columns=["trial_id", "kind", "label", "status"]))
    data = collect(load_results(tmp_path), n_resamples=10)
    assert data.repro.facts == [("search name", "bare"), ("findings", ["A", "B"]),
                                ("newer_key", {"x": 1})]
    assert "nothing to compare" in data.verdict.sentence
    assert data.leaderboard.rows == [] and data.heatmaps == [] and data.missing == []
    assert data.knobs.message and data.curves.message and data.roc.message


def test_intervals_that_lost_resamples_are_named(store, fx):
    r = load_results(store)
    val = r.labels.split == "val"
    r.labels.loc[val, "Atelectasis"] = 0
    r.labels.loc[val & (r.labels.image_id == "val_0011.png"), "Atelectasis"] = 1  # one patient
    data = collect(r, n_resamples=200)
    y, p, pids = fx.split_arrays(r, "t0", "val")
    used = bootstrap_auc(y, p, pids, r.findings, n_resamples=200).mean_resamples_used
    assert 0 < used < 200  # resamples without that patient have no Atelectasis AUC
    assert f"trial_0 (validation): {used:,} of 200 resamples" in data.leaderboard.fragile
    assert len(data.leaderboard.fragile) == 7  # every model scored on validation, not on test
