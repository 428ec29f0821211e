"""``Store``: the storage root (a folder, a shared mount, or an object store through a mirror).

The storage root (``--storage``, default ``runs/``) holds one folder per experiment plus caches
shared by every experiment in it::

    <storage>/<name>/                 Tune's experiment folder, our trial artifacts, results/
    <storage>/_encoders/<key>/        pre-trained encoders, keyed by a hash of what made them
    <storage>/_baselines/<key>/       baseline runs, keyed by (recipe, data, scale, seed)

Files are written atomically (temporary name, then rename), so a reader on any node sees
either nothing or a whole file. On a cluster the root must be a shared file system mounted at
the same path on every node, or an object store (``s3://...``) that every process reaches
through a local mirror (``explorer.storage.remote``); ``Store`` hides which.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

from explorer.errors import StorageError
from explorer.storage.locks import FileLock, ObjectLock, lock_timing
from explorer.storage.remote import Remote, shown

ENCODERS = "_encoders"
BASELINES = "_baselines"


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
        return f"Store({self.shown!r})"

    @property
    def shown(self) -> str:
        """The root as messages show it (a URI without its ``?options``)."""
        return shown(self.root)

    def __getstate__(self) -> dict:
        return {"root": self.root, "is_remote": self.is_remote}

    @functools.cached_property
    def remote(self) -> Remote:  # not pickled (``__getstate__``): each process opens its own
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

    def lock(self, rel: str, owner: str) -> FileLock | ObjectLock:
        """An inter-node lock at ``rel``: a ``FileLock`` on a file system, an ``ObjectLock``
        (a lock object with a heartbeat) on a remote storage."""
        ttl, heartbeat = lock_timing()
        if self.is_remote:
            return ObjectLock(self.remote, rel, owner, ttl, heartbeat)
        return FileLock(self.path(rel), owner, ttl, heartbeat)


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
