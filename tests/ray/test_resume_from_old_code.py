"""An experiment written by the code before the run modules moved into packages resumes with
the code of today.

Tune pickles objects by module path (``tuner.pkl``, the searcher's state, the experiment
state): ``explorer.tuning.ResumableOptunaSearch``, ``suggest_space``, ``trial_dirname`` and
``explorer.progress.Progress`` (found by unpickling every file of such an experiment). The
modules at those old paths are kept as small re-exports; this test is what proves they are
enough. The old code comes from git history (``PINNED``, the last commit before the move).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_resume import check_complete, done_files, kill9, start, wait_for

REPO = Path(__file__).resolve().parents[2]
PINNED = "6670c0d7a33873396480ea731f3c1ba76a566531"  # main before issue 13's moves
pytestmark = [pytest.mark.ray, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def old_code(tmp_path_factory) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the old code comes from git history")
    known = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{PINNED}^{{commit}}"],
                           capture_output=True, check=False)
    if known.returncode != 0:
        pytest.skip(f"commit {PINNED[:10]} is not in this clone's history (a shallow clone?): "
                    "fetch the full history to run this test")
    root = tmp_path_factory.mktemp("old-code")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", PINNED, "explorer", "recipes",
                              "search_spaces"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


def test_an_experiment_started_before_the_move_resumes_with_nothing_lost(old_code, tmp_path):
    run = tmp_path / "mask_ratio"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(old_code), *filter(None, [os.environ.get("PYTHONPATH")])])}
    old = start(tmp_path, "--set", "search.num_samples=3", "--set", "finetune.epochs=8",
                env=env)
    wait_for("one trial finished by the old code", lambda: len(done_files(run)) >= 1, old)
    time.sleep(1)
    kill9(old)
    assert (run / "tuner.pkl").is_file()
    finished = {p: p.stat().st_mtime_ns for p in done_files(run)}
    assert len(finished) < 3, "the old code finished everything: nothing left to resume"
    pickled = (run / "tuner.pkl").read_bytes()  # the old code names the old module paths
    assert b"explorer.tuning" in pickled and b"explorer.search" not in pickled

    new = start(tmp_path, "--resume", "--set", "search.num_samples=3", "--set",
                "finetune.epochs=8")
    assert new.wait(timeout=240) == 0, max(tmp_path.glob("driver-*.log")).read_text()[-3000:]
    check_complete(run, 3)
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items()), "a finished trial re-ran"
