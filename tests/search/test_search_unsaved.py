"""A trial that finished after Tune last saved its state (a search stopped by a fault or a
kill before the next save): the journal counts it, so a restored run does not run one trial
too many, and it is kept from the journal and its record. Real Optuna, real Ray searcher
state files; no Ray processes."""

from __future__ import annotations

import functools
import json

from ray.tune.search import Searcher

from explorer.names import METRIC, MODE
from explorer.search.rebuild import unsaved_trials
from explorer.search.study import load_study
from explorer.search.tuning import (
    DUPLICATE_ATTR,
    TUNE_ATTR,
    ResumableOptunaSearch,
    optuna_storage,
    suggest_space,
)

PARAMS = {"pretrain.mask_ratio": {"type": "float", "low": 0.5, "high": 0.95}}


def _searcher(exp, n: int | None = 3) -> ResumableOptunaSearch:
    import optuna

    return ResumableOptunaSearch(
        space=functools.partial(suggest_space, params=PARAMS), params=PARAMS, metric=METRIC,
        mode=MODE, sampler=optuna.samplers.RandomSampler(seed=0), storage=optuna_storage(exp),
        study_name="x", num_samples=n)


def _finish(searcher, exp, trial_id: str, value: float) -> None:
    searcher.on_trial_complete(trial_id, {METRIC: value})
    (exp / "trials" / trial_id).mkdir(parents=True)
    (exp / "trials" / trial_id / "done.json").write_text(json.dumps({"val_mean_auc": value}))


def test_a_trial_finished_after_tunes_last_save_is_counted_and_kept(tmp_path, capsys):
    exp = tmp_path / "x"
    exp.mkdir()
    first = _searcher(exp)
    assert first.suggest("a") is not None
    (tmp_path / "saved").mkdir()
    first.save_to_dir(str(tmp_path / "saved"), "s")  # Tune's last save: it knows trial a
    assert first.suggest("b") is not None
    _finish(first, exp, "b", 0.7)  # b finished; the search stopped before Tune saved again
    first.suggest("lost")  # started, unknown to Tune, never finished: not counted

    resumed = _searcher(exp)
    resumed.restore_from_dir(str(tmp_path / "saved"))
    assert resumed.suggest("a") is not None  # Tune's restored trial keeps its config
    _finish(resumed, exp, "a", 0.6)
    assert resumed.suggest("c") is not None  # a, b, c: the run's 3 trials
    _finish(resumed, exp, "c", 0.8)
    assert resumed.suggest("d") == Searcher.FINISHED, "a trial too many"

    kept = unsaved_trials(exp, exp, "x", {"a", "c"}, "runs/x")
    assert kept == [["b", {"status": "TERMINATED", "error": None}]]
    out = capsys.readouterr().out
    assert out.startswith("note: runs/x: 1 trial(s) finished after Tune last saved its state")
    assert "b" in out and "kept from the Optuna journal" in out
    assert unsaved_trials(exp, exp, "x", {"a", "b", "c"}, "runs/x") == []
    tags = [t.user_attrs[TUNE_ATTR]["trial_id"] for t in load_study(exp, "x").trials
            if DUPLICATE_ATTR not in t.user_attrs]  # the restored sampler may redraw a's value
    assert tags == ["a", "b", "lost", "c"], tags


def test_without_a_count_the_searcher_leaves_the_count_to_tune(tmp_path):
    """A searcher pickled before it counted (num_samples None) never says FINISHED itself."""
    exp = tmp_path / "x"
    exp.mkdir()
    searcher = _searcher(exp, n=None)
    for i in range(4):
        assert searcher.suggest(f"t{i}") is not None
        _finish(searcher, exp, f"t{i}", 0.5 + i / 10)


def test_a_searcher_pickled_before_it_counted_gets_this_process_count_on_restore(tmp_path):
    exp = tmp_path / "x"
    exp.mkdir()
    old = _searcher(exp, n=None)
    assert old.suggest("a") is not None
    (tmp_path / "saved").mkdir()
    old.save_to_dir(str(tmp_path / "saved"), "s")
    _finish(old, exp, "a", 0.6)
    assert old.suggest("b") is not None  # finished after the save
    _finish(old, exp, "b", 0.7)

    resumed = _searcher(exp, n=2)  # restore_tuner sets this process' count
    resumed.restore_from_dir(str(tmp_path / "saved"))
    assert resumed.num_samples == 2
    assert resumed.suggest("c") == Searcher.FINISHED
