"""A search on a real multi-node Ray cluster: trials land on a worker node, the driver is
killed, and the search resumes on the cluster with nothing lost.

The cluster is Ray's own ``ray.cluster_utils.Cluster``: a head node with no CPUs (so every trial
must run on the added worker node) and a 2-CPU worker node, as separate raylets on this machine.
Its nodes keep their mirror of a remote storage in a folder of their own, apart from the
drivers', so a search on S3 only works if everything really goes through S3.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]  # per test; a hang fails, not CI
SETS = ["scale=smoke", "search.num_samples=3", "baselines=[]", "search.points_to_evaluate=[]",
        "search.params={pretrain.mask_ratio: {type: float, low: 0.5, high: 0.95}}"]


CLUSTER = """
import json, sys
from ray.cluster_utils import Cluster
c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
w = c.add_node(num_cpus=2)
c.wait_for_nodes()
print(json.dumps({"address": c.address, "worker": w.node_id}), flush=True)
sys.stdin.read()  # until the test closes our stdin
c.shutdown()
"""


@pytest.fixture(scope="module")
def cluster(s3, tmp_path_factory):
    """Token authentication on, with a token of the test's own (drivers inherit it). The
    cluster lives in its own process: Ray reads its auth settings once per process. Its nodes
    inherit the local S3's credentials (``s3``), as real nodes would have an instance role."""
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = os.urandom(32).hex()
    env = {**os.environ, "CXR_EXPLORER_MIRROR": str(tmp_path_factory.mktemp("node-mirror"))}
    proc = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    info = json.loads(proc.stdout.readline())
    yield info["address"], info["worker"]
    proc.stdin.close()
    proc.wait(timeout=60)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def start(storage: Path | str, address: str, *extra: str, env: dict | None = None,
          logs: Path | None = None) -> subprocess.Popen:
    logs = logs or Path(storage)
    cmd = [sys.executable, "-m", "explorer.search", str(REPO / "search_spaces" / "mask_ratio.yaml"),
           "--storage", str(storage), "--reports", str(logs / "reports"), "--address", address,
           *[a for s in SETS for a in ("--set", s)], *extra]
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k != "RAY_ADDRESS"}
    log = open(logs / f"driver-{time.time_ns()}.log", "w")  # noqa: SIM115
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def last_log(where: Path) -> str:
    return max(where.glob("driver-*.log")).read_text()[-3000:]


def test_search_on_a_worker_node_killed_and_resumed(cluster, tmp_path):
    address, worker = cluster
    run = tmp_path / "mask_ratio"
    first = start(tmp_path, address)
    end = time.time() + 240
    while not list(run.glob("trials/*/done.json")):
        assert first.poll() is None, max(tmp_path.glob("driver-*.log")).read_text()[-3000:]
        assert time.time() < end, "no trial finished on the cluster"
        time.sleep(0.5)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    finished = {p: p.stat().st_mtime_ns for p in run.glob("trials/*/done.json")}

    second = start(tmp_path, address, "--resume")
    assert second.wait(timeout=400) == 0, max(tmp_path.glob("driver-*.log")).read_text()[-3000:]
    trials = pd.read_parquet(run / "results" / "trials.parquet")
    assert len(trials) == 3 and trials.trial_id.is_unique
    assert trials["param/pretrain.mask_ratio"].is_unique
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    nodes = {json.loads((run / "trials" / t / "config.json").read_text())["node"]["node_id"]
             for t in trials.trial_id}
    assert nodes == {worker}, "every trial ran on the worker node (the head has 0 CPUs)"


def mid_finetuning(s3, uri: str, known: float) -> bool:
    """A trial has pushed a resume state, is not done, and started ``known`` seconds ago (so
    the driver's pushed Tune state knows it: Tune snapshots and the driver pushes every 5 s)."""
    stored = s3.files(uri, "mask_ratio/trials")
    for r in stored:
        trial = r.rsplit("/", 1)[0]
        if r.endswith("/resume.pt") and f"{trial}/done.json" not in stored:
            try:
                started = json.loads(s3.read(uri, f"{trial}/config.json"))["started"]
            except (OSError, KeyError, ValueError):
                continue
            if time.time() - started >= known:
                return True
    return False


def test_search_on_s3_killed_and_resumed_by_a_driver_on_another_machine(cluster, s3, tmp_path):
    """Trials on the worker node write to S3 (through the node's own mirror); the first driver
    is killed mid fine-tuning, after a trial finished; a second driver with an empty mirror
    (another machine) resumes from what S3 holds: the finished trial is kept, the interrupted
    one continues from its stored resume state, nothing is lost."""
    import optuna

    address, worker = cluster
    uri = s3.uri()
    longer = ("--set", "finetune.epochs=30", "--set", "search.scheduler.type=none")
    # A killed trial's encoder lock expires sooner than the default 90 s.
    stale = {"CXR_EXPLORER_LOCK_STALE_S": "12"}
    first = start(uri, address, *longer, logs=tmp_path,
                  env={"CXR_EXPLORER_MIRROR": str(tmp_path / "driver-a"), **stale})
    end = time.time() + 300
    while not ([r for r in s3.files(uri, "mask_ratio/trials") if r.endswith("/done.json")]
               and mid_finetuning(s3, uri, known=12)):
        assert first.poll() is None, last_log(tmp_path)
        assert time.time() < end, "no trial finished, or none was mid fine-tuning"
        time.sleep(0.5)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    finished = {r: i.mtime for r, i in s3.files(uri, "mask_ratio/trials").items()
                if r.endswith("/done.json")}

    second = start(uri, address, *longer, "--resume", logs=tmp_path,
                   env={"CXR_EXPLORER_MIRROR": str(tmp_path / "driver-b"), **stale})
    assert second.wait(timeout=400) == 0, last_log(tmp_path)
    stored = s3.files(uri, "mask_ratio")
    assert all(stored[r].mtime == t for r, t in finished.items()), "a finished trial re-ran"
    assert not [r for r in stored if r.endswith("resume.pt")], "resume states are cleaned up"
    (tmp_path / "trials.parquet").write_bytes(s3.read(uri, "mask_ratio/results/trials.parquet"))
    trials = pd.read_parquet(tmp_path / "trials.parquet")
    assert len(trials) == 3 and trials.trial_id.is_unique
    assert trials["param/pretrain.mask_ratio"].is_unique and set(trials.status) == {"completed"}
    assert trials["resumes"].sum() >= 1, "the interrupted trial went on from its S3 state"
    for t in trials.trial_id:
        assert json.loads(s3.read(uri, f"mask_ratio/trials/{t}/config.json"))["node"][
            "node_id"] == worker
    (tmp_path / "optuna.journal").write_bytes(s3.read(uri, "mask_ratio/optuna.journal"))
    study = optuna.load_study(study_name="mask_ratio", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    assert not list((tmp_path / "driver-a").rglob("history.json")), \
        "the first driver never saw a trial's files except through S3"


def test_resources_that_never_fit_are_refused_in_one_line(cluster, tmp_path):
    address, _ = cluster
    proc = start(tmp_path, address, "--set", "resources.cpus_per_worker=4")
    assert proc.wait(timeout=120) == 2
    out = max(tmp_path.glob("driver-*.log")).read_text().strip().splitlines()
    assert out[-1].startswith("error: resources:") and "4 CPUs" in out[-1]
    assert not (tmp_path / "mask_ratio").exists()


def test_a_driver_without_the_clusters_token_is_refused_in_one_line(cluster, tmp_path):
    address, _ = cluster
    proc = start(tmp_path, address, env={"RAY_AUTH_TOKEN": "0" * 64})
    assert proc.wait(timeout=180) == 2
    last = max(tmp_path.glob("driver-*.log")).read_text().strip().splitlines()[-1]
    assert last.startswith("error: could not connect to the Ray cluster") and "token" in last
    assert not (tmp_path / "mask_ratio").exists()
