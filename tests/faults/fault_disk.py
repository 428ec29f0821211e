"""A small disk the fault tests can fill and make read-only: a tmpfs mounted for the test.

Mounting needs root, or ``sudo`` without a password (CI runners have it); elsewhere the
tests that need it are skipped and say why. A real file system is used rather than faults
injected into Python's writes because the writes that matter are not all Python's: torch's
zip writer, pyarrow's copies of Tune's state and Optuna's journal appends each meet the full
disk in their own way, and the kernel's ENOSPC and EROFS reach every one of them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest


def _mount_cmd() -> list[str] | None:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"],
                                               capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


class SmallDisk:
    """A tmpfs of ``size`` at ``path``: ``fill()`` leaves no free byte, ``free()`` undoes it,
    ``read_only()`` / ``writable()`` remount it."""

    def __init__(self, path: Path, size: str = "96m"):
        self.path, self.size = path, size
        self._sudo = _mount_cmd()
        if self._sudo is None:
            pytest.skip("mounting a tmpfs needs root or passwordless sudo")
        path.mkdir(parents=True, exist_ok=True)
        self._run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(path))
        self.ballast = path / "ballast"

    def _run(self, *cmd: str) -> None:
        res = subprocess.run([*self._sudo, *cmd], capture_output=True, text=True)
        if res.returncode:
            pytest.skip(f"{' '.join(cmd)} failed here: {res.stderr.strip()}")

    def fill(self) -> None:
        with open(self.ballast, "ab") as f:
            chunk = b"\0" * (1 << 20)
            try:
                while True:
                    f.write(chunk)
                    f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        with contextlib.suppress(OSError), open(self.ballast, "ab") as f:  # the last blocks
            while True:
                f.write(b"\0" * 4096)
                f.flush()

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def read_only(self) -> None:
        self._run("mount", "-o", "remount,ro", str(self.path))

    def writable(self) -> None:
        self._run("mount", "-o", "remount,rw", str(self.path))

    def unmount(self) -> None:
        subprocess.run([*self._sudo, "umount", "-l", str(self.path)], capture_output=True)
