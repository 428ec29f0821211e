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
import random
from pathlib import Path
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from explorer.search.objectives import searcher_objective
from explorer.search.progress import Progress
from explorer.search.space import all_configs, config_key, rounded, space_size
from explorer.spec import LoadedSpec

#: Optuna user attributes: a proposal that repeated trial N (never trained), and the number of
#: configurations tried when a bounded space ran out.
DUPLICATE_ATTR = "duplicate_of"
EXHAUSTED_ATTR = "space_exhausted"
LOST_NOTE = "lost in an interruption"  # set by explorer.search.study.settle_study
#: Optuna user attribute {trial_id, run}: the Tune trial a suggestion became, and its Tune run
#: (the run folder relative to the experiment's, "." for the main one), so that a run whose
#: Tune state is lost can be rebuilt from the journal (explorer.search.rebuild).
TUNE_ATTR = "tune"
MAX_REDRAWS = 20


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch whose study lives in a journal that can be ahead of Tune's saved state.

    After a ``kill -9``, Tune resumes trials that had in fact finished (its experiment state is
    saved every few seconds; the journal is written at once). Such a trial re-reports its last
    epoch, and Optuna refuses to update a finished trial. The study already holds that trial's
    final value, so the report is dropped instead of crashing the driver.
    """

    def __init__(self, *args, params: dict[str, dict] | None = None, rng_seed: int = 0,
                 run: str = ".", num_samples: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.run = run
        #: The run's trials, counted in the journal (``suggest``); None: Tune's count only.
        self.num_samples = num_samples
        #: The journal this process must use after a restore (``use_journal``); None: the one
        #: the searcher was built with.
        self.journal: str | None = None
        self._set_space(params or {}, rng_seed)

    def _set_space(self, params: dict[str, dict], rng_seed: int) -> None:
        self._params = params
        self._size = space_size(params) if params else None
        self._rng = random.Random(rng_seed)  # picks untried configurations (see suggest)

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
        n = getattr(self, "num_samples", None)  # this process' count (restore_tuner)
        space = (getattr(self, "_params", {}), getattr(self, "_rng", random.Random(0)))
        super().restore_from_dir(checkpoint_dir)  # replaces __dict__, journal included
        self.journal = journal
        if n is not None:  # also for a searcher pickled before it counted
            self.num_samples = n
        if not hasattr(self, "_params"):  # pickled before distinct configurations
            self._set_space(space[0], 0)
            self._rng = space[1]
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


    # -- distinct configurations ------------------------------------------------------------
    def suggest(self, trial_id: str):
        """A configuration no finished or running trial has had; ``FINISHED`` once a bounded
        space has been tried in full.

        A proposal equal to a known configuration is told to Optuna as what it is (the known
        trial's value, or a failure while that trial still runs, tagged ``duplicate_of``) and
        the sampler is asked again. A sampler stuck on known ground gets an untried
        configuration enqueued for it. The trial is tagged with its Tune id and run
        (``TUNE_ATTR``).
        """
        if trial_id in self._ot_trials:  # restored: keeps its config
            return super().suggest(trial_id)
        config = self._suggest_new(trial_id)
        self.tag_trial(trial_id, trial_id)
        return config

    def _suggest_new(self, trial_id: str):
        if self._run_full():
            return Searcher.FINISHED
        if not self._params:
            return super().suggest(trial_id)
        taken = self._taken()
        if self._size is not None and len(taken) >= self._size:
            self._ot_study.set_user_attr(EXHAUSTED_ATTR, len(taken))
            return Searcher.FINISHED
        for _ in range(MAX_REDRAWS):
            config = super().suggest(trial_id)
            known = taken.get(config_key(config, self._params))
            if known is None:
                return config
            self._tell_duplicate(trial_id, known)
        if self._size is None:  # an unbounded space repeating itself: train the repeat
            return super().suggest(trial_id)
        untried = [c for c in all_configs(self._params)
                   if config_key(c, self._params) not in taken]
        self._ot_study.enqueue_trial(self._rng.choice(untried), skip_if_exists=False)
        return super().suggest(trial_id)

    def _kept_trials(self) -> list[Any]:
        """The study's trials that finished or are running in this search: not duplicates,
        not trials lost to an interruption, not queued ones."""
        from optuna.trial import TrialState

        live = {t.number for t in self._ot_trials.values()}
        out = []
        for t in self._ot_study.get_trials(deepcopy=False):
            if DUPLICATE_ATTR in t.user_attrs or t.user_attrs.get("note") == LOST_NOTE:
                continue
            if t.state == TrialState.RUNNING and t.number not in live:
                continue  # asked by a driver that died before Tune knew the trial
            if t.state == TrialState.WAITING:
                continue
            out.append(t)
        return out

    def _taken(self) -> dict[str, Any]:
        """Configuration key -> the Optuna trial that has it (``_kept_trials``)."""
        out: dict[str, Any] = {}
        for t in self._kept_trials():
            out.setdefault(config_key(t.params, self._params), t)
        return out

    def _run_full(self) -> bool:
        """Whether this Tune run already has its ``num_samples`` trials by the journal's count.

        Tune counts the trials in its last saved state, and a search stopped by a fault (or
        killed) can have finished a trial after that save: Tune's restore does not know it and
        would run one trial too many, while the journal (written at once) does. Those trials
        are kept from the journal and their records (``rebuild.unsaved_trials``)."""
        n = getattr(self, "num_samples", None)  # a searcher pickled before it had one: None
        if not n:
            return False
        run = getattr(self, "run", ".")
        mine = [t for t in self._kept_trials()
                if (t.user_attrs.get(TUNE_ATTR) or {}).get("run") == run]
        return len(mine) >= n

    def tag_trial(self, suggested_as: str, trial_id: str | None) -> None:
        """Re-tag the Optuna trial suggested under ``suggested_as`` with the Tune trial it
        became (``TUNE_ATTR``), or with none (``trial_id`` None) while it is not a Tune trial:
        the pre-training stage (search/pretraining.py) draws recipes under its own ids before
        Tune names them, and stops some that never become trials."""
        ot_trial = self._ot_trials.get(suggested_as)
        if ot_trial is not None:
            ot_trial.set_user_attr(TUNE_ATTR, {"trial_id": trial_id,
                                               "run": getattr(self, "run", ".")})

    def _tell_duplicate(self, trial_id: str, known) -> None:
        from optuna.trial import TrialState

        ot_trial = self._ot_trials.pop(trial_id)
        self._ot_study._storage.set_trial_user_attr(ot_trial._trial_id, DUPLICATE_ATTR,
                                                    known.number)
        if known.state == TrialState.COMPLETE:
            self._ot_study.tell(ot_trial, known.values)  # Optuna's FAQ: the known value(s)
        else:
            self._ot_study.tell(ot_trial, state=TrialState.FAIL)


def _matches(value: Any, wanted: Any) -> bool:
    return value in wanted if isinstance(wanted, list) else value == wanted


def suggest_space(trial, params: dict[str, dict]) -> dict[str, Any]:
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
            chosen[name] = rounded(trial.suggest_float(name, p["low"], p["high"],
                                                       step=p.get("step"),
                                                       log=p.get("log", False)), p)
    return chosen  # stepped values rounded to their step: Tune's config takes these


def journal_path(run_dir: Path) -> Path:
    return Path(run_dir) / "optuna.journal"


def optuna_storage(run_dir: Path):
    import optuna

    return optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal_path(run_dir)))
    )


def space_params(loaded: LoadedSpec) -> dict[str, dict]:
    """The spec's searched parameters as plain dicts, in definition order."""
    return {k: v.model_dump(exclude_none=True) for k, v in loaded.spec.search.params.items()}


def build_searcher(loaded: LoadedSpec, run_dir: Path | None, study_name: str,
                   points: bool = True, run: str = ".", num_samples: int | None = None):
    """The Optuna searcher on the study in ``run_dir``'s journal; ``run``: its Tune run, as
    ``TUNE_ATTR`` names it, of ``num_samples`` trials. ``run_dir`` None: its study in memory
    (``explorer.replay`` re-runs searches on recorded curves and writes nothing)."""
    import optuna

    s = loaded.spec.search
    if s.searcher.type == "tpe":
        sampler = optuna.samplers.TPESampler(seed=s.searcher.seed,
                                             n_startup_trials=s.searcher.n_startup_trials,
                                             multivariate=True, constant_liar=True)
    else:
        sampler = optuna.samplers.RandomSampler(seed=s.searcher.seed)
    params = space_params(loaded)
    metric, mode = searcher_objective(s)  # [auc, cost]: a multi-objective study
    return ResumableOptunaSearch(
        space=functools.partial(suggest_space, params=params), params=params,
        metric=metric, mode=mode, sampler=sampler, rng_seed=s.searcher.seed, run=run,
        num_samples=num_samples,
        storage=optuna_storage(run_dir) if run_dir is not None else None,
        study_name=study_name,
        points_to_evaluate=([dict(p) for p in s.points_to_evaluate] or None) if points else None,
    )


def build_scheduler(loaded: LoadedSpec):
    from ray.tune.schedulers import ASHAScheduler

    sched = loaded.spec.search.scheduler
    if sched.type == "none":
        return None
    # Scheduled on our own `epoch` metric: training_iteration restarts at 1 after a resume.
    return ASHAScheduler(time_attr="epoch", max_t=loaded.max_t, grace_period=loaded.grace_period,
                         reduction_factor=sched.reduction_factor)


def trial_dirname(trial) -> str:
    """Trial folders named by trial id (module-level so Tuner.restore can unpickle it)."""
    return trial.trial_id


def restore_tuner(path: Path, trainable, *, resume_errored: bool, journal: Path | None = None,
                  started=None, watch=None, num_samples: int | None = None):
    """``Tuner.restore`` of the Tune experiment at ``path``, pointed at this process.

    What Tune restores was pickled by the process that started the experiment, maybe on
    another machine: the searcher is given ``journal`` (this process' path to the study), and
    the progress callback ``started`` (an event, which pickles cannot carry). Ray 2.60 has no
    public accessor for the restored searcher and callbacks; ``Tuner._local_tuner`` holds the
    objects ``tuner.pkl`` held, and ``fit()`` uses them as they are.
    """
    from ray import tune

    from explorer.search.faults import FaultWatch
    from explorer.storage.tunefs import tune_filesystem

    tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True,
                               resume_errored=resume_errored,
                               storage_filesystem=tune_filesystem())
    internal = tuner._local_tuner  # None only through a Ray Client (ray://), not supported
    searcher = internal._tune_config.search_alg
    while not isinstance(searcher, ResumableOptunaSearch) and hasattr(searcher, "searcher"):
        searcher = searcher.searcher  # inside the pre-training stage (search/pretraining.py)
    if journal is not None and isinstance(searcher, ResumableOptunaSearch):
        searcher.use_journal(journal)
        searcher.num_samples = num_samples
    run_config = internal.get_run_config()
    callbacks = [c for c in run_config.callbacks or [] if not isinstance(c, FaultWatch)]
    for callback in callbacks:
        if isinstance(callback, Progress):
            callback.started = started
    # a run started before FaultWatch existed has none: this process' watch either way
    run_config.callbacks = callbacks + ([watch] if watch is not None else [])
    return tuner
