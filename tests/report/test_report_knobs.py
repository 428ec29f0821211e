"""Knob effects and Optuna parameter importance on a study rebuilt from the results store."""

from __future__ import annotations

import warnings

import optuna
import pytest

from explorer.report import collect, make_figures
from explorer.report.knobs import get_importance_info, get_knob_info
from explorer.report.scores import evaluate, ranked_trials
from explorer.results import load_results


def _knobs(results):
    ev = evaluate(results, n_resamples=10)
    return get_knob_info(results, ranked_trials(results, ev))


def test_knob_points_are_recipe_trials_with_a_validation_score(report):
    k = report.knobs
    assert [a.path for a in k.axes] == ["finetune.layer_decay", "finetune.randaug_magnitude",
                                        "pretrain.mask_ratio"]
    assert [(a.type, a.log) for a in k.axes] == [("float", True), ("categorical", False),
                                                 ("float", False)]
    assert k.axes[1].choices == [None, 6, 9]
    board = {r.trial_id: r.val_auc for r in report.leaderboard.rows}
    assert {p.trial_id: p.value for p in k.points} == {t: board[t] for t in ("t0", "t1", "t2",
                                                                              "t4")}
    assert {p.trial_id: p.status for p in k.points}["t2"] == "stopped_early"


def test_importance_equals_ped_anova_on_the_same_trials(report):
    imp = report.importance
    assert imp.evaluator == "PedAnovaImportanceEvaluator" and imp.message is None
    assert imp.n_trials == 4 and imp.skipped == [] and imp.unranked == []
    # The same study built by hand, from the fixture's values and search space.
    dist = {"finetune.layer_decay": optuna.distributions.FloatDistribution(0.4, 0.9, log=True),
            "finetune.randaug_magnitude": optuna.distributions.CategoricalDistribution(
                ["None", "6", "9"]),
            "pretrain.mask_ratio": optuna.distributions.FloatDistribution(0.5, 0.95)}
    study = optuna.create_study(direction="maximize")
    for p in report.knobs.points:
        params = dict(p.params)
        params["finetune.randaug_magnitude"] = {None: "None", 6: "6", 9: "9"}[
            params["finetune.randaug_magnitude"]]
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dist,
                                                  value=p.value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = optuna.importance.get_param_importances(study)
    assert imp.importances == pytest.approx(expected)
    assert list(imp.importances) == list(expected)  # most important first
    assert sum(imp.importances.values()) == pytest.approx(1.0)


def test_one_searched_parameter_gives_a_sentence_not_a_crash(make_store):
    store = make_store(searched={"pretrain.mask_ratio": {"type": "float", "low": 0.5,
                                                         "high": 0.95}})
    results = load_results(store)
    assert results.param_columns == ["param/pretrain.mask_ratio"]
    data = collect(results, n_resamples=50)
    assert data.importance.importances == {}
    assert data.importance.message == ("No parameter importance: only one parameter (mask ratio) "
                                       "was searched, so there is nothing to rank it against; "
                                       "see its plot above.")
    keys = [f.key for f in make_figures(data)]
    assert "importance" not in keys and "knobs" in keys and "parallel" in keys


def test_too_few_trials_gives_a_sentence(store):
    results = load_results(store)
    results.trials.loc[results.trials.trial_id.isin(["t1", "t2", "t4"]), "status"] = "failed"
    imp = get_importance_info(results, _knobs(results))
    assert imp.importances == {} and imp.n_trials == 1
    assert imp.message == ("No parameter importance: 1 trial(s) with a validation score; at "
                           "least two trials and two parameters are needed.")


def test_conditional_and_out_of_range_values(store):
    results = load_results(store)
    t = results.trials
    t.loc[t.trial_id == "t1", "param/finetune.layer_decay"] = None  # not sampled (conditional)
    t.loc[t.trial_id == "t4", "param/pretrain.mask_ratio"] = 2.0  # outside [0.5, 0.95]
    imp = get_importance_info(results, _knobs(results))
    assert imp.skipped == ["trial_4: pretrain.mask_ratio=2 is outside the searched range"]
    assert imp.unranked == ["finetune.layer_decay", "pretrain.mask_ratio"]
    assert imp.importances == {}  # one parameter left in every trial: nothing to rank
    assert "only 1 parameter(s) appear in every trial" in imp.message


def test_unknown_parameter_space_is_inferred_from_the_column(store):
    results = load_results(store)
    results.meta["searched"] = {}
    axes = _knobs(results).axes
    assert [(a.path, a.type) for a in axes] == [
        ("pretrain.mask_ratio", "float"), ("finetune.layer_decay", "float"),
        ("finetune.randaug_magnitude", "float")]
