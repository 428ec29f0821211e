"""The environment variables explorer reads, each parsed and checked in one place.

=========================== ======================================================
``CXR_EXPLORER_STORAGE``    default ``--storage`` (a folder or ``s3://...``)
``CXR_EXPLORER_CACHE``      the decoded-image cache (default ``~/.cache/cxr-explorer``)
``CXR_EXPLORER_MIRROR``     this machine's mirror of a remote storage
``CXR_EXPLORER_LOCK_STALE_S`` seconds after which a silent lock holder is presumed dead
``CXR_EXPLORER_SYNC_S``     seconds between pushes to a remote storage
=========================== ======================================================

An empty variable counts as unset. ``check_environment`` runs first in each command, so a bad
value is one line before anything else happens; the module constants that read the numbers
at import time (``storage.LOCK_STALE_S``, ``remote.SYNC_S``) use the same parser.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from explorer.errors import UserError

STORAGE = "CXR_EXPLORER_STORAGE"
CACHE = "CXR_EXPLORER_CACHE"
MIRROR = "CXR_EXPLORER_MIRROR"
LOCK_STALE = "CXR_EXPLORER_LOCK_STALE_S"
SYNC = "CXR_EXPLORER_SYNC_S"
#: The longest path we accept in a setting (Linux: PATH_MAX is 4096).
MAX_PATH = 4096


def env(name: str) -> str | None:
    """The variable's value, None when unset or empty."""
    return os.environ.get(name) or None


def env_seconds(name: str, default: float, low: float = 0.1, high: float = 86_400.0) -> float:
    """A duration in seconds from ``name``, ``default`` when unset."""
    text = env(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:   # NaN fails too
        raise UserError(f"environment variable {name}={text!r}: expected a number of seconds "
                        f"from {low:g} to {high:g} (default {default:g}); fix or unset it")
    return value


def check_folder(path: str | Path, what: str) -> Path:
    """``path`` is a folder we may write, or one we may create: nothing is created here (a
    probe file goes into the nearest existing folder and is removed)."""
    text = str(path)
    if "\0" in text:
        raise UserError(f"{what}: the path contains a NUL character")
    if len(text) > MAX_PATH:
        raise UserError(f"{what}: a path of {len(text)} characters is longer than the "
                        f"{MAX_PATH} a file system accepts")
    folder = Path(text).expanduser()
    try:
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{what} {folder}: exists and is not a folder")
        probe_dir = folder
        while not probe_dir.exists():
            probe_dir = probe_dir.parent
        if not probe_dir.is_dir():
            raise UserError(f"{what} {folder}: cannot be created under {probe_dir}, which is "
                            f"a file")
        probe = probe_dir / f".cxr-write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"{what} {folder}: not usable ({exc.strerror or exc})") from None
    return folder


def cache_dir() -> Path:
    """Where decoded images are cached."""
    value = env(CACHE)
    if value is not None:
        return Path(value).expanduser()
    try:
        return Path.home() / ".cache" / "cxr-explorer"
    except RuntimeError:   # no HOME and no passwd entry (some containers)
        raise UserError(f"no home folder to keep the image cache in: set {CACHE}") from None


def check_environment() -> None:
    """Every setting, checked before a command does anything."""
    env_seconds(LOCK_STALE, 90.0)
    env_seconds(SYNC, 5.0)
    check_folder(cache_dir(), f"the image cache ({CACHE})" if env(CACHE) else "the image cache")
    if env(MIRROR) is not None:
        check_folder(env(MIRROR), f"the remote-storage mirror ({MIRROR})")


def storage_setting(given: str | None) -> str:
    """The storage root: ``--storage``, else ``CXR_EXPLORER_STORAGE``, else ``runs``. A value
    from the environment is checked here, so a bad one is named as the variable."""
    if given is not None:
        return given
    value = env(STORAGE)
    if value is None:
        return "runs"
    if "://" not in value:
        check_folder(value, f"the storage ({STORAGE})")
    return value
