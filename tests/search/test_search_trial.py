"""One trial in-process (``run_worker`` with a ``LocalSession``: the trainable's body without
Ray), the stages' bookkeeping on its record, and the one-time test scoring."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from explorer.data.bundle import Split
from explorer.data.packed import PackedImages
from explorer.names import RESUME
from explorer.search.cluster import Cluster
from explorer.search.context import RunContext, RunInputs
from explorer.search.evaluate import score_finalist, score_test
from explorer.search.experiment import Experiment
from explorer.search.pipeline import _Background
from explorer.search.stages import baseline_runs, finalists_of, is_done, prune_resume_states
from explorer.search.trial import run_worker, trial_recipe_dict
from explorer.spec.recipes import build_recipe
from explorer.storage import Store
from explorer.train.artifacts import TrialArtifacts
from explorer.train.session import LocalSession


@pytest.fixture(scope="module")
def finished(smoke_loaded, tmp_path_factory):
    """A search trial run to its end: no pre-training (a ViT from scratch), 2 epochs."""
    storage = tmp_path_factory.mktemp("storage")
    inputs = RunInputs(smoke_loaded)
    base = trial_recipe_dict(inputs.base_dict, {"pretrain.enabled": False,
                                                "finetune.epochs": 2})
    recipe = trial_recipe_dict(base, {"finetune.layer_decay": 0.6})
    assert recipe["finetune"]["layer_decay"] == 0.6 and base["finetune"]["layer_decay"] != 0.6
    job = {"kind": "recipe", "trial_id": "t1", "params": {"finetune.layer_decay": 0.6},
           "recipe": recipe, "artifacts": "exp/trials/t1", "store": Store(storage),
           "score_test": False}
    session = LocalSession("t1")
    summary = run_worker(job, session)
    return storage, job, session, summary


def test_a_trial_writes_its_record_and_reports_every_epoch(finished):
    storage, job, session, summary = finished
    art = TrialArtifacts(storage / "exp" / "trials" / "t1")
    assert summary["epochs_run"] == 2 and [m["epoch"] for m in session.history] == [1, 2]
    config = art.read_json("config.json")
    assert config["params"] == {"finetune.layer_decay": 0.6} and config["kind"] == "recipe"
    assert art.read_json("encoder.json")["role"] == "none"
    assert art.path("done.json").is_file() and not art.path(RESUME).exists()

    again = LocalSession("t1")  # Tune lost sight of it: it reports its result, trains nothing
    assert run_worker(job, again)["finished"] == art.read_json("done.json")["finished"]
    assert [m["epoch"] for m in again.history] == [2]


def test_test_split_is_scored_once(finished, smoke_data):
    storage, _, _, _ = finished
    art = TrialArtifacts(storage / "exp" / "trials" / "t1")
    assert score_finalist(Store(storage), "exp/trials/t1")
    preds = art.read_predictions("test")
    assert len(preds) == len(smoke_data.test) and set(smoke_data.findings) <= set(preds.columns)
    stamp = art.path("test_predictions.parquet").stat().st_mtime_ns
    assert score_finalist(Store(storage), "exp/trials/t1")
    assert art.path("test_predictions.parquet").stat().st_mtime_ns == stamp, "scored twice"
    t = smoke_data.test
    empty = Split("test", PackedImages.from_arrays([]), t.labels[:0], t.image_ids[:0],
                  t.patient_ids[:0])
    no_test = dataclasses.replace(smoke_data, test=empty)
    recipe = build_recipe(art.read_json("config.json")["recipe"])
    assert not score_test(recipe, no_test, TrialArtifacts(storage / "elsewhere"))


def test_stages_bookkeeping_on_trial_records(finished, smoke_loaded, smoke_data, tmp_path):
    storage, _, _, _ = finished
    exp = Experiment(Store(storage), "exp")
    ctx = RunContext(RunInputs(smoke_loaded), exp, smoke_data, Cluster({"CPU": 2}, []))
    states = [("t1", {"status": "TERMINATED"}), ("t9", {"status": "ERROR"})]
    assert finalists_of(ctx, states) == ["t1"]
    assert finalists_of(ctx, [("t1", {"status": "ERROR"})]) == []

    for trial_id in ("stopped", "lost", "errored"):
        TrialArtifacts(exp.dir / "trials" / trial_id).write_json(RESUME, {})
    prune_resume_states(exp.store, "exp", [("stopped", {"status": "TERMINATED"}),
                                           ("errored", {"status": "ERROR"})])
    assert [p.parent.name for p in exp.dir.glob(f"trials/*/{RESUME}")] == ["errored"]

    (run,) = baseline_runs(ctx)
    assert run["recipe"]["model"]["arch"] == "densenet121" and run["seed"] == 0
    assert run["recipe"]["finetune"]["epochs"] == smoke_loaded.base.finetune.epochs
    assert run["artifacts"] == str(storage / run["rel"]) and not is_done(run)


def test_background_returns_or_reraises_in_the_caller():
    assert _Background(lambda: 3, "t").result() == 3
    gate = threading.Event()
    job = _Background(lambda: gate.wait(5) and 1 / 0, "t")
    assert job.alive()
    gate.set()
    with pytest.raises(ZeroDivisionError):
        job.result()
