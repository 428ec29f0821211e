"""A search seen in MLflow, TensorBoard and optuna-dashboard (the real packages)."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from ray.tune.experiment import Trial

from explorer.spec import load_spec
from explorer.storage import as_store
from explorer.tracking.mlflow_runs import TRIAL_TAG, TrialMLflowLogger

REPO = Path(__file__).resolve().parents[2]


def mlflow_client(run: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")


def same_curve(points: list[tuple[int, float]], record: Path) -> bool:
    """(epoch, validation mean AUC) points equal to the trial's own history.json."""
    hist = json.loads((record / "history.json").read_text())
    return [s for s, _ in points] == [h["epoch"] for h in hist] and \
        [v for _, v in points] == pytest.approx([h["val_mean_auc"] for h in hist], abs=1e-6)


@pytest.mark.ray
def test_mlflow_holds_one_run_per_trial_with_epoch_metrics(tracked_search, record_of):
    client = mlflow_client(tracked_search)
    exp = client.get_experiment_by_name("mask_ratio")
    assert exp.artifact_location == (tracked_search / "mlartifacts").as_uri()
    runs = client.search_runs([exp.experiment_id])
    meta = json.loads((tracked_search / "results" / "meta.json").read_text())
    trials = sorted(p.name for p in (tracked_search / "trials").iterdir())
    baseline = meta["baselines"][0]["run_id"]
    assert sorted(r.info.run_name for r in runs) == sorted([*trials, baseline])
    for r in runs:
        assert r.info.status == "FINISHED"
        name = r.info.run_name
        steps = sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id,
                                                                            "val_mean_auc"))
        assert same_curve(steps, record_of(tracked_search, name))
        assert "pid" not in r.data.metrics and "config/pretrain.mask_ratio" not in r.data.metrics
        artefacts = {a.path for a in client.list_artifacts(r.info.run_id, "record")}
        assert {"record/summary.json", "record/history.json"} <= artefacts
        assert not any(a.endswith(".pt") for a in artefacts)
        if name in trials:
            assert r.data.tags[TRIAL_TAG] == name and r.data.tags["kind"] == "recipe"
            assert set(r.data.params) == {"pretrain.mask_ratio"}
        else:
            assert r.data.tags["kind"] == "baseline"


def tensorboard_scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Read a TensorBoard event file (TFRecord framing: length, crc, event, crc)."""
    from tensorboardX.proto.event_pb2 import Event

    data, i, out = path.read_bytes(), 0, {}
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i:i + 8])
        event = Event.FromString(data[i + 12:i + 12 + n])
        i += 12 + n + 4
        for v in event.summary.value:
            out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


@pytest.mark.ray
def test_tensorboard_files_per_trial_by_epoch(tracked_search, record_of):
    for trial in (tracked_search / "trials").iterdir():
        files = list((tracked_search / trial.name).glob("events.out.tfevents.*"))
        assert len(files) == 1, files  # ours replaced Ray's default logger, not doubled it
        curve = tensorboard_scalars(files[0])["ray/tune/val_mean_auc"]
        assert same_curve(curve, trial)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ray
def test_optuna_dashboard_serves_the_study(tracked_search):
    port = free_port()
    cli = Path(sys.executable).with_name("optuna-dashboard")
    server = subprocess.Popen([str(cli), str(tracked_search / "optuna.journal"),
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, studies = time.monotonic() + 60, None
        while studies is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                    studies = json.load(r)["study_summaries"]
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.5)
        assert [s["study_name"] for s in studies] == ["mask_ratio"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/"
                                    f"{studies[0]['study_id']}", timeout=30) as r:
            trials = json.load(r)["trials"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    values = sorted(json.loads((t / "summary.json").read_text())["val_mean_auc"]
                    for t in (tracked_search / "trials").iterdir())
    assert sorted(t["values"][0] for t in trials) == pytest.approx(values)
    assert {t["state"] for t in trials} == {"Complete"}


def test_a_resumed_trial_logs_into_its_existing_run(tmp_path):
    """After a driver restart Tune brings back a fresh callback: the trial's run continues, and
    the epoch whose result died with the old driver is filled in from the trial's record."""
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    record = tmp_path / "exp" / "trials" / "abc123"
    record.mkdir(parents=True)
    (record / "summary.json").write_text("{}")
    (record / "history.json").write_text(json.dumps([
        {"epoch": e, "val_mean_auc": v, "train_loss": 1.0, "lr": 1e-3}
        for e, v in ((1, 0.5), (2, 0.55), (3, 0.6))]))

    def logger() -> TrialMLflowLogger:
        cb = TrialMLflowLogger(uri, experiment="exp", artifact_location=(
            tmp_path / "art").as_uri(), store=as_store(tmp_path), run="exp", baselines={})
        cb.setup()
        return cb

    trial = Trial("search_trainable", config={"pretrain.mask_ratio": 0.9}, trial_id="abc123",
                  stub=True)
    first = logger()
    first.log_trial_start(trial)
    first.log_trial_result(1, trial, {"epoch": 1, "val_mean_auc": 0.5, "training_iteration": 1})
    second = logger()  # the restored driver's; training_iteration restarts, the epoch does not
    second.log_trial_result(1, trial, {"epoch": 3, "val_mean_auc": 0.6, "training_iteration": 1})
    second.log_trial_end(trial)
    client = mlflow_client(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert sorted((m.step, m.value) for m in client.get_metric_history(
        runs[0].info.run_id, "val_mean_auc")) == [(1, 0.5), (2, 0.55), (3, 0.6)]
    assert [a.path for a in client.list_artifacts(runs[0].info.run_id, "record")] == \
        ["record/history.json", "record/summary.json"]


def test_a_stopped_trials_record_is_logged_once_it_holds_its_last_epoch(tmp_path):
    """A trial writes its record off its training thread: when ASHA stops it, Tune can end it
    before its last reported epoch is on disk (seen on a loaded machine: the MLflow run got no
    history.json). The end of the run waits for the record to hold that epoch."""
    import threading

    from explorer.storage import atomic_write_json

    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    record = tmp_path / "exp" / "trials" / "late01"
    record.mkdir(parents=True)
    (record / "config.json").write_text("{}")
    epochs = [{"epoch": e, "val_mean_auc": 0.5 + e / 100, "train_loss": 1.0, "lr": 1e-3}
              for e in (1, 2)]
    cb = TrialMLflowLogger(uri, experiment="exp", artifact_location=(tmp_path / "art").as_uri(),
                           store=as_store(tmp_path), run="exp", baselines={})
    cb.setup()
    trial = Trial("search_trainable", config={"pretrain.mask_ratio": 0.9}, trial_id="late01",
                  stub=True)
    cb.log_trial_start(trial)
    for e in epochs:
        cb.log_trial_result(e["epoch"], trial, {**e, "training_iteration": e["epoch"]})
    trial.update_last_result({"epoch": 2, "val_mean_auc": 0.52})

    def the_trials_writer() -> None:  # the last epoch's writes land a second late
        time.sleep(1.0)
        atomic_write_json(record / "history.json", epochs)
        atomic_write_json(record / "summary.json", {"epochs_run": 2})

    late = threading.Thread(target=the_trials_writer)
    late.start()
    cb.log_trial_end(trial)
    late.join()
    client = mlflow_client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert [a.path for a in client.list_artifacts(run.info.run_id, "record")] == \
        ["record/config.json", "record/history.json", "record/summary.json"]


def test_mlflow_settings_without_mlflow_on_are_refused():
    from explorer.errors import SpecError

    with pytest.raises(SpecError, match="mlflow_uri / mlflow_experiment are set but mlflow is "
                                        "false"):
        load_spec(REPO / "search_spaces/mask_ratio.yaml",
                  ["tracking.mlflow_uri=http://127.0.0.1:5000"])


def test_mlflow_on_without_the_package_is_one_line(monkeypatch, capsys):
    from explorer.search import main

    monkeypatch.setitem(sys.modules, "mlflow", None)  # what an install without the extra sees
    assert main([str(REPO / "search_spaces/mask_ratio.yaml"), "--set", "tracking.mlflow=true",
                 "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'cxr-recipe-explorer[track]'" in err
