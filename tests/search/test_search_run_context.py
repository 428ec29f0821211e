"""A run's fixed inputs and the checks made before and around Ray, without starting Ray:
the run context, the experiment record, the process settings, resources, weights."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import pytest

from explorer.errors import CheckpointError, UserError
from explorer.search import cluster
from explorer.search.context import RunInputs, absolute_paths, baseline_key
from explorer.search.experiment import Experiment
from explorer.search.resources import concurrency, fits, trial_resources
from explorer.spec import load_spec

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"


def test_inputs_make_user_paths_absolute(smoke_loaded, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    d = absolute_paths({"data": {"root": "nih"}, "pretrain": {"from_checkpoint": "~/w.pth"},
                        "finetune": {}})
    assert d["data"]["root"] == str(tmp_path / "nih")
    assert d["pretrain"]["from_checkpoint"] == str(Path.home() / "w.pth")
    inputs = RunInputs(smoke_loaded)
    assert inputs.base.model_dump(mode="json") == inputs.base_dict


def test_baseline_key_ignores_where_the_data_is_mounted(smoke_loaded):
    (_, _, r), = smoke_loaded.baseline_recipes()
    moved = r.model_copy(update={"data": r.data.model_copy(update={"root": "/elsewhere"})})
    assert baseline_key(r, "fp", "smoke") == baseline_key(moved, "fp", "smoke")
    assert baseline_key(r, "fp", "smoke") != baseline_key(r, "other data", "smoke")


def test_experiment_record_rules(smoke_loaded, tmp_path):
    exp = Experiment(tmp_path, "layer_decay")
    assert not exp.exists()
    exp.create(smoke_loaded)
    assert exp.exists() and exp.stored_spec().spec == smoke_loaded.spec
    exp.check_same_spec(smoke_loaded)
    changed = load_spec(SPACES / "layer_decay.yaml", ["scale=smoke", "search.num_samples=9"])
    with pytest.raises(UserError, match="the spec differs"):
        exp.check_same_spec(changed)
    with pytest.raises(UserError, match="add --resume"):
        exp.refuse_overwrite()
    assert exp.add_extension(2)["name"] == "extend-1"
    assert [e["num_samples"] for e in exp.extensions()] == [2]
    exp.add_stage_time("search", 2.0)
    exp.add_stage_time("search", 3.0)
    assert exp.stage_times() == {"search": 5.0}
    exp.record_path.write_text("{ not json")
    with pytest.raises(UserError, match="missing or unreadable experiment record"):
        exp.check_same_spec(smoke_loaded)


def test_ray_settings_hold_for_the_run_only(monkeypatch):
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "7")  # a user's own value wins
    monkeypatch.delenv("RAY_CHDIR_TO_TRIAL_DIR", raising=False)
    monkeypatch.delenv("TUNE_DISABLE_SIGINT_HANDLER", raising=False)
    import optuna  # noqa: F401  (their imports add warning filters of their own: before ours)
    import ray  # noqa: F401

    filters = list(warnings.filters)
    level = logging.getLogger("ray.tune").level
    with cluster.ray_settings(verbose=False):
        assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == "7"
        assert os.environ["RAY_CHDIR_TO_TRIAL_DIR"] == "0"
        assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
        assert logging.getLogger("ray.tune").level == logging.ERROR
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn("hidden", UserWarning, stacklevel=1)
        assert caught == []
        assert cluster.node_env()["RAY_CHDIR_TO_TRIAL_DIR"] == "0"
    assert "RAY_CHDIR_TO_TRIAL_DIR" not in os.environ
    assert "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ
    assert warnings.filters == filters and logging.getLogger("ray.tune").level == level


def test_node_env_carries_our_settings_but_not_the_mirror(monkeypatch):
    monkeypatch.setenv("CXR_EXPLORER_LOCK_STALE_S", "30")
    monkeypatch.setenv("CXR_EXPLORER_MIRROR", "/my/mirror")
    env = cluster.node_env()
    assert env["CXR_EXPLORER_LOCK_STALE_S"] == "30" and "CXR_EXPLORER_MIRROR" not in env


def test_resources_fit_and_concurrency(smoke_loaded):
    base = smoke_loaded.base
    assert trial_resources(base) == {"CPU": 1}
    assert fits(base, {"CPU": 2})[0]
    big = base.model_copy(update={"resources": base.resources.model_copy(
        update={"workers": 2, "cpus_per_worker": 2})})
    assert trial_resources(big) == {"CPU": 0.01}  # a TorchTrainer driver; workers on their own
    ok, why = fits(big, {"CPU": 5}, [{"CPU": 1}, {"CPU": 4}])
    assert ok
    ok, why = fits(big, {"CPU": 5}, [{"CPU": 1}] * 5)
    assert not ok and "no single node has 2 CPUs" in why
    with pytest.raises(UserError, match=r"one trial needs 4\.01 CPUs"):
        cluster.check_fit(big, cluster.Cluster({"CPU": 2}, []))
    assert concurrency(base, {"CPU": 8}, None) == 8
    assert concurrency(base, {"CPU": 8}, 3) == 3
    assert concurrency(big, {"CPU": 3}, None) == 1


def test_one_node_needs_no_shared_storage_check(tmp_path):
    from explorer.storage import Store

    cluster.check_shared_storage(Store(tmp_path), cluster.Cluster({"CPU": 2}, [{"NodeID": "x"}]))
    assert list(tmp_path.iterdir()) == []  # no probe written: nothing to compare with


def test_prepare_loads_the_data_and_checks_every_weights_file(smoke_loaded, tmp_path):
    from explorer.search.pipeline import prepare

    data = prepare(RunInputs(smoke_loaded))
    assert len(data.val) and data.fingerprint
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"")
    loaded = load_spec(SPACES / "layer_decay.yaml", [
        "scale=smoke", "baselines=[{recipe: densenet121_baseline, seeds: 1, overrides: "
        f"{{finetune: {{weights: '{bad}'}}}}}}]"])
    with pytest.raises(CheckpointError, match="is empty"):
        prepare(RunInputs(loaded))
