"""Files written atomically: a reader on any node sees nothing or a whole file, never a part.

Every writer here goes through ``atomic_path``: the content goes to a temporary name beside the
target (same folder, so the same file system), then ``os.replace`` puts it in place in one
step, on local disks and on NFS alike. The temporary names end in ``.tmp`` and start with a dot,
so a remote storage's mirror never uploads one (``explorer.storage.remote``).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; moved onto ``path`` when the block
    ends without an error, removed when it raises. The folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # pid and thread: two writers of one file (two processes, or a thread each) never share it
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None:  # a write to an open file names none: name the target
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    finally:
        # A full or read-only disk may refuse even this; the error that matters is the one
        # the write raised, and a driver that resumes removes what is left (search/repair.py).
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())  # the rename must not reach the disk before the content


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


class _WriteFault:
    """A binary file that remembers the first ``OSError`` a write raised."""

    def __init__(self, f):
        self._f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self._f.flush()


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through a Python file: on a full disk torch's zip writer raises a
    ``RuntimeError`` that names no cause, so the ``OSError`` the write met is raised instead
    (``explorer.storage.faults`` recognises it)."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        out = _WriteFault(f)
        try:
            torch.save(obj, out)
            f.flush()
        except RuntimeError:
            if out.error is not None:
                raise out.error from None
            raise
        os.fsync(f.fileno())


def read_json(path: str | Path, default: Any = None) -> Any:
    """The file's JSON, or ``default`` when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return default
