"""The Optuna searcher and ASHA as ``explorer.search.tuning`` builds them, with real Optuna
studies and journals (no Ray instance: Ray's ``OptunaSearch`` runs in-process)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import optuna
import pytest

from explorer.names import METRIC
from explorer.search.tuning import (
    ResumableOptunaSearch,
    build_scheduler,
    build_searcher,
    journal_path,
    suggest_space,
    trial_dirname,
)
from explorer.spec import load_spec

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"

WHEN = {  # augmentation.yaml's conditional pair, plus an int range and a log range
    "finetune.mix": {"type": "categorical", "choices": ["none", "mixup", "cutmix", "both"]},
    "finetune.mixup_alpha": {"type": "float", "low": 0.1, "high": 1.0,
                             "when": {"finetune.mix": ["mixup", "both"]}},
    "finetune.cutmix_alpha": {"type": "float", "low": 0.1, "high": 1.0,
                              "when": {"finetune.mix": ["cutmix", "both"]}},
    "finetune.randaug_magnitude": {"type": "int", "low": 0, "high": 12, "step": 3},
    "finetune.base_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
}


def test_ask_samples_a_parameter_only_when_its_condition_holds():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        suggest_space(trial, WHEN)
        p = trial.params
        seen.add(p["finetune.mix"])
        assert ("finetune.mixup_alpha" in p) == (p["finetune.mix"] in ("mixup", "both"))
        assert ("finetune.cutmix_alpha" in p) == (p["finetune.mix"] in ("cutmix", "both"))
        assert p["finetune.randaug_magnitude"] in (0, 3, 6, 9, 12)
        assert 1e-4 <= p["finetune.base_lr"] <= 1e-2
        study.tell(trial, 0.5)
    assert seen == {"none", "mixup", "cutmix", "both"}


def test_a_condition_on_a_single_value():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    space = {"a": {"type": "categorical", "choices": [True, False]},
             "b": {"type": "int", "low": 1, "high": 3, "when": {"a": True}}}
    for _ in range(10):
        trial = study.ask()
        suggest_space(trial, space)
        assert ("b" in trial.params) == trial.params["a"]


@pytest.fixture
def loaded():
    return load_spec(SPACES / "augmentation.yaml",
                     ["scale=smoke", "search.searcher.n_startup_trials=2"])


def _complete(searcher, trial_id: str, value: float) -> dict:
    config = searcher.suggest(trial_id)
    searcher.on_trial_result(trial_id, {METRIC: value, "training_iteration": 1})
    searcher.on_trial_complete(trial_id, {METRIC: value, "training_iteration": 1})
    return config


def _study(path, name):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return optuna.load_study(study_name=name, storage=storage)


def test_searcher_writes_its_study_to_the_experiments_journal(loaded, tmp_path):
    searcher = build_searcher(loaded, tmp_path, "aug")
    config = _complete(searcher, "t1", 0.6)
    assert set(config) <= set(loaded.spec.search.params)
    first = loaded.spec.search.points_to_evaluate[0]  # the study's recipe is tried first
    assert {k: config[k] for k in first} == first
    # A trial Tune resumes after a kill -9 re-reports an epoch of a trial already finished.
    searcher.on_trial_result("t1", {METRIC: 0.6, "training_iteration": 2})
    trials = _study(journal_path(tmp_path), "aug").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE]
    assert trials[0].value == 0.6


def test_restored_searcher_follows_a_moved_journal(loaded, tmp_path):
    """What a resume from another machine's mirror does: Tune unpickles the searcher (with the
    old absolute journal path) and restores its saved state; ``use_journal`` points it at the
    journal where the experiment now is, and the study goes on there."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    searcher = build_searcher(loaded, old, "aug")
    _complete(searcher, "t1", 0.6)
    searcher.save_to_dir(str(old), session_str="s")
    pickled = pickle.dumps(searcher)  # as tuner.pkl holds it
    new.mkdir()
    shutil.move(journal_path(old), journal_path(new))
    shutil.move(next(old.glob("searcher-state-*.pkl")), new)
    shutil.rmtree(old)

    restored = pickle.loads(pickled)
    assert isinstance(restored, ResumableOptunaSearch)
    restored.use_journal(journal_path(new))
    restored.restore_from_dir(str(new))
    _complete(restored, "t2", 0.7)
    assert not old.exists(), "the study was written to the old path"
    values = sorted(t.value for t in _study(journal_path(new), "aug").trials)
    assert values == [0.6, 0.7]
    assert restored.journal == str(journal_path(new))


def test_a_searcher_pickled_before_it_had_a_journal_attribute_restores(loaded, tmp_path):
    """Searchers pickled by the code before the journal became an attribute have none."""
    searcher = build_searcher(loaded, tmp_path, "aug")
    _complete(searcher, "t1", 0.6)
    searcher.save_to_dir(str(tmp_path), session_str="s")
    restored = pickle.loads(pickle.dumps(searcher))
    del restored.__dict__["journal"]
    restored.restore_from_dir(str(tmp_path))
    _complete(restored, "t2", 0.5)
    assert len(_study(journal_path(tmp_path), "aug").trials) == 2


def test_scheduler_is_asha_on_our_epoch_metric_or_none(loaded):
    from ray.tune.schedulers import ASHAScheduler

    asha = build_scheduler(loaded)
    assert isinstance(asha, ASHAScheduler) and asha._time_attr == "epoch"
    assert asha._max_t == loaded.max_t
    off = load_spec(SPACES / "augmentation.yaml", ["scale=smoke", "search.scheduler.type=none"])
    assert build_scheduler(off) is None


def test_trial_folders_are_named_by_trial_id():
    from ray.tune.experiment import Trial

    trial = Trial("search_trainable", config={}, stub=True)
    assert trial_dirname(trial) == trial.trial_id
