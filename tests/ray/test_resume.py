"""Interrupting a real search (kill -9 of the driver, a killed trial worker) and resuming it.
Ctrl-C and SIGTERM are in tests/faults/test_faults.py.

Each search runs as its own process with its own local Ray, exactly as a user runs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]  # per test; a hang fails, not CI

# A continuous mask ratio: two trials with the same value would mean a trial ran twice.
SETS = ["scale=smoke", "search.num_samples=4", "baselines=[]", "search.points_to_evaluate=[]",
        "search.params={pretrain.mask_ratio: {type: float, low: 0.5, high: 0.95}}",
        "search.scheduler.type=none"]


def start(storage: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    """The search as a user starts it, in its own process (``env``: its environment)."""
    cmd = [sys.executable, "-m", "explorer.search", str(REPO / "search_spaces" / "mask_ratio.yaml"),
           "--storage", str(storage), "--reports", str(storage / "reports"), "--address", "local",
           *[a for s in SETS for a in ("--set", s)], *extra]  # later --set values win
    log = open(storage / f"driver-{time.time_ns()}.log", "w")  # noqa: SIM115 - closed by the OS
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=storage, env=env)


def wait_for(what: str, pred, proc: subprocess.Popen, timeout: float = 240) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        if proc.poll() is not None:
            raise AssertionError(f"search exited ({proc.returncode}) before: {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for: {what}")


def done_files(run: Path) -> list[Path]:
    return sorted(run.glob("trials/*/done.json"))


def mid_epoch(run: Path, since: float = 0.0, before: int = 10**9, known: float = 0.0) -> bool:
    """A trial has saved a fine-tuning epoch after ``since``, and fewer than ``before`` epochs,
    is not done, and started at least ``known`` seconds ago: it will resume mid-way from its
    resume state. (Tune snapshots its experiment every 5 s; a trial that started after the last
    snapshot is unknown to a resume and runs again from scratch under a new id.)"""
    for d in run.glob("trials/*"):
        try:
            started = json.loads((d / "config.json").read_text())["started"]
            if (d / "resume.pt").stat().st_mtime > since and not (d / "done.json").is_file() \
                    and len(json.loads((d / "history.json").read_text())) < before \
                    and time.time() - started >= known:
                return True
        except (OSError, ValueError, KeyError):
            continue
    return False


def kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(3)  # the driver's local Ray shares its fate; let it go down


def check_complete(run: Path, n: int) -> pd.DataFrame:
    trials = pd.read_parquet(run / "results" / "trials.parquet")
    assert len(trials) == n and trials.trial_id.is_unique
    assert trials["param/pretrain.mask_ratio"].is_unique, "a trial ran twice"
    assert set(trials.status) == {"completed"}
    study = optuna.load_study(study_name=run.name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run / "optuna.journal"))))
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    complete = {round(t.params["pretrain.mask_ratio"], 9) for t in study.trials
                if t.state == optuna.trial.TrialState.COMPLETE}
    assert complete == {round(v, 9) for v in trials["param/pretrain.mask_ratio"]}
    return trials


@pytest.mark.timeout(900)  # three drivers, two of them killed
def test_kill9_twice_then_resume_finishes_exactly_num_samples(tmp_path):
    run = tmp_path / "mask_ratio"
    longer = ("--set", "finetune.epochs=30")  # a window of seconds to kill a trial mid-way
    first = start(tmp_path, *longer)
    wait_for("one finished trial", lambda: len(done_files(run)) >= 1, first)
    kill9(first)
    finished = {p: p.stat().st_mtime_ns for p in done_files(run)}

    resumed_at = time.time()
    second = start(tmp_path, "--resume", *longer)
    wait_for("a trial interrupted mid fine-tuning, after an epoch of this run",
             lambda: mid_epoch(run, since=resumed_at, before=26, known=7), second)
    kill9(second)
    finished.update({p: p.stat().st_mtime_ns for p in done_files(run) if p not in finished})

    third = start(tmp_path, "--resume", *longer)
    assert third.wait(timeout=400) == 0
    trials = check_complete(run, 4)
    assert trials.resumes.sum() >= 1  # the trial killed mid-way went on from its state
    assert not list(run.glob("trials/*/resume.pt")), "lost trials' states are dropped too"
    # finished trials were neither lost nor re-run
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())


def _parent(pid: int) -> int:
    stat = (Path("/proc") / str(pid) / "stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def trial_processes(driver: int, name: bytes = b"ray::ImplicitFunc") -> list[int]:
    """Pids of Ray workers named ``name`` (default: an inline search trial), descended from our
    driver (its local Ray is its child): never another Ray session's processes on the machine."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if not (proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(name)):
                continue
            pid = ancestor = int(proc.name)
            while ancestor > 1 and ancestor != driver:
                ancestor = _parent(ancestor)
            if ancestor == driver:
                pids.append(pid)
        except (OSError, ValueError, IndexError):
            continue
    return pids


def test_retry_failed_reruns_only_the_trial_that_crashed(tmp_path):
    """A trial whose worker process is killed twice (as an out-of-memory kill would) exhausts
    Tune's retry and is recorded as failed; --retry-failed runs just that trial again."""
    run = tmp_path / "mask_ratio"
    sets = ("--set", "search.num_samples=1", "--set", "search.max_concurrent=1")
    proc = start(tmp_path, *sets)
    killed: set[int] = set()
    end = time.time() + 240
    while len(killed) < 2:
        assert time.time() < end and proc.poll() is None, "trial never crashed twice"
        for pid in trial_processes(proc.pid):
            if pid not in killed:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        time.sleep(0.2)
    assert proc.wait(timeout=240) == 0
    trials = pd.read_parquet(run / "results" / "trials.parquet")
    assert list(trials.status) == ["failed"] and trials.error.iloc[0]

    retry = start(tmp_path, "--retry-failed", *sets)
    assert retry.wait(timeout=300) == 0
    trials = pd.read_parquet(run / "results" / "trials.parquet")
    assert list(trials.status) == ["completed"] and len(trials) == 1
    study = optuna.load_study(study_name="mask_ratio", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run / "optuna.journal"))))
    assert [t.state for t in study.trials].count(optuna.trial.TrialState.COMPLETE) == 1


def test_killed_train_worker_restarts_from_its_last_checkpoint(tmp_path):
    """One of 2 Ray Train DDP workers (each with a loader process) killed mid fine-tuning, as
    a lost node or an OOM kill would, is restarted by Train's FailureConfig, inside the same
    trial, from the last saved epoch."""
    run = tmp_path / "mask_ratio"
    proc = start(tmp_path, "--set", "search.num_samples=1", "--set", "search.max_concurrent=1",
                 "--set", "resources.trainer=torch_trainer", "--set", "resources.workers=2",
                 "--set", "resources.cpus_per_worker=0.5", "--set", "data.loader_workers=1",
                 "--set", "finetune.epochs=8")

    def saved_epochs() -> int:
        """Epochs in the trial's record while its resume state exists and it is not done."""
        hist = list(run.glob("trials/*/history.json"))
        if not hist or done_files(run) or not list(run.glob("trials/*/resume.pt")):
            return 0
        return len(json.loads(hist[0].read_text()))

    wait_for("a saved fine-tuning epoch", lambda: saved_epochs() >= 2, proc)
    seen = saved_epochs()  # its state is saved right after its record: seen - 1 at least
    named = trial_processes(proc.pid, b"ray::RayTrainWorker")
    # loader processes are forks of a worker and carry its name: keep the workers themselves
    workers = [p for p in named if _parent(p) not in named]
    assert len(workers) == 2 and len(named) > 2, "2 DDP workers, with loader processes"
    os.kill(workers[1], signal.SIGKILL)
    assert proc.wait(timeout=300) == 0

    trials = pd.read_parquet(run / "results" / "trials.parquet")
    assert list(trials.status) == ["completed"] and list(trials.resumes) == [1]
    trial_dir = next(run.glob("trials/*"))
    resumes = json.loads((trial_dir / "resumes.json").read_text())
    # it went on from the newest saved epoch (or a later one), not from scratch
    assert len(resumes) == 1 and seen - 1 <= resumes[0]["from_epoch"] < 8
    epochs = [h["epoch"] for h in json.loads((trial_dir / "history.json").read_text())]
    assert epochs == list(range(1, 9)), "epochs lost or repeated"
    page = (tmp_path / "reports" / "mask_ratio" / "index.html").read_text()
    assert "resumed from a checkpoint 1x" in page
