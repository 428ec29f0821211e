"""The driver's side of faults, without Ray: the experiment lock, the journal and temporaries
a dead driver left, Tune state that cannot be read, and how a fault becomes one line.
A whole search meeting each fault is in tests/faults/."""

from __future__ import annotations

import errno
import logging
import os
import pickle
import signal
import socket
import threading
from types import SimpleNamespace

import optuna
import pytest

from explorer.search.cli import wrapped_user_error
from explorer.search.faults import (
    FaultLog,
    FaultWatch,
    Halted,
    Terminated,
    sigterm_as_interrupt,
)
from explorer.search.rebuild import state_damage
from explorer.search.repair import repair_journal, sweep_temporaries
from explorer.search.writer import ExperimentBusy, sole_writer
from explorer.storage import Store
from explorer.storage.faults import StorageFault


def _journal(path, n: int = 3) -> None:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="x", storage=storage)
    for i in range(n):
        study.tell(study.ask({"a": optuna.distributions.FloatDistribution(0, 1)}), i / 10)


def _load(path) -> optuna.Study:
    return optuna.load_study(study_name="x", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path))))


def test_a_torn_last_journal_line_is_cut_and_said_and_the_study_still_loads(tmp_path):
    path = tmp_path / "optuna.journal"
    _journal(path)
    whole = path.read_bytes()
    assert repair_journal(path, "runs/x/optuna.journal") is None
    path.write_bytes(whole + b'{"op_code": 6, "worker_id": "ab')  # a write cut off
    (tmp_path / "optuna.journal.lock").symlink_to(path)  # Optuna's lock, its holder killed
    note = repair_journal(path, "runs/x/optuna.journal")
    assert note.startswith("note: runs/x/optuna.journal: its last line was cut off by an "
                           "interrupted write; removed it (31 bytes), the study keeps its first")
    assert path.read_bytes() == whole and not (tmp_path / "optuna.journal.lock").exists()
    study = _load(path)
    assert len(study.trials) == 3
    study.tell(study.ask({"a": optuna.distributions.FloatDistribution(0, 1)}), 0.9)  # appends
    assert len(_load(path).trials) == 4


def test_a_journal_appended_after_a_torn_line_keeps_its_readable_beginning(tmp_path):
    """What an unrepaired resume used to leave: the next record glued to the torn one."""
    path = tmp_path / "optuna.journal"
    _journal(path, 2)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"op_code": 6, "wor' + b'{"op_code": 6, "worker_id": "c"}\n'
                     + b'{"op_code": 6, "worker_id": "d"}\n')
    with pytest.raises(Exception):  # noqa: B017 - Optuna's own error: the journal is unreadable
        len(_load(path).trials)
    note = repair_journal(path, "j")
    assert note.startswith("note: j: its last 2 line(s) are damaged")
    assert path.read_bytes() == whole and len(_load(path).trials) == 2


def test_temporaries_of_interrupted_writes_are_swept(tmp_path):
    (tmp_path / "trials" / "a").mkdir(parents=True)
    left = [tmp_path / "trials" / "a" / ".best_model.pt.123.456.tmp",
            tmp_path / ".experiment_state-x.json.1.2.tmp", tmp_path / "driver.lock.stale.1.2"]
    for p in left:
        p.write_bytes(b"x" * 1000)
    keep = tmp_path / "trials" / "a" / "history.json"
    keep.write_text("[]")
    assert sweep_temporaries(tmp_path) == (3, 3000)
    assert keep.exists() and not any(p.exists() for p in left)


def test_tune_state_that_cannot_be_read_is_named(tmp_path):
    (tmp_path / "tuner.pkl").write_bytes(pickle.dumps({"a": 1}))
    (tmp_path / "experiment_state-2026.json").write_text('{"trial_data": [], "runner_data": {}}')
    assert state_damage(tmp_path) is None
    (tmp_path / "experiment_state-2027.json").write_text('{"trial_data": [[{"a"')  # newest
    assert state_damage(tmp_path).startswith("experiment_state-2027.json: ")
    (tmp_path / "experiment_state-2027.json").unlink()
    blob = pickle.dumps({"a": list(range(100))})
    (tmp_path / "tuner.pkl").write_bytes(blob[: len(blob) // 2])
    assert state_damage(tmp_path).startswith("tuner.pkl: ")


def test_a_second_driver_is_refused_in_one_line_naming_the_holder(tmp_path):
    store = Store(tmp_path)
    with sole_writer(store, "exp", "runs/exp"):
        with pytest.raises(ExperimentBusy) as info, sole_writer(store, "exp", "runs/exp"):
            pass
        msg = str(info.value)
        assert msg.startswith("runs/exp is being run by another search")
        assert f"host {socket.gethostname()}, pid {os.getpid()}, since " in msg
    assert not (tmp_path / "exp").exists()  # made for the lock only: gone again
    with sole_writer(store, "exp", "runs/exp"):
        pass


def test_a_second_driver_is_refused_on_s3_too(s3):
    store = Store(s3.uri("writer"))
    with sole_writer(store, "exp", "s3://x/exp"), \
            pytest.raises(ExperimentBusy, match=rf"pid {os.getpid()}, since "), \
            sole_writer(Store(s3.uri("writer")), "exp", "s3://x/exp"):
        pass
    with sole_writer(store, "exp", "s3://x/exp"):  # released: free again
        pass


def test_ray_log_records_of_a_storage_fault_are_taken_off_stderr_and_stop_the_run(caplog):
    log = FaultLog()
    trial_error = OSError("ray::ImplicitFunc.train() ... [Errno 30] Read-only file system: "
                          "'/s/exp/trials/b/history.json'")
    plain = logging.LogRecord("ray.tune", logging.ERROR, "f", 1, "Trial task failed", None, None)
    assert log.filter(plain) and log.fault is None
    record = logging.LogRecord("ray.tune", logging.ERROR, "f", 1, "Trial task failed", None,
                               (OSError, trial_error, None))
    assert not log.filter(record)
    assert log.fault == (errno.EROFS, "/s/exp/trials/b/history.json")
    with pytest.raises(StorageFault, match="read-only file system writing /s/exp/trials/b"):
        FaultWatch("runs/exp", log).on_step_begin(iteration=1, trials=[])


def test_a_trial_that_failed_on_a_full_disk_stops_the_run_before_tune_retries_it(tmp_path):
    err = tmp_path / "error.txt"
    err.write_text("Failure # 1\nOSError: [Errno 28] No space left on device: '/s/e/x.pt'\n")
    trial = SimpleNamespace(trial_id="t1", error_file=str(err), get_error=lambda: None)
    with pytest.raises(StorageFault, match=r"no space left on device writing /s/e/x.pt \(trial"):
        FaultWatch("runs/exp").on_trial_recover(iteration=1, trials=[trial], trial=trial)
    err.write_text("ValueError: a bug\n")
    FaultWatch("runs/exp").on_trial_error(iteration=1, trials=[trial], trial=trial)  # not ours


def test_the_baselines_run_is_halted_when_the_search_stops_and_pickles_without_its_event():
    halt = threading.Event()
    watch = FaultWatch("runs/exp", FaultLog(), halt=halt)
    watch.on_step_begin(iteration=1, trials=[])
    halt.set()
    with pytest.raises(Halted):
        watch.on_step_begin(iteration=2, trials=[])
    restored = pickle.loads(pickle.dumps(watch))  # as Tune keeps it in tuner.pkl
    assert restored.where == "runs/exp" and restored.halt is None and restored.log is None
    restored.on_step_begin(iteration=3, trials=[])


def test_sigterm_is_an_interrupt_and_a_wrapped_user_error_is_found():
    with pytest.raises(Terminated), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()  # the handler raises before this returns
    try:
        try:
            raise StorageFault(errno.ENOSPC, None, "runs/x")
        except StorageFault:  # what Tune does with a callback's exception
            raise RuntimeError("TuneError: Traceback ...")  # noqa: B904
    except RuntimeError as exc:
        assert isinstance(wrapped_user_error(exc), StorageFault)
    assert wrapped_user_error(RuntimeError("a bug")) is None
