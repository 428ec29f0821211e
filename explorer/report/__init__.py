"""``python -m explorer.report RUN_DIR``: one self-contained HTML page per search.

- ``data``          the pure data step: ``collect(results) -> ReportData``, one record per section
- ``scores``        its core: predictions joined with labels, patient-bootstrap summaries, ranking
- ``verdict``       section 1: best recipe vs best DenseNet-121, one quotable sentence
- ``leaderboard``   sections 2-3: leaderboard, seed spread, per-class AUCs, missing AUCs
- ``knobs``         section 4: knob effects, Optuna parameter importance
- ``curves``        sections 5-7: learning curves, ROC curves, MAE reconstructions
- ``repro``         section 8: spec, configs, seeds, data, versions, hardware, wall time
- ``figures``       the figure step: records -> Plotly figures
- ``sections``, ``html``   assembly: one offline page, Plotly embedded once, text escaped
- ``build``         ``build_report``: load, collect, render, write, copy the tables
"""

from explorer.report.build import build_report, default_out_dir
from explorer.report.data import ReportData, collect
from explorer.report.figures import FigureSpec, make_figures
from explorer.report.html import render_page

__all__ = [
    "FigureSpec",
    "ReportData",
    "build_report",
    "collect",
    "default_out_dir",
    "make_figures",
    "render_page",
]
