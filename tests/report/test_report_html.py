"""The page: files written, self-contained, every user string escaped, the CLI's errors."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys

import plotly.graph_objects as go
import plotly.offline
import pytest

from explorer.report import build_report, make_figures
from explorer.report.__main__ import main
from explorer.report.figures import FigureSpec
from explorer.report.html import figure_json, render_page
from explorer.results import TABLES

PLOTLY_JS = plotly.offline.get_plotlyjs()


@pytest.fixture(scope="module")
def page(report) -> str:
    return render_page(report, make_figures(report))


def _without_plotly(text: str) -> str:
    assert text.count(PLOTLY_JS) == 1  # embedded exactly once
    return text.replace(PLOTLY_JS, "")


def test_build_report_writes_page_and_copies_the_tables(store, tmp_path, monkeypatch, fx):
    monkeypatch.chdir(tmp_path)
    index = build_report(store, n_resamples=50)
    assert index == tmp_path / "reports" / "fixture" / "index.html"  # default: reports/<name>
    src = store / "results"
    for name in [*(f"{t}.parquet" for t in TABLES), "meta.json"]:
        assert (index.parent / name).read_bytes() == (src / name).read_bytes()
    assert index.read_text().startswith("<!DOCTYPE html>")


def test_page_is_self_contained(page):
    rest = _without_plotly(page)
    assert "http://" not in rest and "https://" not in rest
    assert not re.search(r"<(link|iframe|object|embed)\b", rest)
    links = re.findall(r"""\b(?:src|href)\s*=\s*(["']?)([^"'\s>]*)""", rest)
    assert links and all(q == '"' and (v.startswith("#") or v.startswith("data:image/png;base64,"))
                         for q, v in links)
    assert rest.count("<script") == 2 and rest.count("</script>") == 2  # bundle + figures


def test_one_plot_div_per_figure_and_numbered_sections(page, report):
    figures = make_figures(report)
    divs = re.findall(r'<div class="plot" id="fig-(\d+)" data-key="([^"]+)"', page)
    assert [(int(i), k) for i, k in divs] == [(i, f.key) for i, f in enumerate(figures)]
    assert [f.key for f in figures] == ["leaderboard", "heatmap-val", "heatmap-test", "knobs",
                                        "parallel", "importance", "curves", "roc", "loss"]
    headings = re.findall(r"<h2>(\d)\. ", page)
    assert headings == [str(i) for i in range(1, 10)]   # 9: the study's table
    assert "PHANTOM DATA" in page.upper() and "conclusions about medicine need real data" in page
    assert "Published reference" not in page


def test_figure_json_cannot_close_the_script_element():
    evil = "</script><script>alert(1)</script>&\u2028"
    text = figure_json(FigureSpec("k", "t", go.Figure(go.Scatter(x=[1], y=[1], text=[evil]))))
    assert not set("<>&\u2028") & set(text)
    assert json.loads(text)["data"][0]["text"] == [evil]  # same data once parsed


def test_every_user_string_is_escaped(make_store, tmp_path, fx):
    index = build_report(make_store(hostile=True), tmp_path / "out", n_resamples=50)
    page = _without_plotly(index.read_text())
    for raw in (fx.XSS_SCRIPT, fx.XSS_IMG, "onerror=alert(1)>", "<img src"):
        assert raw not in page
    assert page.count("<img") == page.count('<img class="recon" ') == 6  # only ours
    escaped_script, escaped_img = html.escape(fx.XSS_SCRIPT), html.escape(fx.XSS_IMG)
    assert page.count(escaped_script) >= 4  # label (tables, sentence), error, spec text
    assert page.count(escaped_img) >= 4  # param value, finding name, spec text, skipped file
    assert f"recipe &#x27;{escaped_script}&#x27;" in page  # the verdict names the trial


def test_paper_reference_only_for_chestxray14_at_paper_scale(make_store, tmp_path):
    page = build_report(make_store(source="chestxray14", scale="paper"), tmp_path / "a",
                        n_resamples=20).read_text()
    assert "Published reference (Xiao et al., WACV 2023; not computed here)" in page
    assert "ViT-B/16" in page and "0.830" in page and "PHANTOM" not in page
    page = build_report(make_store(source="chestxray14", scale="cpu"), tmp_path / "b",
                        n_resamples=20).read_text()
    assert "Published reference" not in page


def test_cli_writes_the_page(store, tmp_path, capsys):
    assert main([str(store), "--out", str(tmp_path / "r"), "--resamples", "20"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "r" / "index.html")
    assert (tmp_path / "r" / "index.html").is_file()


def test_cli_user_error_is_one_line_and_exit_code_2(tmp_path):
    run = subprocess.run([sys.executable, "-m", "explorer.report", str(tmp_path / "nowhere")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: ")
    assert "no results here" in run.stderr and run.stdout == ""
