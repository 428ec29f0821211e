"""Report section 10 (cost): the Pareto front of validation mean AUC against recipe cost, the
search's spend, and the best recipe within a ``--budget``."""

from __future__ import annotations

import math

import pytest

from explorer.errors import UserError
from explorer.report import build_report, collect
from explorer.report.__main__ import main as report_main
from explorer.report.pareto import get_cost_info, pareto_front, parse_budget
from explorer.results import load_results, write_results

N_RESAMPLES = 200
# recipe cost (device-seconds) per fixture trial: t2 was stopped early, t3 failed
COSTS = {"t0": 300.0, "t1": 120.0, "t2": 60.0, "t3": 90.0, "t4": 500.0}
SPEND = {"device": "CPU", "recipes_device_s": 800.0, "baselines_device_s": 200.0,
         "stopped_encoders_device_s": 40.0, "pretrain_device_s": 400.0, "pretrain_epochs": 12,
         "finetune_epochs": 21, "total_device_s": 1040.0}


def _costed(run_dir):
    """The fixture store with the cost columns ``explorer.results.collect`` writes."""
    r = load_results(run_dir)
    t = r.trials.copy()
    t["device"] = "CPU"
    t["recipe_device_s"] = t["trial_id"].map(COSTS)
    tables = {k: getattr(r, k) for k in ("epochs", "classes", "predictions", "labels",
                                         "encoders", "encoder_epochs", "reconstructions")}
    write_results(run_dir, {**r.meta, "cost": SPEND}, trials=t, **tables)
    return run_dir


def test_pareto_front_keeps_the_pairs_nothing_beats():
    pts = [(0.8, 100.0), (0.7, 50.0), (0.75, 120.0), (0.8, 100.0), (0.6, 50.0)]
    assert pareto_front(pts) == [True, True, False, True, False]
    assert pareto_front([]) == []


@pytest.mark.parametrize("text,seconds", [("2", 7200.0), ("0.5h", 1800.0), ("90m", 5400.0),
                                          ("90 min", 5400.0), ("900s", 900.0)])
def test_parse_budget_reads_hours_by_default(text, seconds):
    assert parse_budget(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["0", "-1", "abc", "2d", "1e999", ""])
def test_parse_budget_refuses_what_is_no_positive_time(text):
    with pytest.raises(UserError, match="--budget"):
        parse_budget(text)


def test_cost_info_front_and_budget(make_store):
    run = _costed(make_store())
    res = load_results(run)
    auc = dict(zip(res.trials.trial_id, res.trials.val_mean_auc))
    info = get_cost_info(res, budget_s=400.0)
    pts = {p.trial_id: p for p in info.points}
    assert set(pts) == {"t0", "t1", "t2", "t4"}  # t3 failed: no AUC
    assert not pts["t2"].full_budget and not pts["t2"].on_front  # stopped early: off the front
    done = {t: (auc[t], COSTS[t]) for t in ("t0", "t1", "t4")}
    expect = dict(zip(done, pareto_front(list(done.values()))))
    assert {t: pts[t].on_front for t in done} == expect
    fits = [t for t in done if COSTS[t] <= 400.0]
    assert info.within.trial_id == max(fits, key=lambda t: auc[t])
    assert info.spend == SPEND
    none_fit = get_cost_info(res, budget_s=100.0)
    assert none_fit.within is None and none_fit.cheapest.trial_id == "t1"


def test_report_draws_the_front_and_names_the_recipe_within_budget(make_store, tmp_path):
    run = _costed(make_store())
    page = build_report(run, tmp_path / "out", n_resamples=N_RESAMPLES, budget_s=400.0
                        ).read_text()
    assert "10. Cost" in page and "Validation mean AUC against cost" in page
    assert "Best recipe within a budget of 0.111 CPU-hours" in page
    assert "This search spent 0.289 CPU-hours" in page


def test_report_without_costs_has_no_cost_section(store):
    data = collect(load_results(store), n_resamples=N_RESAMPLES)
    assert data.cost is None


def test_budget_on_a_store_without_costs_is_one_line(store, tmp_path, capsys):
    out = tmp_path / "out"
    assert report_main([str(store), "--out", str(out), "--budget", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --budget: this results store records no costs")
    assert err.count("\n") == 1 and not out.exists()


def test_bad_budget_is_one_line(make_store, tmp_path, capsys):
    run = _costed(make_store())
    assert report_main([str(run), "--out", str(tmp_path / "o"), "--budget", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --budget '0'") and err.count("\n") == 1
    assert math.isfinite(parse_budget("1"))
