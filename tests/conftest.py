"""Shared test set-up: a private data cache per test session, nothing written to $HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO.parent / "shared").resolve()
NIH_MINI = SHARED / "data" / "chestxray14-mini"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Each test session builds its own data cache, so tests never depend on a warm $HOME."""
    cache = tmp_path_factory.mktemp("cxr-cache")
    old = os.environ.get("CXR_EXPLORER_CACHE")
    os.environ["CXR_EXPLORER_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("CXR_EXPLORER_CACHE", None)
    else:
        os.environ["CXR_EXPLORER_CACHE"] = old


@pytest.fixture
def nih_mini() -> Path:
    if not NIH_MINI.is_dir():
        pytest.skip(f"shared NIH mini data not found at {NIH_MINI}")
    return NIH_MINI


@pytest.fixture(scope="session", autouse=True)
def _private_mirror(tmp_path_factory):
    """Mirrors of remote storages go to the test session's folder, not ~/.cache."""
    mirror = tmp_path_factory.mktemp("cxr-mirror")
    old = os.environ.get("CXR_EXPLORER_MIRROR")
    os.environ["CXR_EXPLORER_MIRROR"] = str(mirror)
    yield mirror
    if old is None:
        os.environ.pop("CXR_EXPLORER_MIRROR", None)
    else:
        os.environ["CXR_EXPLORER_MIRROR"] = old


@pytest.fixture(scope="session")
def s3():
    """A real S3 API on 127.0.0.1 (moto's server, in a thread of the test process) with one
    bucket; see tests/local_s3.py."""
    from local_s3 import LocalS3

    with LocalS3() as server:
        yield server
