"""The figure step: each section's record (``explorer.report.data``) -> Plotly figures.

No numbers are computed here. Plotly renders text (tick labels, legend names, hover text) as a
small subset of HTML, so every user-supplied string goes through ``_t`` (``&``, ``<``, ``>``
escaped; Plotly turns the entities back into the literal characters).
"""

from __future__ import annotations

import html
import math
from typing import NamedTuple

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.report._format import STATUS_TEXT, fmt_auc, fmt_value, is_missing, split_name
from explorer.report.pareto import pareto_plot

RECIPE, BASELINE, STOPPED = "#1f77b4", "#d62728", "#ff7f0e"
TEMPLATE = "plotly_white"
ROC_COLUMNS = 4


class FigureSpec(NamedTuple):
    key: str  # where html.py places it: "leaderboard", "heatmap-val", "knobs", ...
    title: str
    figure: go.Figure


def _t(s) -> str:
    return html.escape(str(s), quote=False)


def _nan_to_none(xs) -> list:
    return [None if is_missing(x) or not math.isfinite(x) else x for x in xs]


def _layout(fig: go.Figure, height: int, **kw) -> go.Figure:
    kw.setdefault("margin", dict(l=60, r=20, t=40, b=50))
    fig.update_layout(template=TEMPLATE, height=height,
                      font=dict(family="system-ui, sans-serif", size=12), **kw)
    return fig


def leaderboard_plot(info) -> go.Figure | None:
    rows = [r for r in info.rows if not is_missing(r.val_auc)]
    if not rows:
        return None
    fig = go.Figure()
    ys = [_t(r.label) for r in rows]
    for split, attr, symbol in (("val", "val", "circle"), ("test", "test", "diamond")):
        pts = [(y, getattr(r, f"{attr}_auc"), getattr(r, f"{attr}_ci"))
               for y, r in zip(ys, rows) if not is_missing(getattr(r, f"{attr}_auc"))]
        if not pts:
            continue
        fig.add_trace(go.Scatter(
            x=[p[1] for p in pts], y=[p[0] for p in pts], mode="markers",
            name=f"{split_name(split)} mean AUC", marker=dict(symbol=symbol, size=9),
            showlegend=True,
            error_x=dict(type="data", symmetric=False,
                         array=[p[2][1] - p[1] if p[2] else 0 for p in pts],
                         arrayminus=[p[1] - p[2][0] if p[2] else 0 for p in pts])))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(title_text=f"mean AUC with {round(100 * info.level)}% patient-bootstrap CI")
    return _layout(fig, 120 + 28 * len(rows), legend=dict(orientation="h", y=1.08))


def heatmap_plot(h) -> go.Figure:
    n_rows, n_cols = len(h.labels), len(h.findings)
    ticks = [f"{_t(f)}<br>{h.positives[0][j]:,}+ / {h.negatives[0][j]:,}-"
             for j, f in enumerate(h.findings)]
    fig = go.Figure(go.Heatmap(
        z=[_nan_to_none(row) for row in h.auc], x=list(range(n_cols)), y=list(range(n_rows)),
        text=[[fmt_auc(a) if not is_missing(a) else "" for a in row] for row in h.auc],
        texttemplate="%{text}", hovertext=[[_t(s) for s in row] for row in h.hover],
        hoverinfo="text", hoverongaps=False, colorscale="Viridis",
        colorbar=dict(title=dict(text="AUC")), name=""))
    missing = [(i, j) for i in range(n_rows) for j in range(n_cols)
               if is_missing(h.auc[i][j])]
    if missing:  # drawn as a mark, never coloured as if it were an AUC of 0
        fig.add_trace(go.Scatter(
            x=[j for _, j in missing], y=[i for i, _ in missing], mode="markers+text",
            text=["no AUC"] * len(missing), textposition="middle center",
            marker=dict(symbol="x-thin-open", size=26, color="#888"),
            hovertext=[_t(h.hover[i][j]) for i, j in missing], hoverinfo="text",
            name="no AUC", showlegend=False))
    fig.update_xaxes(tickvals=list(range(n_cols)), ticktext=ticks, showgrid=False)
    fig.update_yaxes(tickvals=list(range(n_rows)), ticktext=[_t(s) for s in h.labels],
                     autorange="reversed", showgrid=False)
    return _layout(fig, 140 + 34 * n_rows, plot_bgcolor="#f4f4f4")


def knob_plot(k) -> go.Figure | None:
    if k.message or not k.axes:
        return None
    fig = make_subplots(rows=1, cols=len(k.axes), shared_yaxes=True,
                        subplot_titles=[_t(a.name) for a in k.axes], horizontal_spacing=0.04)
    for col, axis in enumerate(k.axes, start=1):
        cats = [fmt_value(c) for c in axis.choices] if axis.type == "categorical" else None
        for status, color, symbol in (("completed", RECIPE, "circle"),
                                      ("stopped_early", STOPPED, "x")):
            pts = [p for p in k.points if p.status == status]
            if axis.type != "categorical":
                pts = [p for p in pts if not is_missing(p.params.get(axis.path))]
            xs = [_t(fmt_value(p.params.get(axis.path))) if cats else p.params.get(axis.path)
                  for p in pts]
            fig.add_trace(go.Scatter(
                x=xs, y=[p.value for p in pts], mode="markers", name=STATUS_TEXT[status],
                legendgroup=status, showlegend=col == 1,
                marker=dict(color=color, symbol=symbol, size=9),
                hovertext=[_t(p.label) for p in pts], hoverinfo="text+x+y"), row=1, col=col)
        if cats:
            pts = k.points
            fig.add_trace(go.Box(x=[_t(fmt_value(p.params.get(axis.path))) for p in pts],
                                 y=[p.value for p in pts], boxpoints=False, showlegend=False,
                                 marker=dict(color="#999"), name=""), row=1, col=col)
            fig.update_xaxes(type="category", categoryorder="array",
                             categoryarray=[_t(c) for c in cats], row=1, col=col)
        elif axis.log:
            fig.update_xaxes(type="log", row=1, col=col)
    fig.update_yaxes(title_text="validation mean AUC", row=1, col=1)
    return _layout(fig, 380, legend=dict(orientation="h", y=-0.2))


def parallel_plot(k) -> go.Figure | None:
    if k.message or not k.axes:
        return None
    dims = []
    for axis in k.axes:
        values = [p.params.get(axis.path) for p in k.points]
        if axis.type == "categorical":
            cats = [fmt_value(c) for c in axis.choices]
            codes = [cats.index(fmt_value(v)) if fmt_value(v) in cats else None for v in values]
            dims.append(dict(label=_t(axis.name), values=codes, tickvals=list(range(len(cats))),
                             ticktext=[_t(c) for c in cats]))
        else:
            dims.append(dict(label=_t(axis.name), values=_nan_to_none(
                [None if is_missing(v) else float(v) for v in values])))
    auc = [p.value for p in k.points]
    dims.append(dict(label="validation mean AUC", values=auc))
    fig = go.Figure(go.Parcoords(dimensions=dims, line=dict(
        color=auc, colorscale="Viridis", showscale=True,
        colorbar=dict(title=dict(text="val AUC")))))
    return _layout(fig, 380, margin=dict(l=60, r=60, t=60, b=30))


def importance_plot(imp) -> go.Figure | None:
    if not imp.importances:
        return None
    names = list(imp.importances)[::-1]  # most important on top
    fig = go.Figure(go.Bar(x=[imp.importances[n] for n in names], y=[_t(n) for n in names],
                           orientation="h", marker=dict(color=RECIPE),
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_xaxes(title_text=f"importance ({_t(imp.evaluator)}, sums to 1)")
    return _layout(fig, 120 + 36 * len(names))


def curves_plot(c) -> go.Figure | None:
    if not c.curves:
        return None
    fig = go.Figure()
    for curve in c.curves:
        base = curve.kind == "baseline"
        fig.add_trace(go.Scatter(
            x=curve.epochs, y=_nan_to_none(curve.values), mode="lines+markers",
            name=_t(curve.label), line=dict(dash="dash" if base else "solid", width=1.5),
            marker=dict(size=4)))
    stopped = [cv for cv in c.curves if cv.stopped_at is not None]
    if stopped:
        fig.add_trace(go.Scatter(
            x=[cv.stopped_at for cv in stopped],
            y=[cv.values[cv.epochs.index(cv.stopped_at)] for cv in stopped], mode="markers",
            name="stopped early by ASHA", hovertext=[_t(cv.label) for cv in stopped],
            marker=dict(symbol="x", size=12, color=STOPPED, line=dict(width=2))))
    fig.update_xaxes(title_text="fine-tuning epoch", dtick=1)
    fig.update_yaxes(title_text="validation mean AUC")
    return _layout(fig, 420)


def roc_plot(r) -> go.Figure | None:
    if not r.panels:
        return None
    n = len(r.panels)
    cols = min(ROC_COLUMNS, n)
    rows = math.ceil(n / cols)
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.06, vertical_spacing=0.12,
                        subplot_titles=[f"{_t(p.finding)} ({p.positives:,}+ / {p.negatives:,}-)"
                                        for p in r.panels])
    shown = set()
    for k, panel in enumerate(r.panels):
        row, col = k // cols + 1, k % cols + 1
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", showlegend=False,
                                 line=dict(color="#bbb", dash="dot", width=1), hoverinfo="skip"),
                      row=row, col=col)
        for curve in panel.curves:
            fig.add_trace(go.Scatter(
                x=curve.fpr, y=curve.tpr, mode="lines", legendgroup=curve.role,
                name=f"{curve.role} {_t(curve.label)}", showlegend=curve.role not in shown,
                line=dict(color=RECIPE if curve.role == "recipe" else BASELINE, width=1.5),
                hovertemplate=f"{_t(curve.label)} AUC {curve.auc:.3f}<br>FPR %{{x:.2f}}, "
                              f"TPR %{{y:.2f}}<extra></extra>"), row=row, col=col)
            shown.add(curve.role)
        if panel.reason:
            axis = "" if k == 0 else str(k + 1)
            fig.add_annotation(text=f"no AUC:<br>{_t(panel.reason)}", showarrow=False,
                               x=0.5, y=0.5, xref=f"x{axis} domain", yref=f"y{axis} domain",
                               font=dict(color="#a00"))
    fig.update_xaxes(range=[0, 1], title_text="")
    fig.update_yaxes(range=[0, 1.02])
    return _layout(fig, 60 + 230 * rows, legend=dict(orientation="h", y=-0.08))


def loss_plot(m) -> go.Figure | None:
    if not m.loss_epochs:
        return None
    fig = go.Figure(go.Scatter(x=m.loss_epochs, y=m.loss_values, mode="lines+markers",
                               name=_t(m.pretrain_key)))
    fig.update_xaxes(title_text="pre-training epoch")
    fig.update_yaxes(title_text="MAE loss (masked-patch MSE)")
    return _layout(fig, 320)


def make_figures(data) -> list[FigureSpec]:
    """Every figure of the page, in page order (``None`` figures are left out)."""
    candidates = [("leaderboard", "Mean AUC by model", leaderboard_plot(data.leaderboard))]
    candidates += [(f"heatmap-{h.split}", f"Per-class {split_name(h.split)} AUC",
                    heatmap_plot(h)) for h in data.heatmaps]
    candidates += [
        ("knobs", "Validation mean AUC by parameter", knob_plot(data.knobs)),
        ("parallel", "Parallel coordinates", parallel_plot(data.knobs)),
        ("importance", "Parameter importance", importance_plot(data.importance)),
        ("curves", "Learning curves", curves_plot(data.curves)),
        ("roc", "ROC curves", roc_plot(data.roc)),
        ("loss", "MAE pre-training loss", loss_plot(data.mae)),
        ("pareto", "Validation mean AUC against cost", pareto_plot(data.cost)),
    ]
    return [FigureSpec(key, title, fig) for key, title, fig in candidates if fig is not None]
