"""Experiment storage: where runs, shared encoders and cached baselines live.

The storage root (``--storage``, default ``runs/``) holds one folder per experiment plus caches
shared by every experiment in it::

    <storage>/<name>/                 Tune's experiment folder, our trial artifacts, results/
    <storage>/_encoders/<key>/        pre-trained encoders, keyed by a hash of what made them
    <storage>/_baselines/<key>/       baseline runs, keyed by (recipe, data, scale, seed)

Files are written atomically (temporary name, then rename), so a reader on any node sees
either nothing or a whole file. On a cluster the root must be a shared file system mounted at
the same path on every node, or an object store (``s3://...``) that every process reaches
through a local mirror (``explorer.remote``); ``Store`` hides which.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from explorer.errors import StorageError
from explorer.settings import LOCK_STALE, env_seconds

ENCODERS = "_encoders"
BASELINES = "_baselines"
#: A lock whose holder stopped refreshing it for this long is considered abandoned.
LOCK_STALE_S = env_seconds(LOCK_STALE, 90.0)
LOCK_HEARTBEAT_S = max(0.5, LOCK_STALE_S / 6)


class Store:
    """The storage root as this process sees it: ``path(rel)`` is where to read and write.

    A file-system root is used in place and every transfer method is a no-op. A remote root
    (``s3://...``) is used through this process' mirror: ``pull``/``push`` move a file or
    folder (relative to the root), ``fetch`` gets one file on demand. Picklable: it travels to
    trials, which open their own connection.
    """

    def __init__(self, root: str | Path):
        self.root = str(root)
        self.is_remote = "://" in self.root

    def __repr__(self) -> str:
        return f"Store({self.root.split('?', 1)[0]!r})"

    def __getstate__(self) -> dict:
        return {"root": self.root, "is_remote": self.is_remote}

    @functools.cached_property
    def remote(self):  # not pickled (``__getstate__``): each process opens its own
        from explorer.remote import Remote

        return Remote(self.root)

    @property
    def local_root(self) -> Path:
        return self.remote.local if self.is_remote else Path(self.root)

    def path(self, rel: str = "") -> Path:
        return self.local_root / rel if rel else self.local_root

    def pull(self, rel: str, skip: tuple[str, ...] = (".pt",), exact: bool = True) -> None:
        if self.is_remote:
            self.remote.pull(rel, skip=skip, exact=exact)

    def push(self, rel: str, exact: bool = True, last: tuple[str, ...] = ()) -> None:
        if self.is_remote:
            self.remote.push(rel, exact=exact, last=last)

    def fetch(self, rel: str, refresh: bool = False) -> bool:
        if self.is_remote:
            return self.remote.fetch(rel, refresh=refresh)
        return self.path(rel).is_file()

    def match_stored(self, rel: str) -> None:
        """Make this process' copy of the file ``rel`` the stored one, or none if none is stored
        (for ranks that must all start from the same state; a no-op on a file system)."""
        if self.is_remote and not self.remote.fetch(rel, refresh=True):
            self.path(rel).unlink(missing_ok=True)

    def read_bytes(self, rel: str) -> bytes:
        """The stored file itself (on a remote storage: read there, the mirror untouched)."""
        return self.remote.read_bytes(rel) if self.is_remote else self.path(rel).read_bytes()

    def delete(self, rel: str) -> None:
        self.path(rel).unlink(missing_ok=True)
        if self.is_remote:
            self.remote.delete(rel)

    def syncing(self, rel: str, skip_dirs: tuple[str, ...], last: tuple[str, ...]):
        """Keep this process' files under ``rel`` pushed while the block runs (remote only)."""
        if not self.is_remote:
            return contextlib.nullcontext()
        return self.remote.syncing(rel, skip_dirs, last)

    def lock(self, rel: str, owner: str):
        """An inter-node lock at ``rel``: a ``FileLock`` on a file system, an ``ObjectLock``
        (a lock object with a heartbeat) on a remote storage."""
        if self.is_remote:
            from explorer.remote import ObjectLock

            return ObjectLock(self.remote, rel, owner, LOCK_STALE_S, LOCK_HEARTBEAT_S)
        return FileLock(self.path(rel), owner=owner)


def as_store(storage: Store | str | Path) -> Store:
    return storage if isinstance(storage, Store) else Store(storage)


def open_store(root: str | Path) -> Store:
    """The ``--storage`` value as a Store, proven writable (one clear error if not)."""
    if "://" in str(root):
        store = Store(str(root))
        store.remote.check_writable()
        return store
    return Store(check_writable(root))


def check_writable(root: str | Path) -> Path:
    """Prove the storage root can be written (one clear error if not), creating nothing: the
    probe goes into the root if it exists, else into the nearest existing parent."""
    root = Path(root).expanduser()
    try:   # exists() raises for a name too long for the file system
        if root.exists() and not root.is_dir():
            raise StorageError(f"--storage {root}: exists and is not a folder")
        probe_dir = root
        while not probe_dir.exists():
            probe_dir = probe_dir.parent
        probe = probe_dir / f".cxr-write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise StorageError(f"--storage {root}: not writable ({exc.strerror or exc})") from None
    return root.resolve()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_json(path: str | Path, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default


class HeartbeatLock:
    """What every lock here shares: once acquired, ``_refresh`` runs every ``heartbeat`` seconds
    in a daemon thread until ``release``, which then calls ``_drop``; ``held()`` releases."""

    heartbeat = LOCK_HEARTBEAT_S

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
        if getattr(self, "_thread", None) is not None:
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
    """An inter-process, inter-node lock: a file created with O_EXCL and kept fresh by a heartbeat.

    Works on local disks and on NFS (O_EXCL is atomic there since NFSv3). A holder that dies
    stops refreshing the file; after ``LOCK_STALE_S`` another process may break the lock.
    """

    def __init__(self, path: str | Path, owner: str = ""):
        self.path = Path(path)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"

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
                json.dump({"owner": self.owner, "since": time.time()}, f)
            self._start_heartbeat()
            return True
        return False

    def _break_if_stale(self) -> bool:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        if age < LOCK_STALE_S:
            return False
        # Two breakers may race; renaming to a unique name lets exactly one of them win.
        grave = self.path.with_name(f"{self.path.name}.stale.{os.getpid()}.{time.time_ns()}")
        try:
            os.replace(self.path, grave)
        except FileNotFoundError:
            return True
        if time.time() - grave.stat().st_mtime < LOCK_STALE_S:
            # Another breaker won and a live holder's fresh lock was moved: put it back.
            with contextlib.suppress(FileExistsError):
                os.link(grave, self.path)
            grave.unlink(missing_ok=True)
            return False
        grave.unlink(missing_ok=True)
        return True

    def _refresh(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path)

    def _drop(self) -> None:
        self.path.unlink(missing_ok=True)
