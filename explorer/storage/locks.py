"""Inter-node locks with a heartbeat: one trial pre-trains a shared encoder (or trains a shared
baseline) while the others wait.

``FileLock`` is a file created with O_EXCL (atomic on local disks and on NFS since NFSv3);
``ObjectLock`` is its counterpart on an object store, which has no exclusive create. Both stay
fresh through a heartbeat thread; a holder that dies stops it, and after ``ttl`` seconds another
process may take the lock, or at once when the holder ran on this host and its process is gone
(a driver killed with ``kill -9`` is resumed without waiting). ``Store.lock`` picks the right
one; ``holder()`` says who holds a lock (host, pid, since when), for the one-line refusal.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from explorer.settings import env_seconds

STALE_ENV = "CXR_EXPLORER_LOCK_STALE_S"


def _this_holder(owner: str) -> dict:
    """What a lock records about its holder."""
    return {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(),
            "acquired": time.time()}


def holder_gone(info: dict | None) -> bool:
    """The holder ran on this host and its process no longer exists (pid reuse can only make
    a dead holder look alive, which the heartbeat's ttl still catches)."""
    if not info or info.get("host") != socket.gethostname():
        return False
    try:
        pid = int(info["pid"])
        os.kill(pid, 0)
    except (KeyError, TypeError, ValueError):
        return False
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def lock_timing() -> tuple[float, float]:
    """(ttl, heartbeat) in seconds: a lock whose holder stopped refreshing it for ttl seconds is
    abandoned (``$CXR_EXPLORER_LOCK_STALE_S``, default 90, read when a lock is made)."""
    ttl = env_seconds(STALE_ENV, 90.0)
    return ttl, max(0.5, ttl / 6)


class HeartbeatLock:
    """What every lock here shares: once acquired, ``_refresh`` runs every ``heartbeat`` seconds
    in a daemon thread until ``release``, which then calls ``_drop``; ``held()`` releases."""

    heartbeat: float
    _thread: threading.Thread | None = None

    def _refresh(self) -> None:
        raise NotImplementedError

    def _drop(self) -> None:
        raise NotImplementedError

    def _start_heartbeat(self) -> None:
        self._stop = threading.Event()

        def beat() -> None:
            while not self._stop.wait(self.heartbeat):
                self._refresh()

        self._thread = threading.Thread(target=beat, name="lock-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
        self._drop()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        try:
            yield
        finally:
            self.release()


class FileLock(HeartbeatLock):
    """An inter-process, inter-node lock: a file created with O_EXCL and kept fresh by a
    heartbeat. A holder that dies stops refreshing the file; after ``ttl`` seconds another
    process may break the lock."""

    def __init__(self, path: str | Path, owner: str = "", ttl: float = 90.0,
                 heartbeat: float = 15.0):
        self.path = Path(path)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.ttl, self.heartbeat = ttl, heartbeat

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._break_if_stale():
                    return False
                continue
            with os.fdopen(fd, "w") as f:
                info = _this_holder(self.owner)
                json.dump({**info, "since": info["acquired"]}, f)
            self._start_heartbeat()
            return True
        return False

    def holder(self) -> dict | None:
        """{owner, host, pid, acquired, age}: who holds the lock and how many seconds ago it
        last showed it is alive; None if nobody does."""
        return self._holder(self.path)

    @staticmethod
    def _holder(path: Path) -> dict | None:
        try:
            age = time.time() - path.stat().st_mtime
            info = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # being written, or damaged: only its age is known
            info = {}
        info = info if isinstance(info, dict) else {}
        info.setdefault("acquired", info.get("since"))
        return {**info, "age": age}

    def _stale(self, path: Path) -> bool:
        info = self._holder(path)
        return info is None or info["age"] >= self.ttl or holder_gone(info)

    def _break_if_stale(self) -> bool:
        if not self._stale(self.path):
            return False
        # Two breakers may race; renaming to a unique name lets exactly one of them win.
        grave = self.path.with_name(f"{self.path.name}.stale.{os.getpid()}.{time.time_ns()}")
        try:
            os.replace(self.path, grave)
        except FileNotFoundError:
            return True
        if not self._stale(grave):
            # Another breaker won and a live holder's fresh lock was moved: put it back.
            with contextlib.suppress(FileExistsError):
                os.link(grave, self.path)
            grave.unlink(missing_ok=True)
            return False
        grave.unlink(missing_ok=True)
        return True

    def _refresh(self) -> None:
        with contextlib.suppress(OSError):  # a storage gone read-only: the search stops anyway
            os.utime(self.path)

    def _drop(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


class ObjectStore(Protocol):
    """What ``ObjectLock`` needs of a remote storage (``explorer.storage.remote.Remote``)."""

    def read_bytes(self, rel: str) -> bytes: ...
    def write_bytes(self, rel: str, data: bytes) -> None: ...
    def delete(self, rel: str) -> None: ...


class ObjectLock(HeartbeatLock):
    """``FileLock``'s interface on an object store, which has no exclusive create: a lock object
    names its owner and the time of its last heartbeat. To acquire, a caller that finds no
    fresh lock writes its own, waits ``settle`` seconds and reads it back: of callers racing
    within that window the last writer wins and the others see it. Callers further apart than
    the window are not in a race (the second finds a fresh lock). A holder that stops its
    heartbeat for ``ttl`` seconds (by its own clock; keep nodes' clocks in sync) loses the lock.
    What it guards (pre-training a shared encoder) is safe even if two callers ever both win:
    both upload the same content, and each object appears whole."""

    def __init__(self, remote: ObjectStore, rel: str, owner: str, ttl: float, heartbeat: float,
                 settle: float = 1.0):
        self.remote, self.rel, self.owner = remote, rel, owner
        self.ttl, self.heartbeat, self.settle = ttl, heartbeat, settle
        self._info = _this_holder(owner)

    def _raw(self) -> dict | None:
        try:
            d = json.loads(self.remote.read_bytes(self.rel))
            return d if isinstance(d, dict) and "owner" in d and "since" in d else None
        except (OSError, ValueError):
            return None

    def _read(self) -> tuple[str, float] | None:
        d = self._raw()
        try:
            return (str(d["owner"]), float(d["since"])) if d else None
        except (TypeError, ValueError):
            return None

    def holder(self) -> dict | None:
        """{owner, host, pid, acquired, age} as ``FileLock.holder``; ``since`` in a lock object
        is its last heartbeat."""
        d, held = self._raw(), self._read()
        if d is None or held is None:
            return None
        return {**d, "acquired": d.get("acquired", held[1]), "age": time.time() - held[1]}

    def _write(self) -> None:
        self.remote.write_bytes(self.rel, json.dumps({**self._info,
                                                      "since": time.time()}).encode())

    def _mine(self) -> bool:
        held = self._read()
        return held is not None and held[0] == self.owner

    def try_acquire(self) -> bool:
        held = self._read()
        if held is not None and held[0] != self.owner and time.time() - held[1] < self.ttl \
                and not holder_gone(self._raw()):
            return False
        self._info = _this_holder(self.owner)
        self._write()
        time.sleep(self.settle)
        if not self._mine():
            return False
        self._start_heartbeat()
        return True

    def _refresh(self) -> None:
        with contextlib.suppress(OSError):
            if self._mine():
                self._write()

    def _drop(self) -> None:
        with contextlib.suppress(OSError):
            if self._mine():
                self.remote.delete(self.rel)
