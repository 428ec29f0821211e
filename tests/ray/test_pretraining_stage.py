"""The pre-training stage and multi-fidelity pre-training in real smoke searches (real Ray,
Optuna, timm), read from the trial timelines and the stores they leave."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
import ray

from explorer.search.cli import main

REPO = Path(__file__).resolve().parents[2]
SPACES = REPO / "search_spaces"
pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def ray_2cpu():
    ray.init(address="local", num_cpus=2, include_dashboard=None)
    yield
    ray.shutdown()


def search(space: str, storage: Path, *sets: str) -> int:
    args = [str(SPACES / f"{space}.yaml"), "--storage", str(storage),
            "--reports", str(storage / "reports"), "--set", "scale=smoke",
            "--set", "baselines=[]"]
    for s in sets:
        args += ["--set", s]
    return main(args)


def _timeline(run: Path) -> tuple[list[float], float]:
    """(each trial's start, the end of the encoder's training)."""
    starts = [json.loads(p.read_text())["started"] for p in run.glob("trials/*/config.json")]
    (enc,) = (run.parent / "_encoders").iterdir()
    return starts, json.loads((enc / "losses.json").read_text())[-1]["end"]


def test_no_trial_holds_a_slot_while_its_encoder_trains(ray_2cpu, tmp_path):
    """A layer-decay search (one shared encoder), max_concurrent 2 on 2 CPUs. Without the
    stage, the second trial starts while the first pre-trains and waits in its slot; with it,
    every trial starts after the encoder is finished, and reuses it."""
    # 30 MAE epochs (~15 s here): long enough for the second trial to start meanwhile
    sets = ("search.num_samples=3", "search.max_concurrent=2", "search.scheduler.type=none",
            "pretrain.epochs=30")
    assert search("layer_decay", tmp_path / "today", *sets) == 0
    starts, last = _timeline(tmp_path / "today" / "layer_decay")
    # the trial that pre-trains, and one that waited in its slot for the encoder
    assert sum(s < last for s in starts) == 2

    assert search("layer_decay", tmp_path / "staged", *sets,
                  "search.pretraining.stage=true") == 0
    run = tmp_path / "staged" / "layer_decay"
    starts, last = _timeline(run)
    assert len(starts) == 3 and min(starts) > last
    trials = pd.read_parquet(run / "results" / "trials.parquet")
    assert set(trials.pretrain_role) == {"reused"} and set(trials.status) == {"completed"}
    record = json.loads((run / "pretraining.json").read_text())
    assert [c["status"] for c in record["configs"]] == ["handed"] * 3
    assert len({c["key"] for c in record["configs"]}) == 1  # one encoder, one job
    enc = pd.read_parquet(run / "results" / "encoders.parquet")
    assert enc.trained_by.tolist() == ["pretraining stage of layer_decay"]
    meta = json.loads((run / "results" / "meta.json").read_text())
    assert meta["cost"]["pretrain_epochs"] == 30 and meta["cost"]["pretrain_device_s"] > 0
    _replays_as_run(run)


def _replays_as_run(run: Path) -> None:
    """The replay of the search as it was run chooses what it chose and costs what it cost."""
    from explorer.replay import load_recorded, summarise

    rec = load_recorded(run)
    again = summarise(rec, "as run", [], [rec.loaded.spec.search.searcher.seed],
                      rec.loaded.spec.search.num_samples)
    assert again["pretrain_epochs"] == rec.real["pretrain_epochs"]
    assert again["finetune_epochs"] == rec.real["finetune_epochs"]
    assert again["cost_device_s"] == pytest.approx(rec.real["cost_device_s"], rel=0.1)
    best = ", ".join(f"{k}={v}" for k, v in sorted(rec.real["best_params"].items()))
    assert again["most_chosen"] == best


def test_multi_fidelity_pretraining_stops_weak_encoders(ray_2cpu, tmp_path):
    """Mask ratio at smoke scale (2 pre-training epochs, a milestone at epoch 1): 4 recipes
    each pre-train one epoch and are probed; ASHA (reduction factor 3) continues the best; the
    others are PRUNED in the Optuna study and never fine-tuned."""
    assert search("mask_ratio", tmp_path, "search.num_samples=4",
                  "search.pretraining.fidelity.milestones=[0.5]",
                  "search.pretraining.fidelity.reduction_factor=3") == 0
    run = tmp_path / "mask_ratio"
    record = json.loads((run / "pretraining.json").read_text())
    assert record["rungs"] == [1, 2] and len(record["configs"]) == 4
    statuses = sorted(c["status"] for c in record["configs"])
    assert statuses == ["handed", "stopped", "stopped", "stopped"]
    probes = pd.read_parquet(run / "results" / "encoder_probes.parquet")
    assert len(probes) == 4 and set(probes.epoch) == {1} and set(probes.probe) == {"linear"}
    trials = pd.read_parquet(run / "results" / "trials.parquet")
    assert len(trials) == 1  # only the survivor became a trial
    enc = pd.read_parquet(run / "results" / "encoders.parquet")
    assert sorted(enc.complete) == [False, False, False, True]
    meta = json.loads((run / "results" / "meta.json").read_text())
    assert meta["cost"]["pretrain_epochs"] == 4 + 1  # against 8 without multi-fidelity
    assert meta["cost"]["stopped_encoders_device_s"] > 0
    study = optuna.load_study(study_name="mask_ratio", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run / "optuna.journal"))))
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "PRUNED", "PRUNED", "PRUNED"]
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert all(list(t.intermediate_values) == [1] for t in pruned)  # the probe, at epoch 1
    _replays_as_run(run)


def test_multi_objective_search_trades_auc_against_cost(ray_2cpu, tmp_path):
    """search.objective [auc, cost]: the Optuna study has two directions and each trial's
    cost is the recipe's device-seconds the results store records; the report draws the
    front and names the best recipe within a budget."""
    assert search("mask_ratio", tmp_path, "search.num_samples=2", "search.objective=[auc, cost]",
                  "search.scheduler.type=none", "search.points_to_evaluate=[]") == 0
    run = tmp_path / "mask_ratio"
    study = optuna.load_study(study_name="mask_ratio", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run / "optuna.journal"))))
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    trials = pd.read_parquet(run / "results" / "trials.parquet").set_index("trial_id")
    told = {t.user_attrs.get("tune_trial_id") or t.number: t.values for t in study.trials
            if t.state.name == "COMPLETE"}
    assert len(told) == 2
    for values in told.values():
        # the recorded recipe with this AUC has this cost (same clocks: encoder + epochs)
        (row,) = trials[abs(trials.val_mean_auc - values[0]) < 1e-9].itertuples()
        assert values[1] == pytest.approx(row.recipe_device_s, rel=1e-6)
    from explorer.report.__main__ import main as report_main

    assert report_main([str(run), "--out", str(tmp_path / "rep"), "--budget", "1"]) == 0
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "10. Cost" in page and "Best recipe within a budget of 1 CPU-hours" in page
