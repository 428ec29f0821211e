"""Shared test set-up: a private data cache per test session, nothing written to $HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO.parent / "shared").resolve()
NIH_MINI = SHARED / "data" / "chestxray14-mini"


def _session_folder(tmp_path_factory, variable: str, name: str):
    """Point ``variable`` at a new folder for the test session, and restore it afterwards."""
    folder = tmp_path_factory.mktemp(name)
    old = os.environ.get(variable)
    os.environ[variable] = str(folder)
    yield folder
    if old is None:
        os.environ.pop(variable, None)
    else:
        os.environ[variable] = old


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Each test session builds its own data cache, so tests never depend on a warm $HOME."""
    yield from _session_folder(tmp_path_factory, "CXR_EXPLORER_CACHE", "cxr-cache")


@pytest.fixture
def nih_mini() -> Path:
    if not NIH_MINI.is_dir():
        pytest.skip(f"shared NIH mini data not found at {NIH_MINI}")
    return NIH_MINI


@pytest.fixture(scope="session", autouse=True)
def _private_mirror(tmp_path_factory):
    """Mirrors of remote storages go to the test session's folder, not ~/.cache."""
    yield from _session_folder(tmp_path_factory, "CXR_EXPLORER_MIRROR", "cxr-mirror")


@pytest.fixture(scope="session")
def s3():
    """A real S3 API on 127.0.0.1 (moto's server, in a thread of the test process) with one
    bucket; see tests/local_s3.py."""
    from local_s3 import LocalS3

    with LocalS3() as server:
        yield server


#: Where the tests that start Ray live (marked ``ray``), with after_search's shared search.
SERIAL = ("tests/ray/", "tests/faults/", "tests/after_search/")


def pytest_itemcollected(item):
    """A test that starts Ray must live in one of the ``SERIAL`` folders (see below)."""
    if item.get_closest_marker("ray") and not item.nodeid.startswith(SERIAL):
        raise pytest.UsageError(f"{item.nodeid}: a test marked ray must live in one of "
                                f"{', '.join(SERIAL)} (tests/conftest.py)")


def pytest_xdist_make_scheduler(config, log):
    """``pytest`` runs in two worker processes (pytest-xdist, ``-n 2`` in pyproject.toml). The
    tests in the ``SERIAL`` folders run in one worker, one at a time, as they would alone: two
    real searches side by side on 2 cores would share the machine that their kill and stop
    windows are timed on. The other tests spread over both workers beside them. (xdist's own
    ``--dist loadgroup`` cannot do this with pytest 9: it renames test ids through an attribute
    pytest 9 no longer reads.) ``pytest -n 0`` runs everything in one process."""
    from xdist.scheduler import LoadScopeScheduling

    class OneSerialGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "serial" if nodeid.startswith(SERIAL) else nodeid

    return OneSerialGroup(config, log)
