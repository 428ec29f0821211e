"""What a driver mends before it continues an experiment another driver left behind.

Run with the experiment's driver lock held (``writer.sole_writer``): no other driver, and so
no trial of this experiment, is writing in its folder.

- ``sweep_temporaries``: temporaries of atomic writes that a killed process never got to
  remove (on a full disk, one of them can be what keeps it full).
- ``repair_journal``: the Optuna journal is a log that Optuna appends to. A write cut off by
  a full disk or a kill leaves a last line without its end; Optuna skips it when reading and
  appends after it, which glues the next record to the torn one and makes the journal
  unreadable for good. The longest readable beginning is kept (a prefix of the log is always
  a state the study was in) and the rest is cut, said in one line. Optuna's own lock file
  left by a killed driver is removed (it would make the next append wait 30 s).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

#: Lock files Optuna's JournalFileBackend leaves when killed between acquire and release.
OPTUNA_LOCK = ".lock"


def _is_temporary(p: Path) -> bool:
    """Named by ``storage.atomic.atomic_path`` / ``storage.tunefs``: ``.<name>.<pid>.<tid>.tmp``;
    or a broken lock moved aside by ``storage.locks.FileLock``."""
    return (p.name.startswith(".") and p.name.endswith(".tmp")) or ".lock.stale." in p.name


def sweep_temporaries(exp_dir: Path) -> tuple[int, int]:
    """Remove leftover temporaries under ``exp_dir``; (files removed, bytes freed)."""
    n = size = 0
    for p in Path(exp_dir).rglob("*"):
        if _is_temporary(p) and p.is_file() and not p.is_symlink():
            try:
                st = p.stat()
                p.unlink()
            except OSError:
                continue
            n, size = n + 1, size + st.st_size
    return n, size


def _readable_prefix(data: bytes) -> tuple[int, int]:
    """(bytes, lines) of the longest beginning of ``data`` made of whole JSON lines."""
    end = lines = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            json.loads(line)
        except ValueError:
            break
        end, lines = end + len(line), lines + 1
    return end, lines


def repair_journal(path: Path, shown: str) -> str | None:
    """Cut a damaged end off the journal at ``path``; the note to print, or None if whole.
    ``shown``: how messages name the file."""
    path = Path(path)
    lock = Path(str(path) + OPTUNA_LOCK)
    if lock.is_symlink() or lock.is_file():
        lock.unlink(missing_ok=True)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    keep, lines = _readable_prefix(data)
    if keep == len(data):
        return None
    cut = data[keep:]
    whole = cut.count(b"\n")
    with open(path, "r+b") as f:
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    what = ("its last line was cut off by an interrupted write; removed it" if whole == 0 else
            f"its last {whole} line(s) are damaged (a write cut off, then appended to); "
            f"removed them")
    return f"note: {shown}: {what} ({len(cut)} bytes), the study keeps its first {lines} records"
