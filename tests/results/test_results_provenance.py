"""``run_meta``: what a reader needs to reproduce a run, from a real run context."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from explorer.names import BOOTSTRAP_SEED, METRIC, MODE
from explorer.results.provenance import run_meta, versions
from explorer.search.cluster import Cluster
from explorer.search.context import RunContext, RunInputs
from explorer.search.experiment import Experiment

SPACE = Path(__file__).resolve().parents[2] / "search_spaces" / "layer_decay.yaml"


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    from explorer.data import load_data
    from explorer.spec import load_spec

    loaded = load_spec(SPACE, ["scale=smoke", "seed=7"])
    exp = Experiment(tmp_path_factory.mktemp("storage"), "layer_decay")
    exp.create(loaded)
    exp.add_stage_time("search", 12.5)
    return RunContext(RunInputs(loaded), exp, load_data(loaded.base.data),
                      Cluster({"CPU": 2.0}, []))


def test_meta_names_spec_seeds_data_versions_and_timings(ctx):
    runs = [{"run_id": "densenet121_baseline-s1-abc", "recipe_name": "densenet121_baseline",
             "label": "densenet121 seed 1", "seed": 1, "key": "abc", "cached": True}]
    meta = run_meta(ctx.exp.name, ctx.loaded, ctx.base_dict, ctx.data, ctx.cluster.resources,
                    ctx.exp.stage_times(), runs)
    assert meta["name"] == "layer_decay" and meta["scale"] == "smoke"
    assert METRIC in meta["metric"] and meta["mode"] == MODE
    assert meta["seeds"] == {"recipe": 7, "split": 0, "searcher": 0,
                             "bootstrap": BOOTSTRAP_SEED, "baselines": [1]}
    assert set(meta["searched"]) == set(ctx.loaded.spec.search.params)
    assert all(space["type"] in ("float", "int", "categorical")
               for space in meta["searched"].values())
    assert meta["findings"] == list(ctx.data.findings)
    assert meta["data"]["fingerprint"] == ctx.data.fingerprint
    assert meta["baselines"][0]["cached"] is True
    assert meta["stage_wall_s"] == {"search": 12.5}
    assert meta["hardware"]["ray_cluster"] == {"CPU": 2.0}
    assert meta["spec_yaml"].startswith("name:") and meta["base_recipe"] == ctx.base_dict
    assert versions()["torch"] and versions()["cxr-recipe-explorer"]


def test_a_report_rebuilt_with_another_seed_says_which_it_used(ctx, tmp_path):
    from explorer.report.repro import get_repro_info
    from explorer.results import Results

    meta = run_meta(ctx.exp.name, ctx.loaded, ctx.base_dict, ctx.data, {}, {}, [])
    empty = Results(meta, *[pd.DataFrame()] * 8)
    facts = dict(get_repro_info(empty, bootstrap_seed=5).facts)
    assert facts["seeds"]["bootstrap"] == 5
    assert dict(get_repro_info(empty).facts)["seeds"]["bootstrap"] == BOOTSTRAP_SEED
