"""Writes that meet a full or read-only disk, and locks whose holder died.

The disk faults are injected at the write layer here (a file whose ``write`` raises ENOSPC
after some bytes, standing in for the kernel), so these run anywhere in a second;
tests/faults/ meets the same faults on a real tmpfs in a whole search.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time

import pyarrow.fs as pafs
import pytest
import torch

from explorer.storage import atomic, tunefs
from explorer.storage.atomic import atomic_torch_save, atomic_write_json
from explorer.storage.faults import StorageFault, fault_in_text, storage_fault
from explorer.storage.locks import FileLock, holder_gone


class _FullAfter:
    """A binary file whose writes fail with ENOSPC once ``limit`` bytes were written."""

    def __init__(self, f, limit: int):
        self._f, self.left = f, limit

    def write(self, data) -> int:
        if len(data) > self.left:
            self._f.write(bytes(data[: self.left]))
            self.left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.left -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.fixture
def disk_full_after(monkeypatch):
    """``set(module, n)``: ``open(..., "wb")`` in ``module`` gives files that fill after n bytes."""
    def set_(module, limit: int) -> None:
        real = open

        def fake(path, mode="r", *a, **k):
            f = real(path, mode, *a, **k)
            return _FullAfter(f, limit) if "w" in mode else f

        monkeypatch.setattr(module, "open", fake, raising=False)

    return set_


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_json_write_on_a_full_disk_keeps_the_old_file_and_names_the_target(tmp_path,
                                                                           disk_full_after):
    target = tmp_path / "stages.json"
    atomic_write_json(target, {"search": 1.0})
    disk_full_after(atomic, 10)
    with pytest.raises(OSError) as info:
        atomic_write_json(target, {"search": 2.0, "padding": "x" * 100})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert json.loads(target.read_text()) == {"search": 1.0}
    assert leftovers(tmp_path) == []


def test_torch_save_on_a_full_disk_raises_the_oserror_not_torchs_runtime_error(
        tmp_path, disk_full_after):
    target = tmp_path / "resume.pt"
    disk_full_after(atomic, 2000)
    with pytest.raises(OSError) as info:
        atomic_torch_save({"w": torch.zeros(10_000)}, target)
    fault = StorageFault.from_exception(info.value, "runs/x")
    assert fault is not None and fault.errno == errno.ENOSPC and str(target) in str(fault)
    assert not target.exists() and leftovers(tmp_path) == []
    disk_full_after(atomic, 10**9)
    atomic_torch_save({"w": torch.ones(3)}, target)  # space again: whole and readable
    assert torch.load(target)["w"].tolist() == [1.0, 1.0, 1.0]


def test_tunes_copies_through_the_atomic_file_system_never_leave_a_partial_file(
        tmp_path, disk_full_after):
    fs = tunefs.tune_filesystem()
    src, dest = tmp_path / "staging.json", tmp_path / "storage" / "experiment_state.json"
    dest.parent.mkdir()
    src.write_text('{"old": true}')
    pafs.copy_files(str(src), str(dest), destination_filesystem=fs)
    src.write_text('{"new": "' + "x" * 5000 + '"}')
    disk_full_after(tunefs, 1000)
    with pytest.raises(OSError) as info:
        pafs.copy_files(str(src), str(dest), destination_filesystem=fs)
    assert storage_fault(info.value) is not None
    assert dest.read_text() == '{"old": true}'  # pyarrow's own copy leaves 1000 bytes here
    assert leftovers(dest.parent) == []


def test_fault_text_from_a_trial_error_and_from_pyarrow():
    trial = ("ray::ImplicitFunc.train()\nOSError: [Errno 28] No space left on device\n"
             "OSError: [Errno 28] No space left on device: '/s/x/trials/a/config.json'")
    assert fault_in_text(trial) == (errno.ENOSPC, "/s/x/trials/a/config.json")
    assert fault_in_text("Error writing bytes. Detail: [errno 30] Read-only file system") == \
        (errno.EROFS, None)
    assert fault_in_text("[Errno 2] No such file or directory: 'x'") is None
    line = str(StorageFault(errno.EDQUOT, "/s/x/a.pt", "s3://b/x", by="trial 1"))
    assert "disk quota exceeded writing /s/x/a.pt (trial 1)" in line and "--resume" in line


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _lock_file(path, host: str, pid: int) -> None:
    path.write_text(json.dumps({"owner": f"{host}:{pid}", "host": host, "pid": pid,
                                "acquired": time.time(), "since": time.time()}))


def test_a_lock_whose_holder_died_on_this_host_is_taken_over_at_once(tmp_path):
    path = tmp_path / "driver.lock"
    _lock_file(path, socket.gethostname(), _dead_pid())  # fresh: heartbeat a second ago
    assert holder_gone(json.loads(path.read_text()))
    lock = FileLock(path, ttl=3600, heartbeat=60)
    assert lock.try_acquire()
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not path.exists()


def test_a_live_or_remote_holder_keeps_its_lock_until_its_heartbeat_is_stale(tmp_path):
    path = tmp_path / "driver.lock"
    _lock_file(path, socket.gethostname(), os.getppid())  # alive
    assert not FileLock(path, ttl=3600, heartbeat=60).try_acquire()
    _lock_file(path, "another-host", _dead_pid())  # its pid means nothing here
    lock = FileLock(path, ttl=3600, heartbeat=60)
    assert not lock.try_acquire()
    info = lock.holder()
    assert info["host"] == "another-host" and info["age"] < 60
    old = time.time() - 7200
    os.utime(path, (old, old))  # no heartbeat for two hours
    assert FileLock(path, ttl=3600, heartbeat=60).try_acquire()
