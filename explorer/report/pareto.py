"""Report section 10, "Cost": what each recipe costs against its validation mean AUC, the
Pareto front of the two, the search's whole spend, and the best recipe within a budget.

A recipe's cost is ``recipe_device_s`` (``explorer.results.cost``): its whole pre-training plus
its fine-tuning at the full planned epochs, in device-seconds (GPU-seconds on GPUs, CPU-core
seconds on CPUs); it does not depend on which search paid for the encoder. The front and the
budget use the recipes' validation mean AUC, never test, as every selection in the report. A
recipe ASHA stopped early has a partial-budget AUC: it is drawn, marked, and left off the
front (its AUC is not what the recipe reaches).
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from explorer.errors import UserError
from explorer.report._format import fmt_auc, fmt_value, param_name
from explorer.report._markup import Markup, table, tag
from explorer.report.scores import trial_params

#: --budget's units (device-seconds each); a bare number is device-hours.
UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_budget(text: str) -> float:
    """``"2"`` / ``"2h"`` / ``"90m"`` / ``"900s"`` -> device-seconds (positive, finite)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(s|m|min|h)?\s*", str(text), re.I)
    value = float(m.group(1)) * UNITS[(m.group(2) or "h").lower()] if m else math.nan
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"--budget {text!r}: give a positive device time, e.g. 2 (hours), "
                        "90m or 900s")
    return value


class CostPoint(NamedTuple):
    trial_id: str
    params: str  # "mask ratio 0.9"
    auc: float
    cost_s: float
    full_budget: bool  # fine-tuned to the end (not stopped early)
    on_front: bool


class CostInfo(NamedTuple):
    device: str  # "GPU" | "CPU"
    points: list[CostPoint]
    spend: dict  # meta.json "cost": the search's whole spend
    multi_objective: bool
    budget_s: float | None
    within: CostPoint | None  # the best recipe whose cost fits the budget
    cheapest: CostPoint | None


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (auc, cost) pairs: True where no other pair has auc >= and cost <=, one strictly."""
    return [not any(a2 >= a and c2 <= c and (a2 > a or c2 < c) for a2, c2 in points)
            for a, c in points]


def get_cost_info(results, budget_s: float | None = None) -> CostInfo | None:
    """None when the results store records no costs (made before cost recording)."""
    t = results.trials
    if "recipe_device_s" not in t:
        if budget_s is not None:
            raise UserError("--budget: this results store records no costs (it was made "
                            "before cost recording); run the search again to get them")
        return None
    rec = t[(t["kind"] == "recipe") & t["val_mean_auc"].notna() & t["recipe_device_s"].notna()]
    paths = [c for c in t.columns if c.startswith("param/")]
    names = [p[len("param/"):] for p in paths]
    full = [s == "completed" for s in rec["status"]]
    pairs = [(float(a), float(c)) for a, c in zip(rec["val_mean_auc"], rec["recipe_device_s"])]
    front = pareto_front([p for p, f in zip(pairs, full) if f])
    it = iter(front)
    points = []
    for (_, row), (auc, cost), f in zip(rec.iterrows(), pairs, full):
        text = ", ".join(f"{param_name(k, names)} {fmt_value(v)}"
                         for k, v in trial_params(row).items() if v is not None)
        points.append(CostPoint(str(row["trial_id"]), text, auc, cost, f, next(it) if f else
                                False))
    done = [p for p in points if p.full_budget]
    within = cheapest = None
    if budget_s is not None:
        fits = [p for p in done if p.cost_s <= budget_s]
        within = max(fits, key=lambda p: (p.auc, -p.cost_s)) if fits else None
        cheapest = min(done, key=lambda p: p.cost_s) if done else None
    spec = results.meta.get("spec") or {}
    objective = ((spec.get("search") or {}).get("objective") or ["auc"]) \
        if isinstance(spec, dict) else ["auc"]
    device = str(rec["device"].iloc[0]) if len(rec) and "device" in rec else "CPU"
    return CostInfo(device, points, results.meta.get("cost") or {}, objective == ["auc", "cost"],
                    budget_s, within, cheapest)


def _hours(s: float, device: str) -> str:
    return f"{s / 3600:.3g} {device}-hours"  # one unit everywhere: the table compares rows


def pareto_plot(info: CostInfo | None):
    """Validation mean AUC against the recipe's cost; the front as a line; the budget."""
    import plotly.graph_objects as go

    if info is None or not info.points:
        return None
    fig = go.Figure()
    groups = (("on the Pareto front", lambda p: p.on_front, "circle"),
              ("fine-tuned to the end", lambda p: p.full_budget and not p.on_front,
               "circle-open"),
              ("stopped early (partial AUC)", lambda p: not p.full_budget, "x"))
    for name, keep, symbol in groups:
        pts = [p for p in info.points if keep(p)]
        if pts:
            fig.add_trace(go.Scatter(
                x=[p.cost_s / 3600 for p in pts], y=[p.auc for p in pts], mode="markers",
                name=name, marker=dict(symbol=symbol, size=10), text=[p.params for p in pts],
                hovertemplate="%{text}<br>%{y:.3f} val mean AUC<br>%{x:.3g} h<extra></extra>"))
    front = sorted((p for p in info.points if p.on_front), key=lambda p: p.cost_s)
    if len(front) > 1:
        fig.add_trace(go.Scatter(x=[p.cost_s / 3600 for p in front], y=[p.auc for p in front],
                                 mode="lines", line=dict(shape="hv"), showlegend=False,
                                 hoverinfo="skip"))
    if info.budget_s is not None:
        fig.add_vline(x=info.budget_s / 3600, line_dash="dash", annotation_text="budget")
    fig.update_layout(template="plotly_white", height=420,
                      xaxis_title=f"recipe cost ({info.device}-hours: pre-training + "
                                  "fine-tuning at the full budget)",
                      yaxis_title="validation mean AUC", margin=dict(l=60, r=20, t=40, b=50))
    return fig


def cost_section(info: CostInfo | None, fig) -> Markup:
    if info is None:
        return Markup("")
    parts = []
    s = info.spend
    if s:
        parts.append(tag("p", f"This search spent {_hours(s['total_device_s'], info.device)}: "
                              f"{s['pretrain_epochs']} pre-training epochs "
                              f"({_hours(s['pretrain_device_s'], info.device)}, "
                              f"{_hours(s['stopped_encoders_device_s'], info.device)} of it on "
                              f"encoders stopped early) and {s['finetune_epochs']} fine-tuning "
                              "epochs of recipes, plus baselines "
                              f"({_hours(s['baselines_device_s'], info.device)})."))
    if info.multi_objective:
        parts.append(tag("p", "The search was multi-objective (search.objective: [auc, cost]): "
                              "Optuna proposed recipes trading validation mean AUC against "
                              "this cost.", class_="note"))
    if info.budget_s is not None:
        b = _hours(info.budget_s, info.device)
        if info.within is not None:
            w = info.within
            line = (f"Best recipe within a budget of {b}: {w.params or w.trial_id} "
                    f"({fmt_auc(w.auc)} validation mean AUC, {_hours(w.cost_s, info.device)}).")
        else:
            c = info.cheapest
            line = (f"No recipe fine-tuned to the end fits a budget of {b}"
                    + (f"; the cheapest is {c.params or c.trial_id} "
                       f"({_hours(c.cost_s, info.device)})." if c else "."))
        parts.append(tag("p", tag("strong", line)))
    parts.append(fig("pareto"))
    rows = [[p.params or p.trial_id, fmt_auc(p.auc), _hours(p.cost_s, info.device),
             "yes" if p.on_front else ("stopped early" if not p.full_budget else "")]
            for p in sorted(info.points, key=lambda p: p.cost_s)]
    if rows:
        parts.append(table(["recipe", "val mean AUC", "recipe cost", "Pareto front"], rows,
                           num_cols=(1, 2)))
    return tag("section", tag("h2", "10. Cost"), *parts, id="cost")

