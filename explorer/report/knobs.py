"""Section 4, knob effects: validation mean AUC against each searched parameter, and Optuna's
parameter importance computed on a study rebuilt from the results store.

The study is rebuilt with ``optuna.create_study`` + ``study.add_trial(create_trial(...))`` from
the trials table and the search space in ``meta["searched"]`` (param path -> ``{"type", "low",
"high", "log", "step", "choices"}``); no live Optuna or Ray object is needed.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import optuna
import pandas as pd

from explorer.report._format import fmt_value, is_missing, param_name
from explorer.report.scores import trial_params
from explorer.results import Results

# Stated on the page. PED-ANOVA is Optuna's default evaluator (Optuna >= 4.x) and works on
# the few trials a small search has; fANOVA needs many more.
EVALUATOR = optuna.importance.PedAnovaImportanceEvaluator
USED_STATUSES = ("completed", "stopped_early")


class ParamAxis(NamedTuple):
    path: str  # dotted path, e.g. "pretrain.mask_ratio"
    name: str  # short display name, e.g. "mask ratio"
    type: str  # "float" | "int" | "categorical"
    log: bool
    low: float | None
    high: float | None
    step: float | None
    choices: list | None  # categorical only


class KnobPoint(NamedTuple):
    trial_id: str
    label: str
    status: str  # "completed" | "stopped_early"
    value: float  # validation mean AUC at the best epoch
    params: dict[str, object]


class KnobInfo(NamedTuple):
    axes: list[ParamAxis]
    points: list[KnobPoint]  # recipe trials with a validation score, leaderboard order
    message: str | None  # why there is nothing to plot (None when there is)


class ImportanceInfo(NamedTuple):
    evaluator: str  # class name of the Optuna evaluator
    importances: dict[str, float]  # param path -> importance (sums to 1), most important first
    n_trials: int  # trials in the rebuilt study
    skipped: list[str]  # "trial_3: finetune.layer_decay=1.5 outside the searched space"
    unranked: list[str]  # searched paths not in every trial (conditional), not ranked
    warnings: list[str]  # what Optuna warned about (e.g. too few trials)
    message: str | None  # a sentence instead of a chart, when importances cannot be computed


def _axes(results: Results) -> list[ParamAxis]:
    searched = results.meta.get("searched") or {}
    columns = [c[len("param/"):] for c in results.param_columns]
    paths = list(dict.fromkeys([*searched, *columns]))
    axes = []
    for path in paths:
        space = searched.get(path) if isinstance(searched.get(path), dict) else {}
        kind = space.get("type")
        if kind not in ("float", "int", "categorical"):
            # Not described in meta.json: numeric columns become floats, the rest categories.
            col = results.trials.get(f"param/{path}", pd.Series(dtype=object)).dropna()
            kind = "float" if pd.api.types.is_numeric_dtype(col) and len(col) else "categorical"
            space = {"type": kind, "choices": sorted(map(str, col.unique()))} \
                if kind == "categorical" else {"type": kind}
        axes.append(ParamAxis(path, param_name(path, paths), kind, bool(space.get("log")),
                              space.get("low"), space.get("high"), space.get("step"),
                              list(space["choices"]) if kind == "categorical" and
                              space.get("choices") is not None else None))
    return axes


def get_knob_info(results: Results, ranked: pd.DataFrame) -> KnobInfo:
    axes = _axes(results)
    points = []
    if not ranked.empty:
        for _, r in ranked[ranked["kind"] == "recipe"].iterrows():
            if r["status"] in USED_STATUSES and not is_missing(r["_val"]):
                points.append(KnobPoint(str(r["trial_id"]), str(r["label"]), str(r["status"]),
                                        float(r["_val"]), trial_params(r)))
    message = None
    if not axes:
        message = "No parameter was searched, so there are no knob effects to show."
    elif not points:
        message = "No recipe trial has a validation score yet, so there are no knob effects."
    return KnobInfo(axes, points, message)


def _same(a, b) -> bool:
    if is_missing(a) or is_missing(b):
        return is_missing(a) and is_missing(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    try:
        return a == b or float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _distribution(axis: ParamAxis) -> optuna.distributions.BaseDistribution:
    if axis.type == "categorical":
        # Optuna's choices must be None/bool/int/float/str and distinct: use their repr.
        return optuna.distributions.CategoricalDistribution([repr(c) for c in axis.choices])
    if axis.type == "int":
        return optuna.distributions.IntDistribution(
            int(axis.low), int(axis.high), log=axis.log, step=int(axis.step or 1))
    return optuna.distributions.FloatDistribution(axis.low, axis.high, log=axis.log,
                                                  step=axis.step)


def _trial_value(axis: ParamAxis, value):
    """The value as the rebuilt distribution wants it, or raise ValueError."""
    if axis.type == "categorical":
        for choice in axis.choices:
            if _same(choice, value):
                return repr(choice)
        raise ValueError("is not one of the searched choices")
    value = int(value) if axis.type == "int" else float(value)
    if not axis.low <= value <= axis.high:
        raise ValueError("is outside the searched range")
    return value


def get_importance_info(results: Results, knobs: KnobInfo) -> ImportanceInfo:
    """Rebuild an Optuna study from the trials and rank the parameters with PED-ANOVA."""
    name = EVALUATOR.__name__
    axes = [a for a in knobs.axes if a.type != "categorical" or a.choices]
    empty = dict(evaluator=name, importances={}, n_trials=0, skipped=[], unranked=[],
                 warnings=[])
    if len(axes) < 2:
        what = f"only one parameter ({axes[0].name}) was searched" if axes else \
            "no parameter was searched"
        return ImportanceInfo(**empty, message=f"No parameter importance: {what}, so there is "
                              f"nothing to rank it against; see its plot above.")
    dists = {a.path: _distribution(a) for a in axes}
    trials, skipped = [], []
    for p in knobs.points:
        params = {}
        for a in axes:
            value = p.params.get(a.path)
            if is_missing(value) and not (a.type == "categorical" and None in a.choices):
                continue  # a conditional parameter this trial did not sample
            try:
                params[a.path] = _trial_value(a, value)
            except (TypeError, ValueError) as e:
                skipped.append(f"{p.label}: {a.path}={fmt_value(value)} {e}")
        if not params or not math.isfinite(p.value):
            continue
        try:  # create_trial also checks step alignment
            trials.append(optuna.trial.create_trial(
                params=params, distributions={k: dists[k] for k in params}, value=p.value))
        except ValueError as e:
            skipped.append(f"{p.label}: {e}")
    present = [a.path for a in axes if trials and all(a.path in t.params for t in trials)]
    unranked = [a.path for a in axes if a.path not in present]
    empty.update(n_trials=len(trials), skipped=skipped, unranked=unranked)
    if len(trials) < 2 or len(present) < 2:
        why = (f"{len(trials)} trial(s) with a validation score" if len(trials) < 2 else
               f"only {len(present)} parameter(s) appear in every trial")
        return ImportanceInfo(**empty, message=f"No parameter importance: {why}; at least two "
                              f"trials and two parameters are needed.")

    old = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" lines
    try:
        study = optuna.create_study(direction="maximize")
        study.add_trials(trials)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            importances = optuna.importance.get_param_importances(study, evaluator=EVALUATOR())
    finally:
        optuna.logging.set_verbosity(old)
    told = list(dict.fromkeys(str(w.message) for w in caught))
    return ImportanceInfo(**{**empty, "warnings": told, "importances": dict(importances)},
                          message=None)
