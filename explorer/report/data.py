"""The report's data step: from a results store to one plain record per page section.

Pure: it reads only ``explorer.results.Results`` (no files, no Plotly), and every number on the
page comes from here, so the tests check these records exactly (like Optuna's
``_get_xxx_info``). The figure step (``figures``) and the HTML assembly (``html``) only render.
"""

from __future__ import annotations

from typing import NamedTuple

from explorer.report import budget, curves, knobs, leaderboard, repro, study, verdict
from explorer.report.scores import Evaluation, data_source, evaluate, ranked_trials
from explorer.results import Results

DEFAULT_RESAMPLES = 2000


class ReportData(NamedTuple):
    """Everything the page shows, section by section (see each ``get_*_info``)."""

    name: str
    source: str | None
    scale: str | None
    evaluation: Evaluation
    verdict: verdict.VerdictInfo
    leaderboard: leaderboard.LeaderboardInfo
    heatmaps: list[leaderboard.HeatmapInfo]  # one per split with predictions
    missing: list[leaderboard.MissingAuc]
    knobs: knobs.KnobInfo
    importance: knobs.ImportanceInfo
    curves: curves.CurvesInfo
    roc: curves.RocInfo
    mae: curves.MaeInfo
    repro: repro.ReproInfo
    study: study.StudyTableInfo


def collect(results: Results, *, n_resamples: int | None = None, seed: int = 0) -> ReportData:
    """Run the whole data step. ``n_resamples`` defaults to the spec's ``bootstrap`` (2000)."""
    if n_resamples is None:
        spec = results.meta.get("spec")
        stated = spec.get("bootstrap") if isinstance(spec, dict) else None
        n_resamples = int(stated) if stated else DEFAULT_RESAMPLES
    ev = evaluate(results, n_resamples=n_resamples, seed=seed)
    ranked = ranked_trials(results, ev)
    spent = budget.get_budget_info(results)
    v = verdict.get_verdict_info(results, ev, ranked, spent)
    board = leaderboard.get_leaderboard_info(results, ev, ranked, spent)
    knob = knobs.get_knob_info(results, ranked)
    return ReportData(
        name=str(results.meta.get("name", "search")),
        source=data_source(results.meta),
        scale=results.meta.get("scale"),
        evaluation=ev,
        verdict=v,
        leaderboard=board,
        heatmaps=leaderboard.get_heatmap_infos(results, ev, ranked),
        missing=leaderboard.get_missing_auc_info(results, ev, ranked),
        knobs=knob,
        importance=knobs.get_importance_info(results, knob),
        curves=curves.get_curves_info(results),
        roc=curves.get_roc_info(results, v),
        mae=curves.get_mae_info(results, v, ranked),
        repro=repro.get_repro_info(results, seed),
        study=study.get_study_table_info(results, ev, ranked),
    )
