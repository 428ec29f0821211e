"""Storage faults a user can fix: a full disk, an exhausted quota, a file system gone read-only.

Any write can meet one of them, in the driver or inside a trial on another node; they arrive as
an ``OSError``, as an exception that wraps one (torch's zip writer raises a ``RuntimeError``
whose context is the ``OSError``), or as the text of a trial's error that Tune hands the
driver. ``storage_fault`` finds the ``OSError`` in an exception, ``fault_in_text`` in such a
text; ``StorageFault`` is the one line the search ends with (exit code 2): what happened,
where, and that ``--resume`` continues once it is fixed.
"""

from __future__ import annotations

import errno
import re

from explorer.errors import StorageError

#: errno -> what a person reads. EIO and friends are not here: they are hardware faults,
#: not something the user can fix by freeing space or remounting.
FAULTS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
}
_FIX = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space or raise the quota",
    errno.EROFS: "make it writable again",
}
# Python's "[Errno 28] No space left on device: '/x'" and pyarrow's "[errno 28] No space ...".
_ERRNO_TEXT = re.compile(r"\[errno (\d+)\]([^\n]*)", re.IGNORECASE)
_QUOTED_PATH = re.compile(r": '([^'\n]+)'")


def storage_fault(exc: BaseException | None) -> OSError | None:
    """The storage-fault ``OSError`` behind ``exc`` (itself, its cause or its context)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in FAULTS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def fault_in_text(text: str | None) -> tuple[int, str | None] | None:
    """(errno, path or None) of the first storage fault named in an error's text, the first
    that names a path if any does."""
    found = []
    for m in _ERRNO_TEXT.finditer(text or ""):
        code = int(m.group(1))
        if code in FAULTS:
            path = _QUOTED_PATH.search(m.group(2))
            found.append((code, path.group(1) if path else None))
    if found:
        return next((f for f in found if f[1]), found[0])
    for code, what in FAULTS.items():  # no errno number in the text, only its words
        if what in (text or "").lower():
            return code, None
    return None


class StorageFault(StorageError):
    """The search stopped on a storage fault; ``--resume`` continues once it is fixed."""

    def __init__(self, code: int, path: str | None, where: str, by: str = ""):
        self.errno, self.path = code, path
        at = f" writing {path}" if path else ""
        who = f" ({by})" if by else ""
        super().__init__(
            f"{where}: {FAULTS[code]}{at}{who}; the search stopped and finished trials are "
            f"kept: {_FIX[code]}, then run the same command with --resume")

    @classmethod
    def from_exception(cls, exc: BaseException, where: str, by: str = "") -> StorageFault | None:
        err = storage_fault(exc)
        if err is None:
            return None
        return cls(err.errno, err.filename, where, by)
