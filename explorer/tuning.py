"""From a validated spec to Ray Tune parts: the Optuna searcher, ASHA, the Tuner.

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

from explorer.spec import LoadedSpec
from explorer.train.finetune import METRIC

MODE = "max"


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch whose study lives in a journal that can be ahead of Tune's saved state.

    After a ``kill -9``, Tune resumes trials that had in fact finished (its experiment state is
    saved every few seconds; the journal is written at once). Such a trial re-reports its last
    epoch, and Optuna refuses to update a finished trial. The study already holds that trial's
    final value, so the report is dropped instead of crashing the driver.
    """

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        with contextlib.suppress(UpdateFinishedTrialError):
            super().on_trial_result(trial_id, result)

    #: This process' experiment journal, set before a restore (``run_search``). Tune pickles
    #: the searcher with the journal's absolute path, and the experiment may have moved since
    #: (another machine's mirror of an S3 storage, a mount at a new path).
    journal: str | None = None

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        """Restore, then make the study read and write ``journal`` (see above)."""
        super().restore_from_dir(checkpoint_dir)
        if type(self).journal is None:
            return
        from optuna.storages.journal import JournalFileBackend

        # One storage object is shared by the study and its trials (restored from one
        # pickle); its replay cache is empty after unpickling, so nothing was read yet.
        storages = {id(s): s for s in (self._storage, getattr(self._ot_study, "_storage", None),
                                       *(t.storage for t in self._ot_trials.values()))
                    if s is not None}
        for storage in storages.values():
            storage._backend = JournalFileBackend(type(self).journal)


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


def trial_resources(recipe) -> dict:
    """What one trial reserves. Inline: the worker itself. TorchTrainer: a near-free driver actor
    (the Train workers take their own placement group)."""
    r = recipe.resources
    if r.mode == "inline":
        res = {"CPU": r.cpus_per_worker}
        if r.gpus_per_worker:
            res["GPU"] = r.gpus_per_worker
        return res
    return {"CPU": 0.01}


def fits(recipe, cluster: dict, nodes: list[dict] | None = None) -> tuple[bool, str]:
    """Whether one trial can ever start on this cluster (else Ray Train retries forever).

    ``cluster``: total resources; ``nodes``: each alive node's resources (one worker must fit
    on one node).
    """
    r = recipe.resources
    need_cpu = r.workers * r.cpus_per_worker + (0.01 if r.mode == "torch_trainer" else 0)
    need_gpu = r.workers * r.gpus_per_worker
    have_cpu, have_gpu = cluster.get("CPU", 0), cluster.get("GPU", 0)
    what = (f"one trial needs {need_cpu:g} CPUs and {need_gpu:g} GPUs ({r.workers} workers x "
            f"{r.cpus_per_worker:g} CPUs, {r.gpus_per_worker:g} GPUs)")
    if need_cpu > have_cpu + 1e-9 or need_gpu > have_gpu + 1e-9:
        return False, (f"{what}, but the cluster has {have_cpu:g} CPUs and {have_gpu:g} GPUs "
                       "in all")
    if nodes and not any(n.get("CPU", 0) + 1e-9 >= r.cpus_per_worker
                         and n.get("GPU", 0) + 1e-9 >= r.gpus_per_worker for n in nodes):
        return False, (f"{what}, but no single node has {r.cpus_per_worker:g} CPUs and "
                       f"{r.gpus_per_worker:g} GPUs for one worker")
    return True, ""


def concurrency(recipe, cluster: dict, wanted: int | None) -> int:
    r = recipe.resources
    per_cpu = r.workers * r.cpus_per_worker
    n = int(cluster.get("CPU", 1) // per_cpu) if per_cpu else 1
    if r.gpus_per_worker:
        n = min(n, int(cluster.get("GPU", 0) // (r.workers * r.gpus_per_worker)))
    n = max(1, n)
    return min(n, wanted) if wanted else n
