"""The Ray-facing stages of a run: the search Tuner, the baselines Tuner, test scoring.

Each takes the run's ``RunContext`` and is safe to call again after an interruption: a Tune
experiment that exists is restored, a baseline in the cache is not trained again, a test split
already scored is not scored again.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from explorer.errors import error_line
from explorer.names import METRIC, MODE
from explorer.search.context import RunContext, absolute_paths, baseline_key, baseline_rel
from explorer.search.faults import FaultWatch
from explorer.search.progress import Progress
from explorer.search.resources import concurrency, trial_resources
from explorer.search.trial import baseline_trainable, search_trainable
from explorer.search.tuning import (
    build_scheduler,
    build_searcher,
    journal_path,
    restore_tuner,
    trial_dirname,
)
from explorer.storage import read_json
from explorer.storage.atomic import atomic_write_json
from explorer.storage.tunefs import tune_filesystem
from explorer.tracking import tune_callbacks
from explorer.train.artifacts import TrialArtifacts

FINISHED = ("TERMINATED", "ERROR")


def trial_states(grid) -> list[tuple[str, dict]]:
    """(trial id, {status, error}) for every trial of a Tune run, in creation order."""
    out = []
    for t in grid._experiment_analysis.trials:  # ResultGrid has no public per-trial status
        err = t.get_error() if t.status == "ERROR" else None
        out.append((t.trial_id, {"status": t.status,
                                 "error": error_line(err, last=True, limit=400) if err else None}))
    return out


def _unfinished(states) -> bool:
    return any(s["status"] not in FINISHED for _, s in states)


def prune_resume_states(store, run: str, states) -> None:
    """Drop the resume state of trials ASHA stopped (finished trials drop theirs themselves) and
    of trials lost to an interruption (started after Tune's last experiment snapshot, so a
    resume ran them again under a new id): none of them is ever resumed. Errored trials keep
    theirs for ``--retry-failed``. ``run``: the experiment folder in ``store``."""
    from explorer.train.resume import resume_files

    status = {trial_id: st["status"] for trial_id, st in states}
    for d in store.path(f"{run}/trials").glob("*"):
        if status.get(d.name) in ("TERMINATED", None):  # None: lost, not in Tune's state
            for f in resume_files(d):
                store.delete(f"{run}/trials/{d.name}/{f.name}")


# -- search ---------------------------------------------------------------------------------
def _search_tuner(ctx: RunContext, path: Path, name: str, num_samples: int, points: bool,
                  retry_failed: bool, trainable, watch: FaultWatch):
    from ray import tune

    exp, search = ctx.exp, ctx.loaded.spec.search
    if tune.Tuner.can_restore(str(path)):
        return restore_tuner(path, trainable, resume_errored=retry_failed,
                             journal=journal_path(exp.dir), watch=watch, num_samples=num_samples)
    n_parallel = concurrency(ctx.base, ctx.cluster.resources, search.max_concurrent)
    run = path.relative_to(exp.dir).as_posix()
    searcher = build_searcher(ctx.loaded, exp.dir, exp.name, points=points, run=run,
                              num_samples=num_samples)
    if search.pretraining.staged and ctx.base.uses_mae_pretraining:
        from explorer.search.pretraining import stage_searcher

        searcher = stage_searcher(ctx, searcher, path, num_samples, n_parallel)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=METRIC, mode=MODE,
            search_alg=searcher,
            scheduler=build_scheduler(ctx.loaded), num_samples=num_samples,
            max_concurrent_trials=n_parallel, trial_dirname_creator=trial_dirname,
            reuse_actors=True),  # a new process per trial costs ~4 s of imports (bench/)
        run_config=tune.RunConfig(
            name=name, storage_path=str(path.parent), storage_filesystem=tune_filesystem(),
            verbose=1 if ctx.verbose else 0,
            callbacks=[Progress(f"search {run if run != '.' else name}", num_samples,
                                ctx.loaded.max_t, n_parallel),
                       *tune_callbacks(ctx), watch],
            failure_config=tune.FailureConfig(max_failures=1)),
    )


def fit_run(ctx: RunContext, path: Path, name: str, n: int, points: bool, retry_failed: bool,
            trainable, watch: FaultWatch, claimed: set[str]) -> list:
    """The states of the ``n`` trials of the Tune run at ``path``: restored and fitted, or
    rebuilt from our records if Tune's state there is damaged (``rebuild.py``), in which case
    the run's remaining trials continue in a fresh run beside it."""
    from ray import tune

    from explorer.search.rebuild import REBUILT, rebuild_run, state_damage, unsaved_trials

    exp = ctx.exp
    record = read_json(path / REBUILT)
    if record is None:
        damage = state_damage(path) if tune.Tuner.can_restore(str(path)) else None
        shown = f"{exp.where}/{path.relative_to(exp.dir).as_posix()}".rstrip("/.")
        if damage is None:
            states = trial_states(_search_tuner(ctx, path, name, n, points, retry_failed,
                                                trainable, watch).fit())
            if _unfinished(states):
                return states
            known = claimed | {t for t, _ in states}
            return states + [(t, st) for t, st in
                             unsaved_trials(path, exp.dir, exp.name, known, shown)]
        record = rebuild_run(path, exp.dir, exp.name, n, damage, claimed, shown)
    kept = [(t, st) for t, st in record["trials"]]
    if not record["num_samples"]:
        return kept
    cont = record["continued_in"]
    return kept + fit_run(ctx, path / cont, cont, record["num_samples"], False, retry_failed,
                          trainable, watch, claimed | {t for t, _ in kept})


def missing_records(ctx: RunContext, states) -> None:
    """Finished trials whose record is gone (a deleted ``trials/<id>`` folder): said in one
    line and reported as ``missing``, never as a silent failure. Tune never runs a finished
    trial again, so they cannot be re-run under their id."""
    gone = [t for t, st in states if st["status"] == "TERMINATED"
            and not (ctx.exp.dir / "trials" / t / "config.json").is_file()]
    for t, st in states:
        if t in gone:
            st["missing"] = True
            st["error"] = f"its record trials/{t} is missing (deleted?)"
    if gone:
        print(f"note: {len(gone)} finished trial(s) have no record in {ctx.exp.where}/trials "
              f"(deleted?): {', '.join(gone)}; the report lists them as missing", flush=True)


def run_search(ctx: RunContext, extend: int = 0, retry_failed: bool = False,
               watch: FaultWatch | None = None):
    """Fit, restore or extend the search; all trials' states, or None if interrupted.

    The search is the main Tune experiment (``<run_dir>``) plus one per ``--extend N``
    (``<run_dir>/extend-K``); all share the Optuna study in ``optuna.journal``, so each
    extension's sampler learns from every earlier trial.
    """
    from ray import tune

    from explorer.search.pretraining import drawn
    from explorer.search.study import exhausted, settle_study
    from explorer.search.tuning import space_params

    exp = ctx.exp
    context = {"run": exp.name, "store": exp.store, "base_recipe": ctx.base_dict,
               "data": ctx.shipped, "cost_metric": ctx.loaded.spec.search.multi_objective}
    trainable = tune.with_resources(tune.with_parameters(search_trainable, context=context),
                                    trial_resources(ctx.base))
    parts = [(exp.dir, exp.name, ctx.loaded.spec.search.num_samples, True)]
    parts += [(exp.dir / e["name"], e["name"], e["num_samples"], False)
              for e in exp.extensions()]
    if extend:
        ext = exp.add_extension(extend)
        parts.append((exp.dir / ext["name"], ext["name"], extend, False))
    states: list = []
    watch = watch or FaultWatch(exp.where)
    for path, name, n, points in parts:
        part = fit_run(ctx, path, name, n, points, retry_failed, trainable, watch,
                       {t for t, _ in states})
        states += part
        if _unfinished(part):
            return None
        if len(part) < n and drawn(path) < n:  # multi-fidelity: stopped recipes count
            size = exhausted(exp.dir, exp.name)
            if size is None:
                return None
            print(f"search space exhausted: all {size} distinct configurations of "
                  f"search.params were tried, so '{name}' ends after {len(part)} of {n} "
                  f"trials", flush=True)
            break
    exp.store.pull(f"{exp.name}/trials")  # a remote storage: the records the trials pushed
    missing_records(ctx, states)
    settle_study(exp.dir, exp.name, states, space_params(ctx.loaded))
    prune_resume_states(exp.store, exp.name, states)
    return states


# -- baselines ------------------------------------------------------------------------------
def baseline_runs(ctx: RunContext) -> list[dict]:
    """Every (baseline recipe, seed) of the spec, with its cache key and folder."""
    runs = []
    recipes = list(ctx.loaded.baseline_recipes())
    archs = {b.recipe: r.model.arch for b, _, r in recipes}
    for b, seed, r in recipes:
        key = baseline_key(r, ctx.data.fingerprint, ctx.loaded.spec.scale)
        # "densenet121 seed 0"; the recipe's name where several recipes share an architecture
        # (random / ImageNet / MoCo v2 starts of DenseNet-121)
        name = r.model.arch if list(archs.values()).count(r.model.arch) == 1 else b.recipe
        runs.append({"run_id": f"{b.recipe}-s{seed}-{key[:6]}", "recipe_name": b.recipe,
                     "label": f"{name} seed {seed}", "seed": seed, "key": key,
                     "recipe": absolute_paths(r.model_dump(mode="json")),
                     "artifacts": str(ctx.exp.storage / baseline_rel(key)),
                     "rel": baseline_rel(key),
                     "state": {"status": "TERMINATED", "error": None}})
    return runs


def is_done(run: dict) -> bool:
    return TrialArtifacts(run["artifacts"]).path("done.json").is_file()


#: The baselines a baselines' Tune run was started for (beside its state).
BASELINE_RUNS = "runs.json"


def _restorable(exp_dir: Path, todo: list[dict], where: str) -> bool:
    """Whether the saved baselines' run can train every baseline still to do.

    A recipe that changed between the search and its resume (a new default in a new version)
    gives a baseline a new cache key that the saved run never had: restored, it would never
    train it and the report would show it failed with no reason. Such a run is moved aside
    (never deleted) and the baselines still to do get a new one."""
    from ray import tune

    if not tune.Tuner.can_restore(str(exp_dir)):
        return False
    known = read_json(exp_dir / BASELINE_RUNS)
    wanted = {r["run_id"] for r in todo}
    if not isinstance(known, list) or wanted <= set(known):
        return True  # a run saved before this record existed: as before
    aside = exp_dir.with_name(f"{exp_dir.name}-replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    exp_dir.rename(aside)
    print(f"note: {where}: {len(wanted - set(known))} baseline(s) have recipes that changed "
          f"since the search started (a new version's defaults); training them in a new run "
          f"(the old one moved to {aside.name})", flush=True)
    return False


def run_baselines(ctx: RunContext, started: threading.Event | None = None,
                  watch: FaultWatch | None = None):
    """Train the baselines not yet in the cache; None if interrupted. ``started`` is set once
    the baselines' Tune run has registered its trainable (Tune's registry is not thread-safe:
    the search waits for it)."""
    from ray import tune

    store = ctx.exp.store
    runs = baseline_runs(ctx)
    for r in runs:
        store.pull(r["rel"])  # a remote storage: what is cached there
    todo = [r for r in runs if not is_done(r)]
    for r in runs:
        r["cached"] = r not in todo
    if not todo:
        return runs
    exp_dir = ctx.exp.dir / "baselines"
    context = {"run": ctx.exp.name, "store": store, "baselines": {r["run_id"]: r for r in runs},
               "data": ctx.shipped}
    recipe = ctx.loaded.base  # baselines share the search's resources
    trainable = tune.with_resources(tune.with_parameters(baseline_trainable, context=context),
                                    trial_resources(recipe))
    watch = watch or FaultWatch(ctx.exp.where)
    if _restorable(exp_dir, todo, ctx.exp.where):
        tuner = restore_tuner(exp_dir, trainable, resume_errored=True, started=started,
                              watch=watch)
    else:
        exp_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(exp_dir / BASELINE_RUNS, [r["run_id"] for r in todo])
        n_parallel = concurrency(recipe, ctx.cluster.resources, None)
        tuner = tune.Tuner(
            trainable,
            param_space={"baseline": tune.grid_search([r["run_id"] for r in todo])},
            tune_config=tune.TuneConfig(max_concurrent_trials=n_parallel,
                                        trial_dirname_creator=trial_dirname, reuse_actors=True),
            run_config=tune.RunConfig(
                name="baselines", storage_path=str(ctx.exp.dir),
                storage_filesystem=tune_filesystem(), verbose=1 if ctx.verbose else 0,
                callbacks=[Progress("baselines", len(todo), recipe.finetune.epochs, n_parallel,
                                    started=started),
                           *tune_callbacks(ctx, {r["run_id"]: r["rel"] for r in runs}), watch],
                failure_config=tune.FailureConfig(max_failures=1)),
        )
    grid = tuner.fit()
    for r in runs:
        store.pull(r["rel"])
    states = trial_states(grid)
    if _unfinished(states):
        return None
    by_run = {res.config.get("baseline"): st for res, (_, st) in zip(grid, states)}
    for r in runs:
        if r["run_id"] in by_run:
            r["state"] = by_run[r["run_id"]]
    return runs


# -- test split -----------------------------------------------------------------------------
def finalists_of(ctx: RunContext, states) -> list[str]:
    """The top-k trials by validation mean AUC (the only thing selection ever looks at)."""
    scored = []
    for trial_id, st in states:
        if st["status"] != "TERMINATED":
            continue
        summary = TrialArtifacts(ctx.exp.dir / "trials" / trial_id).read_json("summary.json")
        value = (summary or {}).get("val_mean_auc")
        if value is not None and value == value:
            scored.append((value, trial_id))
    scored.sort(reverse=True)
    return [t for _, t in scored[: ctx.loaded.spec.finalists]]


def score_finalists(ctx: RunContext, states) -> list[str]:
    import ray

    from explorer.search.evaluate import score_finalist

    finalists = finalists_of(ctx, states)
    if len(ctx.data.test) == 0:
        print("note: the data has no test images; finalists are reported on validation only",
              flush=True)
        return finalists
    r = ctx.base.resources
    store = ctx.exp.store
    todo = [f"{ctx.exp.name}/trials/{t}" for t in finalists]
    if not r.gpus_per_worker:
        # A CPU forward pass over the test split: cheaper here, where torch is already
        # imported, than in new worker processes (bench/orchestration.py: 14 s -> 3.5 s).
        for rel in todo:
            score_finalist(store, rel)
        return finalists
    task = ray.remote(num_cpus=r.cpus_per_worker, num_gpus=r.gpus_per_worker)(score_finalist)
    ray.get([task.remote(store, rel) for rel in todo])
    for rel in todo:
        store.pull(rel)
    return finalists
