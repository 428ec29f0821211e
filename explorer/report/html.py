"""HTML assembly: one self-contained page that opens offline from ``file://``.

Plotly's JavaScript is embedded once (``plotly.offline.get_plotlyjs()``); each figure is JSON
handed to ``Plotly.newPlot``. Nothing is fetched: no CDN, no fonts, no http(s) URL outside the
Plotly bundle's own (unused) strings.

Escaping: every piece of text goes through ``_markup.esc`` (``html.escape``) unless it is
``Markup`` built from escaped parts; the figure JSON has ``<``, ``>``, ``&`` written as
``\\u003c`` etc. so that no string inside it can close the ``<script>`` element.
"""

from __future__ import annotations

import json

import plotly.io as pio
import plotly.offline

from explorer.report import sections
from explorer.report._markup import Markup, join, tag
from explorer.report.figures import FigureSpec
from explorer.report.study_html import study_section

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True,
                 "modeBarButtonsToRemove": ["sendDataToCloud"]}
TOC = (
    ("verdict", "Verdict"),
    ("leaderboard", "Leaderboard"),
    ("per-class", "Per-class AUC"),
    ("knobs", "Knob effects"),
    ("curves", "Learning curves"),
    ("roc", "ROC curves"),
    ("mae", "MAE reconstructions"),
    ("repro", "Reproducibility"),
    ("study", "The study's table"),
)
CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0;
 background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:1rem 2rem 4rem;background:#fff}
h1{font-size:1.6rem;margin:.5rem 0}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;
 margin-top:2.5rem}h3{font-size:1.05rem;margin-top:1.5rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f1f3f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.baseline td{background:#fff6f6}tr.failed td{color:#888}
.verdict{font-size:1.1rem;border-left:5px solid #1f77b4;background:#f3f8fc;padding:.8rem 1rem}
.warn{border-left:5px solid #d9822b;background:#fff8ef;padding:.6rem 1rem;margin:.8rem 0}
.note{color:#555;font-size:.92rem}.label{font-weight:600;text-transform:uppercase;
 letter-spacing:.03em}
pre{background:#f6f8fa;padding:.6rem;overflow:auto;font-size:12px;max-height:30rem}
details{margin:.3rem 0}summary{cursor:pointer}
nav ol{columns:2;max-width:34rem}
img.recon{width:128px;height:128px;image-rendering:pixelated;border:1px solid #ccc}
.plot{width:100%;min-height:120px}
"""


def figure_json(spec: FigureSpec) -> str:
    """The figure as JSON that is safe inside a ``<script>`` element."""
    text = pio.to_json(spec.figure, validate=False)
    for ch, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                     ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, code)
    return text


def plot_div(spec: FigureSpec, index: int) -> Markup:
    return tag("div", "", class_="plot", id=f"fig-{index}", data_key=spec.key,
               role="img", aria_label=spec.title)


def render_page(data, figures: list[FigureSpec], tables_note: str = "") -> str:
    """The whole page as one string."""
    ids = {spec.key: i for i, spec in enumerate(figures)}

    def fig(key: str) -> Markup:
        return plot_div(figures[ids[key]], ids[key]) if key in ids else Markup("")

    title = f"Recipe search '{data.name}'"
    nav = tag("nav", tag("ol", *(tag("li", tag("a", text, href=f"#{anchor}"))
                                  for anchor, text in TOC)))
    body = [
        tag("h1", title),
        tag("p", f"Data source: {data.source or 'unknown'}; scale: {data.scale or 'unknown'}. "
                 "Every AUC is recomputed from the stored predictions; intervals are "
                 "patient-bootstrap percentile intervals.", class_="note"),
        sections.phantom_banner(data),
        nav,
        sections.verdict_section(data.verdict),
        sections.leaderboard_section(data.leaderboard, fig),
        sections.per_class_section(data.heatmaps, data.missing, fig),
        sections.knobs_section(data.knobs, data.importance, fig),
        sections.curves_section(data.curves, fig),
        sections.roc_section(data.roc, fig),
        sections.mae_section(data.mae, fig),
        sections.repro_section(data.repro),
        study_section(data.study),
        tag("p", tables_note, class_="note") if tables_note else "",
    ]
    figures_js = ",\n".join(f'["fig-{i}", {figure_json(s)}]' for i, s in enumerate(figures))
    script = Markup(
        "<script>\n(function(){var config=" + json.dumps(PLOTLY_CONFIG) + ";\nvar figs=[\n"
        + figures_js + "\n];\nfor(var i=0;i<figs.length;i++){var f=figs[i][1];"
        "Plotly.newPlot(figs[i][0],f.data,f.layout,config);}})();\n</script>")
    plotly_js = plotly.offline.get_plotlyjs().replace("</script", "<\\/script")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"{tag('title', title)}\n<style>{CSS}</style>\n"
        f"<script>{plotly_js}</script>\n</head>\n<body>\n<main>\n{join(body)}\n</main>\n"
        f"{script}\n</body>\n</html>\n"
    )
