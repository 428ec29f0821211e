"""One writer per experiment: the running driver holds ``<storage>/<name>/driver.lock``.

Two drivers on one experiment (two terminals starting the same search, or a ``--resume``
while the first still runs) used to run together: trial folders piled up, each driver's
searcher failed the other's trials in the shared Optuna journal, the report missed some. The
lock is the encoder locks' (``explorer.storage.locks``): a file created exclusively on a file
system, a lock object on S3, kept fresh by a heartbeat. A second driver is refused in one line
naming the holder while it is alive; the lock of a holder that died is taken over, at once
when it ran on this host (its pid is gone), elsewhere once its heartbeat is ``ttl`` seconds old.

The lock is taken after every check that needs no storage and before the first thing the
driver writes or pulls (a remote storage's mirror is shared by the drivers of one machine).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Iterator

from explorer.errors import UserError
from explorer.storage import Store
from explorer.storage.locks import lock_timing

LOCK = "driver.lock"


class ExperimentBusy(UserError):
    """Another driver is running this experiment."""


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "an unknown time"


def busy_message(where: str, info: dict | None, ttl: float) -> str:
    info = info or {}
    host, pid = info.get("host") or "an unknown host", info.get("pid") or "unknown"
    age = info.get("age")
    beat = f", last heartbeat {age:.0f} s ago" if age is not None else ""
    return (f"{where} is being run by another search (host {host}, pid {pid}, since "
            f"{_when(info.get('acquired'))}{beat}): wait for it to end or stop it; the lock of "
            f"a stopped search is taken over at once on its own host, from elsewhere after "
            f"{ttl:.0f} s without a heartbeat")


@contextlib.contextmanager
def sole_writer(store: Store, name: str, where: str) -> Iterator[None]:
    """Hold the experiment's driver lock while the block runs; ``ExperimentBusy`` if another
    live driver holds it. A folder made only for the lock is removed again (a run refused
    later, e.g. for bad data, leaves nothing behind)."""
    folder = store.path(name)
    made = []  # folders the lock will create: the experiment's, and the storage's if new
    for d in (folder, *folder.parents):
        if d.exists():
            break
        made.append(d)
    # unique per driver: a lock object held by the same owner counts as one's own
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    lock = store.lock(f"{name}/{LOCK}", owner=owner)
    if not lock.try_acquire():
        raise ExperimentBusy(busy_message(where, lock.holder(), lock_timing()[0]))
    try:
        yield
    finally:
        lock.release()
        for d in made:  # deepest first; one that is not empty holds the run's record
            try:
                d.rmdir()
            except OSError:
                break
