"""Experiment storage in S3 (``explorer.storage.remote``), against a real S3 API (moto, local).

What is checked here is the contract the rest of the code relies on: a pull makes the mirror
equal to the storage (weights on demand), a push uploads what changed and removes what was
deleted but never touches folders other processes own, the Optuna journal goes up last, and
the cross-node lock objects exclude each other and expire. Unusable storage URIs are in the
bad-input catalogue (tests/search/test_search_bad_inputs.py). A whole search on S3, on a
multi-node cluster, killed and resumed from another machine, is in tests/ray/test_cluster.py.
"""

from __future__ import annotations

import time

import pytest

from explorer.storage import Store, open_store, remote
from explorer.storage.locks import FileLock, ObjectLock


@pytest.fixture
def store(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_EXPLORER_MIRROR", str(tmp_path / "mirror"))
    return open_store(s3.uri())


def write(store: Store, rel: str, text: str) -> None:
    p = store.path(rel)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def other_machine(store: Store, tmp_path, monkeypatch, name: str) -> Store:
    """The same storage seen from another machine: a fresh, empty mirror."""
    monkeypatch.setenv("CXR_EXPLORER_MIRROR", str(tmp_path / name))
    return Store(store.root)


def test_the_mirror_is_per_machine_and_per_uri(store, tmp_path):
    assert store.path().is_relative_to(tmp_path / "mirror")
    assert Store(store.root + "x").path() != store.path()
    assert Store("/data/runs").path("a/b") == Store("/data/runs").path() / "a" / "b"


def test_push_then_pull_on_another_machine(store, s3, tmp_path, monkeypatch):
    write(store, "exp/trials/t1/history.json", "[1]")
    write(store, "exp/trials/t1/best_model.pt", "weights")
    write(store, "exp/trials/t1/.history.json.123.tmp", "half")
    write(store, "exp/trials/t1/lock", "held")
    store.push("exp/trials/t1")
    assert set(s3.files(store.root, "exp")) == {"exp/trials/t1/history.json",
                                                "exp/trials/t1/best_model.pt"}

    b = other_machine(store, tmp_path, monkeypatch, "mirror-b")
    b.pull("exp")
    assert b.path("exp/trials/t1/history.json").read_text() == "[1]"
    assert not b.path("exp/trials/t1/best_model.pt").exists(), "weights come on demand"
    assert b.fetch("exp/trials/t1/best_model.pt")
    assert b.path("exp/trials/t1/best_model.pt").read_text() == "weights"
    assert not b.fetch("exp/trials/t1/nothing.json")


def test_pull_makes_the_mirror_equal_to_the_storage(store, tmp_path, monkeypatch):
    write(store, "exp/a.json", "stored")
    store.push("exp")
    write(store, "exp/a.json", "a local edit never pushed")
    write(store, "exp/b.json", "never pushed")
    store.pull("exp")
    assert store.path("exp/a.json").read_text() == "stored"
    assert not store.path("exp/b.json").exists()
    store.pull("elsewhere")  # nothing stored there: nothing happens
    assert not store.path("elsewhere").exists()


def test_push_uploads_changes_removes_deletions_and_leaves_other_owners_alone(
        store, s3, tmp_path, monkeypatch):
    write(store, "exp/tuner.pkl", "1")
    write(store, "exp/old-state.json", "1")
    store.push("exp")
    worker = other_machine(store, tmp_path, monkeypatch, "node")
    write(worker, "exp/trials/t1/done.json", "{}")
    worker.push("exp/trials/t1")

    store.path("exp/old-state.json").unlink()
    write(store, "exp/tuner.pkl", "22")
    store.remote.push("exp", skip_dirs=("trials",))
    files = s3.files(store.root, "exp")
    assert set(files) == {"exp/tuner.pkl", "exp/trials/t1/done.json"}
    assert s3.read(store.root, "exp/tuner.pkl") == b"22"


def test_unchanged_files_are_not_uploaded_again_and_the_journal_goes_last(store, monkeypatch):
    for name in ("optuna.journal", "a.json", "z.json"):
        write(store, f"exp/{name}", name)
    uploads: list[str] = []
    real = remote.Remote._upload
    monkeypatch.setattr(remote.Remote, "_upload",
                        lambda self, rel: (uploads.append(rel), real(self, rel)))
    store.remote.push("exp", last=("optuna.journal",))
    assert uploads[-1] == "exp/optuna.journal" and len(uploads) == 3
    store.remote.push("exp", last=("optuna.journal",))
    assert len(uploads) == 3
    time.sleep(0.01)
    write(store, "exp/a.json", "changed")
    store.remote.push("exp", last=("optuna.journal",))
    assert uploads[3:] == ["exp/a.json"]
    store.delete("exp/z.json")
    store.pull("exp")  # what was just downloaded is the stored copy: no upload back
    store.remote.push("exp")
    assert uploads[3:] == ["exp/a.json"]


def test_delete_removes_both_copies(store, s3):
    write(store, "exp/trials/t1/resume.pt", "state")
    store.push("exp/trials/t1")
    store.delete("exp/trials/t1/resume.pt")
    assert not store.path("exp/trials/t1/resume.pt").exists()
    assert s3.files(store.root, "exp") == {}


def test_background_sync_pushes_while_running_and_at_the_end(store, s3, monkeypatch):
    monkeypatch.setenv("CXR_EXPLORER_SYNC_S", "0.2")  # read when the sync starts
    with store.syncing("exp", skip_dirs=("trials",), last=("optuna.journal",)):
        write(store, "exp/experiment.json", "{}")
        end = time.time() + 10
        while "exp/experiment.json" not in s3.files(store.root, "exp"):
            assert time.time() < end, "the background push never came"
            time.sleep(0.1)
        write(store, "exp/stages.json", "{}")
    assert "exp/stages.json" in s3.files(store.root, "exp")


def test_object_locks_exclude_each_other_and_a_dead_holders_lock_expires(store):
    def lock(owner: str) -> ObjectLock:
        return ObjectLock(store.remote, "_encoders/k/lock", owner, ttl=1.5,
                                 heartbeat=0.3, settle=0.2)

    a, b = lock("trial-a"), lock("trial-b")
    assert a.try_acquire()
    assert not b.try_acquire()
    time.sleep(2)  # a's heartbeat keeps it fresh
    assert not b.try_acquire()
    a.release()
    assert b.try_acquire()
    b._stop.set()  # b dies without releasing: its heartbeat stops
    c = lock("trial-c")
    assert not c.try_acquire()
    time.sleep(1.6)
    assert c.try_acquire()
    b.release()  # a late release by a lost holder does not free c's lock
    assert not lock("trial-d").try_acquire()
    c.release()


def test_of_callers_racing_for_an_object_lock_exactly_one_wins(store):
    import threading

    locks = [ObjectLock(store.remote, "_baselines/k/lock", f"trial-{i}", ttl=30,
                               heartbeat=5, settle=0.5) for i in range(4)]
    start = threading.Barrier(len(locks))
    won: list[bool] = [False] * len(locks)

    def run(i: int) -> None:
        start.wait()
        won[i] = locks[i].try_acquire()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(locks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(won) == 1
    for lk, w in zip(locks, won):
        if w:
            lk.release()


def test_lock_objects_never_travel_with_pushes_and_pulls(store, s3):
    assert type(Store("/data/runs").lock("_baselines/k/lock", "x")).__name__ == "FileLock"
    lk = store.lock("_baselines/k/lock", "trial-a")
    assert type(lk).__name__ == "ObjectLock"
    assert lk.try_acquire()
    write(store, "_baselines/k/done.json", "{}")
    store.push("_baselines/k")  # exact: deletes what the mirror lacks, but not the lock
    assert "_baselines/k/lock" in s3.files(store.root, "_baselines")
    store.pull("_baselines/k")
    assert not store.path("_baselines/k/lock").exists()
    lk.release()
    assert not store.remote.exists("_baselines/k/lock")


def test_file_locks_exclude_each_other_and_a_dead_holders_lock_is_broken(tmp_path, monkeypatch):
    """The file-system counterpart (same interface, ``HeartbeatLock``): O_EXCL, a heartbeat
    that keeps the file fresh, and a stale lock broken after its ttl
    (``CXR_EXPLORER_LOCK_STALE_S``, read when the lock is made)."""
    monkeypatch.setenv("CXR_EXPLORER_LOCK_STALE_S", "1.0")
    store = Store(tmp_path)
    a, b = store.lock("_encoders/k/lock", "trial-a"), store.lock("_encoders/k/lock", "trial-b")
    assert isinstance(a, FileLock) and a.ttl == 1.0 and a.heartbeat == 0.5
    assert a.try_acquire()
    assert not b.try_acquire()
    time.sleep(1.5)  # a's heartbeat keeps it fresh
    assert not b.try_acquire()
    a._stop.set()  # a dies without releasing
    time.sleep(1.3)
    assert b.try_acquire()
    b.release()
    assert not (tmp_path / "_encoders" / "k" / "lock").exists()


def test_fetch_refreshes_from_the_storage_and_never_deletes_a_local_copy(store):
    write(store, "_baselines/k/done.json", "v1")
    store.push("_baselines/k")
    write(store, "_baselines/k/done.json", "v2 (local)")
    assert store.fetch("_baselines/k/done.json")  # there already: kept
    assert store.path("_baselines/k/done.json").read_text() == "v2 (local)"
    assert store.fetch("_baselines/k/done.json", refresh=True)
    assert store.path("_baselines/k/done.json").read_text() == "v1"
    # Written here by another process on this machine, not pushed yet: not stored, not touched.
    write(store, "_baselines/k2/done.json", "about to be pushed")
    assert not store.fetch("_baselines/k2/done.json", refresh=True)
    assert store.path("_baselines/k2/done.json").read_text() == "about to be pushed"
    assert store.read_bytes("_baselines/k/done.json") == b"v1"
