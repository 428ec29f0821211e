"""The verdict: which models, split and numbers, and what it says when it cannot compare."""

from __future__ import annotations

import pytest

from explorer.metrics import mean_auc, paired_comparison
from explorer.report import collect
from explorer.results import load_results


def _best_by_val(results, fx, ids):
    return max(ids, key=lambda t: mean_auc(*fx.split_arrays(results, t, "val")[:2]))


def test_verdict_compares_best_recipe_with_best_densenet_on_test(store, report, fx):
    results = load_results(store)
    v = report.verdict
    recipe = _best_by_val(results, fx, ["t0", "t1"])  # the finalists (scored on test)
    baseline = _best_by_val(results, fx, ["b0", "b1", "b2"])
    assert (v.recipe.trial_id, v.baseline.trial_id) == (recipe, baseline)
    assert v.split == "test" and v.fallback_reason is None

    y, a, pids = fx.split_arrays(results, recipe, "test")
    _, b, _ = fx.split_arrays(results, baseline, "test")
    cmp = paired_comparison(y, a, b, pids, results.findings, n_resamples=fx.N_RESAMPLES, seed=0)
    assert v.delta == pytest.approx(cmp.delta_mean, abs=1e-12)
    assert v.delta_ci == pytest.approx(cmp.delta_ci, abs=1e-12)
    assert v.p_value == pytest.approx(cmp.p_value, abs=1e-12)
    assert v.recipe_auc == pytest.approx(mean_auc(y, a), abs=1e-12)
    assert v.baseline_auc == pytest.approx(mean_auc(y, b), abs=1e-12)
    assert (v.n_images, v.n_patients) == (60, 30)
    assert v.sentence.startswith(
        "On the test split (60 images, 30 patients), recipe 'trial_0' (layer decay 0.55, "
        "randaug magnitude 6, mask ratio 0.9) reached mean AUC ")
    seed = int(baseline[1:])
    assert f"for DenseNet-121 (seed {seed}): {cmp.delta_mean:+.3f} [" in v.sentence
    assert v.sentence.endswith(f"(paired patient bootstrap, {fx.N_RESAMPLES:,} resamples; "
                               "95% intervals in brackets).")


def test_verdict_without_test_images_falls_back_to_validation(make_store, fx):
    results = load_results(make_store(with_test=False))
    v = collect(results, n_resamples=100).verdict
    assert v.split == "val"
    assert v.fallback_reason == "there are no test predictions because the data has no test images"
    assert v.recipe.trial_id == _best_by_val(results, fx, ["t0", "t1", "t2", "t4"])
    assert "On the VALIDATION split (60 images, 30 patients)" in v.sentence
    assert v.excluded == [("Hernia", "no positive case")]
    assert v.sentence.endswith("Means are over 4 of 5 findings (left out: Hernia: no positive "
                               "case).")
    assert any("optimistic" in n for n in v.notes)


def test_verdict_without_baselines_says_so(make_store):
    v = collect(load_results(make_store(with_baselines=False)), n_resamples=100).verdict
    assert v.baseline is None and v.delta is None
    assert v.fallback_reason.startswith("this search ran no baseline")
    assert v.sentence.endswith("there is no baseline to compare it with.")


def test_verdict_falls_back_to_another_baseline_architecture(store):
    r = load_results(store)
    r.trials.loc[r.trials.kind == "baseline", "arch"] = "resnet50"
    v = collect(r, n_resamples=100).verdict
    assert v.baseline.arch == "resnet50"
    assert "for ResNet-50 (seed" in v.sentence
    assert v.notes[0] == "No DenseNet-121 baseline ran; the best baseline is ResNet-50."


def test_verdict_prefers_densenet_over_a_better_other_baseline(store):
    r = load_results(store)
    r.trials.loc[r.trials.trial_id == "b1", "arch"] = "resnet50"  # b1 is the best by val
    v = collect(r, n_resamples=100).verdict
    assert v.baseline.arch == "densenet121" and v.baseline.trial_id != "b1"


def test_verdict_with_no_recipe_predictions(store):
    r = load_results(store)
    r.predictions = r.predictions[~r.predictions.trial_id.str.startswith("t")]
    v = collect(r, n_resamples=100).verdict
    assert v.recipe is None and v.split is None
    assert v.sentence == ("No recipe trial has validation predictions (5 recipe trial(s) in the "
                          "results), so there is nothing to compare.")
