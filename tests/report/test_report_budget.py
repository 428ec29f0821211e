"""Budget-limited verdicts: curves still rising at their last epoch are named (report.budget)."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from explorer.report import collect
from explorer.report.budget import (
    AUC_GAIN,
    LOSS_SHARE,
    final_third_gain,
    final_third_share,
    get_budget_info,
    still_improving,
    still_learning,
)
from explorer.results import load_results, write_results


def test_final_third_gain_is_the_rise_of_the_best_so_far():
    # 6 epochs: the last third is epochs 5-6; best before it 0.70, best in it 0.75
    assert final_third_gain([0.5, 0.6, 0.65, 0.70, 0.72, 0.75]) == pytest.approx(0.05)
    # a noisy dip in the last epoch does not hide the rise ...
    assert final_third_gain([0.5, 0.6, 0.65, 0.70, 0.75, 0.71]) == pytest.approx(0.05)
    # ... and a curve that peaked earlier has a negative gain
    assert final_third_gain([0.5, 0.8, 0.7, 0.7, 0.69, 0.7]) == pytest.approx(-0.1)
    # 15 epochs: the last third is 5 epochs
    curve = [0.6] * 10 + [0.6, 0.6, 0.6, 0.6, 0.605]
    assert final_third_gain(curve) == pytest.approx(0.005)
    assert math.isnan(final_third_gain([0.7]))
    assert math.isnan(final_third_gain([]))


def test_final_third_share_of_the_loss_fall():
    # 9 epochs, whole fall 3 -> 0.9 (2.1); the last third (after epoch 6, loss 1.0) brings 0.1
    losses = [3, 2, 1.5, 1.2, 1.1, 1.0, 0.97, 0.93, 0.9]
    assert final_third_share(losses) == pytest.approx(0.1 / 2.1)
    assert not still_learning(losses)  # levelling off
    line = [3.0 - 0.25 * i for i in range(9)]  # a straight line: 3 of its 8 steps
    assert final_third_share(line) == pytest.approx(3 / 8)
    assert still_learning(line)
    assert math.isnan(final_third_share([1.0, 0.9]))
    assert math.isnan(final_third_share([1.0, 1.1, 1.2]))  # never fell


def test_still_improving_needs_all_epochs_best_last_and_a_rise():
    rising = [0.5, 0.6, 0.65, 0.70, 0.72, 0.75]
    assert still_improving(rising, best_epoch=6, epochs_planned=6)
    assert not still_improving(rising, best_epoch=5, epochs_planned=6)  # best not the last
    assert not still_improving(rising[:3], best_epoch=3, epochs_planned=6)  # stopped early
    flat = [0.5, 0.7, 0.75, 0.76, 0.762, 0.7625]
    assert final_third_gain(flat) < AUC_GAIN
    assert not still_improving(flat, best_epoch=6, epochs_planned=6)


def _with_curves(src, dst, curves: dict[str, list[float]], losses: dict[str, list[float]]):
    """A copy of the fixture store with some learning curves and encoder losses replaced."""
    r = load_results(src)
    epochs = r.epochs[~r.epochs.trial_id.isin(curves)]
    rows = [dict(trial_id=t, epoch=i + 1, val_mean_auc=v, train_loss=1.0, lr=1e-3,
                 epoch_time_s=1.0) for t, c in curves.items() for i, v in enumerate(c)]
    trials = r.trials.copy()
    for t, c in curves.items():
        best = max(range(len(c)), key=c.__getitem__) + 1
        trials.loc[trials.trial_id == t, ["epochs_run", "best_epoch"]] = [len(c), best]
    ee = r.encoder_epochs[~r.encoder_epochs.pretrain_key.isin(losses)]
    ee = pd.concat([ee, pd.DataFrame([dict(pretrain_key=k, epoch=i + 1, loss=v)
                                      for k, v in losses.items() for i, v in enumerate(v)])])
    write_results(dst, r.meta, trials=trials, epochs=pd.concat([epochs, pd.DataFrame(rows)]),
                  classes=r.classes, predictions=r.predictions, labels=r.labels,
                  encoders=r.encoders, encoder_epochs=ee, reconstructions=r.reconstructions)
    return dst


FLAT = [0.55, 0.65, 0.70, 0.71, 0.712, 0.713]
RISING = [0.55, 0.60, 0.63, 0.66, 0.70, 0.74]
FLAT_LOSS = [1.0, 0.6, 0.5, 0.495, 0.49, 0.489]  # last third: 1% of the fall
STEEP_LOSS = [1.0, 0.8, 0.7, 0.6, 0.5, 0.48]


def test_nothing_is_flagged_when_every_curve_flattened(store, tmp_path, fx):
    flat = {t: FLAT for t in ("t0", "t1", "t4", "b0", "b1", "b2")}
    run = _with_curves(store, tmp_path, flat, {"pk_a": FLAT_LOSS, "pk_b": FLAT_LOSS})
    data = collect(load_results(run), n_resamples=fx.N_RESAMPLES)
    assert data.verdict.budget_note is None
    assert not any(r.still_improving or r.encoder_learning for r in data.leaderboard.rows)


def test_a_rising_verdict_side_is_marked_and_named(store, tmp_path, fx):
    results = load_results(store)
    data = collect(results, n_resamples=fx.N_RESAMPLES)
    recipe, baseline = data.verdict.recipe.trial_id, data.verdict.baseline.trial_id
    curves = {t: FLAT for t in ("t0", "t1", "t4", "b0", "b1", "b2")}
    curves[baseline] = RISING
    run = _with_curves(store, tmp_path, curves, {"pk_a": STEEP_LOSS, "pk_b": FLAT_LOSS})
    results = load_results(run)
    budget = get_budget_info(results)
    assert set(budget.improving) == {baseline}
    assert budget.improving[baseline] == pytest.approx(0.74 - 0.66)
    # STEEP_LOSS: fall 1.0 -> 0.48 (0.52), last third 0.6 -> 0.48 (0.12)
    assert set(budget.learning) == {"pk_a"}
    assert budget.learning["pk_a"] == pytest.approx(0.12 / 0.52)
    assert budget.learning["pk_a"] > LOSS_SHARE

    data = collect(results, n_resamples=fx.N_RESAMPLES)
    assert data.verdict.recipe.trial_id == recipe
    note = data.verdict.budget_note
    assert note is not None and note.endswith(".")
    assert re.search(r"\.\s+[A-Z]", note) is None  # one sentence
    assert "still improving" in note and "finetune.epochs" in note
    key = results.trials.set_index("trial_id").at[recipe, "pretrain_key"]
    assert ("pretrain.epochs" in note) == (key == "pk_a")
    rows = {r.trial_id: r for r in data.leaderboard.rows}
    assert rows[baseline].still_improving and not rows[recipe].still_improving
    assert rows["t0"].encoder_learning and not rows["t4"].encoder_learning


def test_a_trial_stopped_by_asha_is_never_budget_limited(store, tmp_path):
    # t2 was stopped early (2 of 6 epochs) with its best epoch last and a steep rise
    run = _with_curves(store, tmp_path, {"t2": [0.5, 0.7]}, {})
    assert "t2" not in get_budget_info(load_results(run)).improving
