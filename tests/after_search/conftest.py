"""One finished smoke search with MLflow tracking on, shared by the export, predict and
tracking tests. It runs as the real command in a subprocess (its own private Ray, started and
stopped there), so it cannot clash with a Ray instance another test module holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tracked_search(tmp_path_factory) -> Path:
    """``<storage>/mask_ratio``: 2 recipe trials (both finalists, scored on test) and one
    DenseNet-121 baseline, MLflow logging to the default SQLite store."""
    storage = tmp_path_factory.mktemp("tracked")
    cmd = [sys.executable, "-m", "explorer.search", str(REPO / "search_spaces/mask_ratio.yaml"),
           "--set", "scale=smoke", "--set", "search.num_samples=2",
           "--set", "tracking.mlflow=true", "--storage", str(storage),
           "--reports", str(storage / "reports")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=storage)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert res.stderr == "", res.stderr  # no MLflow or Alembic chatter on stderr
    return storage / "mask_ratio"


@pytest.fixture(scope="session")
def record_of():
    """``record_of(run, trial_id)``: a search trial's record folder, or its baseline cache."""
    def find(run: Path, trial_id: str) -> Path:
        meta = json.loads((run / "results" / "meta.json").read_text())
        key = next((b["key"] for b in meta["baselines"] if b["run_id"] == trial_id), None)
        return run / "trials" / trial_id if key is None else run.parent / "_baselines" / key

    return find


@pytest.fixture(scope="session")
def val_pngs(tracked_search, tmp_path_factory) -> Path:
    """The validation images exactly as the search saw them (its cached grey squares), as PNG
    files named by image id: what a timm-only user or ``explorer.predict`` gets to read."""
    from explorer.data import load_data
    from explorer.spec.recipes import build_recipe

    first = next((tracked_search / "trials").iterdir())
    recipe = build_recipe(json.loads((first / "config.json").read_text())["recipe"])
    val = load_data(recipe.data).val
    out = tmp_path_factory.mktemp("val_pngs")
    for i, image_id in enumerate(val.image_ids):
        Image.fromarray(np.asarray(val.images[i]), mode="L").save(out / f"{image_id}.png")
    return out
