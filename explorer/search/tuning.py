"""From a validated spec to Ray Tune parts: the Optuna searcher, ASHA, and a restored Tuner.

Two traps from the Ray 2.60 notes are handled here:

- metric/mode must be given to ``OptunaSearch`` itself (it has its own space, so Tune does not
  forward them) and to ``TuneConfig`` (for ASHA), but not to the scheduler;
- the define-by-run space function lives in this importable module (``suggest_space`` wrapped
  in ``functools.partial``), never in ``__main__``: a function pickled from ``__main__`` makes
  ``Tuner.restore`` silently start the search over.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from ray.tune.search.optuna import OptunaSearch

from explorer.names import METRIC, MODE
from explorer.search.progress import Progress
from explorer.spec import LoadedSpec


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch whose study lives in a journal that can be ahead of Tune's saved state.

    After a ``kill -9``, Tune resumes trials that had in fact finished (its experiment state is
    saved every few seconds; the journal is written at once). Such a trial re-reports its last
    epoch, and Optuna refuses to update a finished trial. The study already holds that trial's
    final value, so the report is dropped instead of crashing the driver.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        #: The journal this process must use after a restore (``use_journal``); None: the one
        #: the searcher was built with.
        self.journal: str | None = None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        with contextlib.suppress(UpdateFinishedTrialError):
            super().on_trial_result(trial_id, result)

    def use_journal(self, path: str | Path) -> None:
        """Make a restore read and write the study in the journal at ``path``. Tune pickles the
        searcher with the journal's absolute path, and the experiment may have moved since
        (another machine's mirror of an S3 storage, a mount at a new path)."""
        self.journal = str(path)

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        """Restore the state Tune saved, then point the study at ``journal`` (see above)."""
        journal = getattr(self, "journal", None)  # a searcher pickled before it had one: None
        super().restore_from_dir(checkpoint_dir)  # replaces __dict__, journal included
        self.journal = journal
        if journal is None:
            return
        from optuna.storages.journal import JournalFileBackend

        # One storage object is shared by the study and its trials (restored from one
        # pickle); its replay cache is empty after unpickling, so nothing was read yet.
        storages = {id(s): s for s in (self._storage, getattr(self._ot_study, "_storage", None),
                                       *(t.storage for t in self._ot_trials.values()))
                    if s is not None}
        for storage in storages.values():
            storage._backend = JournalFileBackend(journal)


def _matches(value: Any, wanted: Any) -> bool:
    return value in wanted if isinstance(wanted, list) else value == wanted


def suggest_space(trial, params: dict[str, dict]) -> None:
    """Optuna define-by-run space: suggest each parameter in order, skipping unmet ``when``s."""
    chosen: dict[str, Any] = {}
    for name, p in params.items():
        when = p.get("when") or {}
        if not all(k in chosen and _matches(chosen[k], v) for k, v in when.items()):
            continue
        if p["type"] == "categorical":
            chosen[name] = trial.suggest_categorical(name, p["choices"])
        elif p["type"] == "int":
            chosen[name] = trial.suggest_int(name, int(p["low"]), int(p["high"]),
                                             step=int(p.get("step") or 1), log=p.get("log", False))
        else:
            chosen[name] = trial.suggest_float(name, p["low"], p["high"], step=p.get("step"),
                                               log=p.get("log", False))
    return None


def journal_path(run_dir: Path) -> Path:
    return Path(run_dir) / "optuna.journal"


def optuna_storage(run_dir: Path):
    import optuna

    return optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal_path(run_dir)))
    )


def build_searcher(loaded: LoadedSpec, run_dir: Path, study_name: str, points: bool = True):
    import optuna

    s = loaded.spec.search
    if s.searcher.type == "tpe":
        sampler = optuna.samplers.TPESampler(seed=s.searcher.seed,
                                             n_startup_trials=s.searcher.n_startup_trials,
                                             multivariate=True, constant_liar=True)
    else:
        sampler = optuna.samplers.RandomSampler(seed=s.searcher.seed)
    params = {k: v.model_dump(exclude_none=True) for k, v in s.params.items()}
    return ResumableOptunaSearch(
        space=functools.partial(suggest_space, params=params),
        metric=METRIC, mode=MODE, sampler=sampler,
        storage=optuna_storage(run_dir), study_name=study_name,
        points_to_evaluate=([dict(p) for p in s.points_to_evaluate] or None) if points else None,
    )


def build_scheduler(loaded: LoadedSpec):
    from ray.tune.schedulers import ASHAScheduler

    sched = loaded.spec.search.scheduler
    if sched.type == "none":
        return None
    # Scheduled on our own `epoch` metric: training_iteration restarts at 1 after a resume.
    return ASHAScheduler(time_attr="epoch", max_t=loaded.max_t, grace_period=sched.grace_period,
                         reduction_factor=sched.reduction_factor)


def trial_dirname(trial) -> str:
    """Trial folders named by trial id (module-level so Tuner.restore can unpickle it)."""
    return trial.trial_id


def restore_tuner(path: Path, trainable, *, resume_errored: bool, journal: Path | None = None,
                  started=None):
    """``Tuner.restore`` of the Tune experiment at ``path``, pointed at this process.

    What Tune restores was pickled by the process that started the experiment, maybe on
    another machine: the searcher is given ``journal`` (this process' path to the study), and
    the progress callback ``started`` (an event, which pickles cannot carry). Ray 2.60 has no
    public accessor for the restored searcher and callbacks; ``Tuner._local_tuner`` holds the
    objects ``tuner.pkl`` held, and ``fit()`` uses them as they are.
    """
    from ray import tune

    tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True,
                               resume_errored=resume_errored)
    internal = tuner._local_tuner  # None only through a Ray Client (ray://), not supported
    searcher = internal._tune_config.search_alg
    if journal is not None and isinstance(searcher, ResumableOptunaSearch):
        searcher.use_journal(journal)
    for callback in internal.get_run_config().callbacks or []:
        if isinstance(callback, Progress):
            callback.started = started
    return tuner
