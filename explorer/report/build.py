"""``build_report``: results store -> ``OUT/index.html`` plus the tables it was made from."""

from __future__ import annotations

import shutil
from pathlib import Path

from explorer.errors import UserError
from explorer.report.data import collect
from explorer.report.figures import make_figures
from explorer.report.html import render_page
from explorer.report.inputs import load_checked
from explorer.results import TABLES, results_dir
from explorer.storage import atomic_write_text


def default_out_dir(meta: dict) -> Path:
    """``reports/<meta["name"]>`` relative to the current directory."""
    name = str(meta.get("name") or "")
    if not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise UserError(f"meta.json: search name {name!r} cannot be a folder name; "
                        f"pass --out DIR")
    return Path("reports") / name


def build_report(run_dir: str | Path, out_dir: str | Path | None = None, *,
                 n_resamples: int | None = None, seed: int = 0,
                 budget_s: float | None = None) -> Path:
    """Write ``out_dir/index.html`` and copy the results tables next to it.

    Args:
        run_dir: a search's run folder (holding ``results/``).
        out_dir: where to write; default ``reports/<meta["name"]>`` under the current folder.
        n_resamples: patient-bootstrap resamples; default the spec's ``bootstrap`` (2000).
        seed: seeds the bootstrap (same resamples for every model).
        budget_s: device-seconds: name the best recipe whose cost fits (section 10).

    Returns:
        The absolute path of ``index.html``.
    """
    results = load_checked(run_dir)
    out = Path(out_dir) if out_dir is not None else default_out_dir(results.meta)
    src = results_dir(run_dir)
    data = collect(results, n_resamples=n_resamples, seed=seed, budget_s=budget_s)
    copied = [f"{name}.parquet" for name in TABLES if (src / f"{name}.parquet").is_file()]
    note = (f"Made from {src.resolve()}. The tables it was made from are next to this page: "
            f"{', '.join([*copied, 'meta.json'])}.")
    page = render_page(data, make_figures(data), tables_note=note)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in [*copied, "meta.json"]:
            target = out / name
            if not (target.exists() and target.resolve() == (src / name).resolve()):
                shutil.copyfile(src / name, target)
        atomic_write_text(out / "index.html", page)
    except OSError as e:
        raise UserError(f"{out}: cannot write the report ({e.strerror or e})") from e
    return (out / "index.html").absolute()
