"""A saved baselines' run is restored only if it can train every baseline still to do."""

from __future__ import annotations

import json

from explorer.search.stages import BASELINE_RUNS, _restorable


def _saved_run(tmp_path, known):
    exp_dir = tmp_path / "baselines"
    exp_dir.mkdir()
    (exp_dir / "tuner.pkl").write_bytes(b"saved")  # what Tune's can_restore looks for
    if known is not None:
        (exp_dir / BASELINE_RUNS).write_text(json.dumps(known))
    return exp_dir


def test_a_run_that_knows_every_baseline_to_do_is_restored(tmp_path):
    exp_dir = _saved_run(tmp_path, ["densenet121_baseline-s0-ba16cf", "x-s1-aaaaaa"])
    assert _restorable(exp_dir, [{"run_id": "densenet121_baseline-s0-ba16cf"}], "runs/m")
    assert exp_dir.is_dir()


def test_a_run_saved_before_the_record_existed_is_restored_as_before(tmp_path):
    exp_dir = _saved_run(tmp_path, None)
    assert _restorable(exp_dir, [{"run_id": "densenet121_baseline-s0-ba16cf"}], "runs/m")


def test_nothing_saved_is_not_restorable(tmp_path):
    assert not _restorable(tmp_path / "baselines", [{"run_id": "a"}], "runs/m")


def test_a_recipe_changed_since_the_search_started_gets_a_new_run(tmp_path, capsys):
    """A new version's default changed DenseNet-121's recipe between a search and its resume:
    the baseline's key is new and the saved run would never train it (reported failed with no
    reason). The old run is moved aside, not deleted, and the note says why."""
    exp_dir = _saved_run(tmp_path, ["densenet121_baseline-s0-40719b"])
    assert not _restorable(exp_dir, [{"run_id": "densenet121_baseline-s0-ba16cf"}], "runs/m")
    assert not exp_dir.exists()
    aside = list(tmp_path.glob("baselines-replaced-*"))
    assert len(aside) == 1 and (aside[0] / "tuner.pkl").read_bytes() == b"saved"
    out = capsys.readouterr().out
    assert out.startswith("note: runs/m: 1 baseline(s) have recipes that changed since the "
                          "search started") and aside[0].name in out
