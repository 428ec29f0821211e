"""Experiment storage in an object store: ``--storage s3://bucket/prefix``.

The code that trains and reports works on files. With a remote storage each process works in
a local *mirror* of it (``$CXR_EXPLORER_MIRROR``, default ``~/.cache/cxr-explorer/mirror``) and
moves files at fixed points, each owned by exactly one writer:

- a trial's worker pulls its record (``<name>/trials/<id>``) when it starts, pushes it after
  every saved epoch and when it finishes; other ranks fetch only what they read;
- a pre-training pushes its encoder folder when done and ``partial.pt`` after each epoch;
- the driver pulls the experiment when it starts and the records when a stage needs them, and
  a background thread pushes the driver's own files (Tune's state, ``optuna.journal`` last, so
  the journal is never older than the Tune state beside it) every few seconds and at exit.

An object store has no atomic rename and no exclusive create, so: a single upload is the
unit of atomicity (an object appears whole when its upload completes, or not at all), and the
cross-node locks that keep two trials from pre-training one encoder are lock objects with a
heartbeat, written then read back (``locks.ObjectLock``). Files are read by pyarrow's file
systems; the URI takes pyarrow's options, e.g. ``s3://b/p?endpoint_override=host:9000&scheme=http``.
Credentials come from each node's environment or instance role, never from the URI.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from explorer.errors import StorageError, error_line
from explorer.settings import env_seconds
from explorer.storage.atomic import atomic_path

MIRROR_ENV = "CXR_EXPLORER_MIRROR"
SYNC_ENV = "CXR_EXPLORER_SYNC_S"
_COPY_CHUNK = 8 << 20


def sync_period() -> float:
    """Seconds between the driver's background pushes (``$CXR_EXPLORER_SYNC_S``, default 5)."""
    return env_seconds(SYNC_ENV, 5.0)


def shown(uri: str) -> str:
    """The URI as messages show it: without pyarrow's ``?options`` (endpoints, keys...)."""
    return uri.split("?", 1)[0]


def _is_scratch(name: str) -> bool:
    """Files that never travel: temporaries of atomic writes, lock files, broken locks."""
    return name.endswith((".tmp", ".lock")) or name == "lock" or ".stale." in name


@lru_cache(maxsize=8)
def open_fs(uri: str):
    """(pyarrow file system, base path) for a storage URI; a bad URI is a StorageError."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        fs, base = pafs.FileSystem.from_uri(uri)
    except (ValueError, pa.ArrowException, OSError) as exc:
        raise StorageError(f"--storage {shown(uri)}: {error_line(exc)}") from None
    return fs, base.rstrip("/")


def mirror_root(uri: str) -> Path:
    base = Path(os.environ.get(MIRROR_ENV) or Path.home() / ".cache" / "cxr-explorer" / "mirror")
    parts = urlsplit(uri)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{parts.scheme}-{parts.netloc}{parts.path}")
    digest = hashlib.sha1(uri.encode()).hexdigest()[:8]
    return base.expanduser() / f"{readable.strip('-')[:80]}-{digest}"


class Remote:
    """Moves files between a storage URI and this process' mirror of it (see module doc).

    It owns the push record: (size, mtime) of each file as last uploaded or downloaded by this
    object, so a push uploads only what changed here since. One ``Store`` holds one ``Remote``,
    and a process uses one ``Store`` per storage (the driver's threads share it).
    """

    def __init__(self, uri: str):
        self.uri = uri
        self.fs, self.base = open_fs(uri)
        self.local = mirror_root(uri)
        self._pushed: dict[str, tuple[int, int]] = {}  # rel -> (size, mtime_ns) stored
        self._push_lock = threading.Lock()  # the background sync and the stages push in turn

    def _key(self, rel: str) -> str:
        return f"{self.base}/{rel}".rstrip("/") if rel else self.base

    def check_writable(self) -> None:
        probe = self._key(f".cxr-write-test-{os.getpid()}-{time.time_ns()}")
        try:
            with self.fs.open_output_stream(probe) as f:
                f.write(b"ok")
            self.fs.delete_file(probe)
        except OSError as exc:
            raise StorageError(f"--storage {shown(self.uri)}: not writable "
                               f"({error_line(exc)})") from None

    # -- listing --------------------------------------------------------------------------
    def _remote_files(self, rel: str) -> dict[str, int]:
        """{path relative to the storage root: size} of the file ``rel`` or the files under it."""
        import pyarrow.fs as pafs

        key = self._key(rel)
        info = self.fs.get_file_info(key)
        if info.type == pafs.FileType.File:
            return {rel: info.size}
        sel = pafs.FileSelector(key, recursive=True, allow_not_found=True)
        cut = len(self.base) + 1
        return {i.path[cut:]: i.size for i in self.fs.get_file_info(sel)
                if i.type == pafs.FileType.File and not _is_scratch(i.base_name)}

    def _local_files(self, rel: str, skip_dirs: tuple[str, ...] = ()) -> list[str]:
        root = self.local / rel
        if root.is_file():
            return [rel]
        out = []
        for p in root.rglob("*") if root.is_dir() else []:
            r = p.relative_to(self.local).as_posix()
            if p.is_file() and not _is_scratch(p.name) and not _under(r, rel, skip_dirs):
                out.append(r)
        return out

    def exists(self, rel: str) -> bool:
        import pyarrow.fs as pafs

        return self.fs.get_file_info(self._key(rel)).type != pafs.FileType.NotFound

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self._key(rel)) as f:
            return f.read()

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Store ``data`` at ``rel`` directly (one upload: it appears whole or not at all)."""
        with self.fs.open_output_stream(self._key(rel)) as f:
            f.write(data)

    # -- moving ---------------------------------------------------------------------------
    def _download(self, rel: str) -> None:
        dest = self.local / rel
        with atomic_path(dest) as tmp, self.fs.open_input_stream(self._key(rel)) as src, \
                open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, _COPY_CHUNK)
        st = dest.stat()  # the stored copy: not uploaded again unless it changes here
        self._pushed[rel] = (st.st_size, st.st_mtime_ns)

    def _upload(self, rel: str) -> None:
        src = self.local / rel
        st = src.stat()
        with open(src, "rb") as f, self.fs.open_output_stream(self._key(rel)) as out:
            shutil.copyfileobj(f, out, _COPY_CHUNK)
        self._pushed[rel] = (st.st_size, st.st_mtime_ns)

    def pull(self, rel: str, skip: tuple[str, ...] = (), exact: bool = True) -> None:
        """Make the mirror of ``rel`` equal to the storage. Files ending in ``skip`` (weights)
        are fetched on demand only; with ``exact``, local files the storage lacks are removed."""
        remote = self._remote_files(rel)
        for r, size in remote.items():
            local = self.local / r
            if r.endswith(skip) and local.is_file() and local.stat().st_size == size:
                continue
            if not r.endswith(skip) or local.is_file():
                self._download(r)
        if exact:
            for r in self._local_files(rel):
                if r not in remote:
                    (self.local / r).unlink(missing_ok=True)

    def fetch(self, rel: str, refresh: bool = False) -> bool:
        """The file ``rel`` in the mirror, downloaded if missing (or always, with ``refresh``);
        whether it is there. With ``refresh``, whether it is stored: a local copy the storage
        lacks is left alone (another process on this machine may be about to push it)."""
        local = self.local / rel
        if refresh or not local.is_file():
            if not self.exists(rel):
                return False
            self._download(rel)
        return True

    def push(self, rel: str, exact: bool = True, skip_dirs: tuple[str, ...] = (),
             last: tuple[str, ...] = ()) -> None:
        """Upload what changed in the mirror of ``rel`` since this process last pushed it (files
        named in ``last`` after the rest); with ``exact``, delete stored files the mirror lacks
        (never under ``skip_dirs``, which other processes own)."""
        with self._push_lock:
            files = self._local_files(rel, skip_dirs)
            files.sort(key=lambda r: r.rsplit("/", 1)[-1] in last)
            for r in files:
                with contextlib.suppress(FileNotFoundError):  # replaced or removed meanwhile
                    st = (self.local / r).stat()
                    if self._pushed.get(r) != (st.st_size, st.st_mtime_ns):
                        self._upload(r)
            if exact:
                keep = set(files)
                for r in self._remote_files(rel):
                    if r not in keep and not _under(r, rel, skip_dirs) \
                            and not (self.local / r).is_file():
                        self.delete(r)

    def delete(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self._key(rel))
        self._pushed.pop(rel, None)

    @contextlib.contextmanager
    def syncing(self, rel: str, skip_dirs: tuple[str, ...], last: tuple[str, ...]
                ) -> Iterator[None]:
        """Push ``rel`` every ``sync_period()`` seconds in the background, and once more at the
        end."""
        stop = threading.Event()
        every = sync_period()

        def loop() -> None:
            while not stop.wait(every):
                with contextlib.suppress(OSError):  # a blip: the next round retries
                    self.push(rel, skip_dirs=skip_dirs, last=last)

        self.push(rel, skip_dirs=skip_dirs, last=last)  # what exists already, e.g. the record
        thread = threading.Thread(target=loop, name="storage-sync", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.push(rel, skip_dirs=skip_dirs, last=last)


def _under(r: str, rel: str, dirs: tuple[str, ...]) -> bool:
    prefix = f"{rel}/" if rel else ""
    return any(r.startswith(f"{prefix}{d}/") for d in dirs)
