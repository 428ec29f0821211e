"""``python -m explorer.report RUN_DIR`` on damaged results stores: one ``error:`` line, exit
code 2, no report folder written, never a traceback from inside a section.

Each case damages a copy of the schema-valid fixture store the way a crash, a partial copy or
another tool could: a table cut short, a column missing or holding text, repeated rows, junk
``meta.json``, a folder where a file belongs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from explorer.errors import MAX_LINE
from explorer.report.__main__ import main

REPO = Path(__file__).resolve().parents[2]


def _table(name: str, change):
    def damage(results: Path) -> None:
        path = results / f"{name}.parquet"
        change(pd.read_parquet(path)).to_parquet(path, index=False)
    return damage


def _truncate(name: str):
    def damage(results: Path) -> None:
        path = results / f"{name}.parquet"
        path.write_bytes(path.read_bytes()[:200])
    return damage


def _meta(change):
    def damage(results: Path) -> None:
        path = results / "meta.json"
        path.write_text(change(json.loads(path.read_text())))
    return damage


def _replace_by_folder(name: str):
    def damage(results: Path) -> None:
        (results / name).unlink()
        (results / name).mkdir()
    return damage


CASES = [
    ("truncated trials table", _truncate("trials"),
     ["trials.parquet: not a readable Parquet table"]),
    ("truncated predictions table", _truncate("predictions"),
     ["predictions.parquet: not a readable Parquet table"]),
    ("trials table without trial_id", _table("trials", lambda d: d.drop(columns=["trial_id"])),
     ["trials.parquet: no column 'trial_id'"]),
    ("epochs table without val_mean_auc",
     _table("epochs", lambda d: d.drop(columns=["val_mean_auc"])),
     ["epochs.parquet: no column 'val_mean_auc'"]),
    ("a searched parameter stored as text",
     _table("trials", lambda d: d.assign(**{"param/pretrain.mask_ratio": "high"})),
     ["column 'param/pretrain.mask_ratio' should hold numbers", "'high'"]),
    ("label values stored as text", _table("labels", lambda d: d.assign(Mass="yes")),
     ["labels.parquet: column 'Mass' should hold only 0 and 1", "'yes'"]),
    ("predictions repeated", _table("predictions", lambda d: pd.concat([d, d.head(1)])),
     ["predictions.parquet: a row for trial_id 't0', split 'val'", "more than once"]),
    ("unknown trial status", _table("trials", lambda d: d.assign(status="exploded")),
     ["column 'status' holds 'exploded'"]),
    ("reconstructions whose images are text",
     _table("reconstructions", lambda d: d.assign(png="not a png")),
     ["reconstructions.parquet: column 'png' should hold bytes"]),
    ("meta.json that is not JSON", lambda r: (r / "meta.json").write_text('{"name": "fix'),
     ["meta.json: not valid JSON"]),
    ("meta.json that is a list", lambda r: (r / "meta.json").write_text("[1, 2]"),
     ["meta.json: expected a JSON object, got list"]),
    ("meta.json without findings", _meta(lambda m: json.dumps({**m, "findings": []})),
     ["meta.json: 'findings' must be a non-empty list"]),
    ("meta.json without the searched space",
     _meta(lambda m: json.dumps({k: v for k, v in m.items() if k != "searched"})),
     ["meta.json: 'searched' must map each searched parameter"]),
    ("a probability that is not a number",
     _table("predictions", lambda d: d.assign(Mass=d["Mass"].where(d.index % 3 > 0))),
     ["predictions.parquet: column 'Mass' should hold finite numbers", "nan"]),
    ("a label other than 0 and 1", _table("labels", lambda d: d.assign(
        Mass=d["Mass"].where(d.index % 3 > 0, 2))),
     ["labels.parquet: column 'Mass' should hold only 0 and 1", "2"]),
    ("a blank patient id", _table("labels", lambda d: d.assign(
        patient_id=d["patient_id"].where(d.index > 0, None))),
     ["labels.parquet: column 'patient_id' is blank in 1 row(s)"]),
    ("meta.json with a searched space missing its range",
     _meta(lambda m: json.dumps({**m, "searched": {"pretrain.mask_ratio": {"type": "float"}}})),
     ["meta.json: 'searched' must map each searched parameter to its space"]),
    ("meta.json naming a finding twice",
     _meta(lambda m: json.dumps({**m, "findings": ["Mass", "Mass"]})),
     ["meta.json: 'findings' names a finding twice"]),
    ("a table that is a folder", _replace_by_folder("trials.parquet"),
     ["trials.parquet: not a file"]),
]


@pytest.mark.parametrize("what,damage,names", CASES, ids=[c[0] for c in CASES])
def test_damaged_results_store(make_store, tmp_path, capsys, what, damage, names):
    run = make_store()
    damage(run / "results")
    out = tmp_path / "report-out"
    code = main([str(run), "--out", str(out), "--resamples", "100"])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert len(lines[0]) <= len("error: ") + MAX_LINE
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert not out.exists() and captured.out == ""


def test_run_dir_that_is_a_file(tmp_path, capsys):
    path = tmp_path / "results.zip"
    path.write_bytes(b"PK")
    assert main([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: no results here (a file" in err


def test_bad_option_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), "--resamples", "many"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: argument --resamples: invalid int value: 'many'")


def test_damaged_store_in_a_real_process(make_store, tmp_path):
    run = make_store()
    _truncate("labels")(run / "results")
    proc = subprocess.run([sys.executable, "-m", "explorer.report", str(run), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "labels.parquet: not a readable Parquet table" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_tables_with_no_rows_are_not_damage(make_store, tmp_path):
    """A search whose only trial crashed before an epoch writes an epochs table with no rows and
    no columns; one fine-tuning a released checkpoint writes no encoders: both still report."""
    run = make_store()
    for name in ("epochs", "encoders"):
        pd.DataFrame().to_parquet(run / "results" / f"{name}.parquet", index=False)
    assert main([str(run), "--out", str(tmp_path / "out"), "--resamples", "100"]) == 0
    assert (tmp_path / "out" / "index.html").is_file()
