"""The Ray-facing stages of a pipeline: the search Tuner, the baselines Tuner, test scoring."""

from __future__ import annotations

from typing import TYPE_CHECKING

from explorer.baselines import baseline_recipe
from explorer.pipeline import absolute_paths, baseline_rel, trial_states
from explorer.progress import Progress
from explorer.train.artifacts import TrialArtifacts
from explorer.trial import baseline_trainable, search_trainable
from explorer.tuning import (
    build_scheduler,
    build_searcher,
    concurrency,
    trial_dirname,
    trial_resources,
)

if TYPE_CHECKING:
    from explorer.pipeline import Pipeline

FINISHED = ("TERMINATED", "ERROR")


def prune_resume_states(store, run: str, states) -> None:
    """Drop the resume state of trials ASHA stopped (finished trials drop theirs themselves) and
    of trials lost to an interruption (started after Tune's last experiment snapshot, so a
    resume ran them again under a new id): none of them is ever resumed. Errored trials keep
    theirs for ``--retry-failed``. ``run``: the experiment folder in ``store``."""
    from explorer.train.finetune import RESUME

    status = {trial_id: st["status"] for trial_id, st in states}
    for d in store.path(f"{run}/trials").glob("*"):
        if status.get(d.name) in ("TERMINATED", None):  # None: lost, not in Tune's state
            store.delete(f"{run}/trials/{d.name}/{RESUME}")


def _unfinished(states) -> bool:
    return any(s["status"] not in FINISHED for _, s in states)


def _search_tuner(p: Pipeline, path, name: str, num_samples: int, points: bool,
                  retry_failed: bool, trainable):
    from ray import tune

    loaded, exp = p.loaded, p.exp
    if tune.Tuner.can_restore(str(path)):
        return tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True,
                                  resume_errored=retry_failed)
    n_parallel = concurrency(p.base, p.cluster, loaded.spec.search.max_concurrent)
    metric, mode = p.metric
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=metric, mode=mode,
            search_alg=build_searcher(loaded, exp.dir, exp.name, points=points),
            scheduler=build_scheduler(loaded), num_samples=num_samples,
            max_concurrent_trials=n_parallel, trial_dirname_creator=trial_dirname,
            reuse_actors=True),  # a new process per trial costs ~4 s of imports (bench/)
        run_config=tune.RunConfig(
            name=name, storage_path=str(path.parent), verbose=1 if p.verbose else 0,
            callbacks=[Progress(f"search {name}", num_samples, loaded.max_t, n_parallel)],
            failure_config=tune.FailureConfig(max_failures=1)),
    )


def run_search(p: Pipeline, extend: int = 0, retry_failed: bool = False):
    """Fit, restore or extend the search; all trials' states, or None if interrupted.

    The search is the main Tune experiment (``<run_dir>``) plus one per ``--extend N``
    (``<run_dir>/extend-K``); all share the Optuna study in ``optuna.journal``, so each
    extension's sampler learns from every earlier trial.
    """
    from ray import tune

    from explorer.study import settle_study
    from explorer.tuning import ResumableOptunaSearch, journal_path

    exp = p.exp
    ResumableOptunaSearch.journal = str(journal_path(exp.dir))  # where a restore must write
    ctx = {"run": exp.name, "store": exp.store, "base_recipe": p.base_dict}
    trainable = tune.with_resources(tune.with_parameters(search_trainable, context=ctx),
                                    trial_resources(p.base))
    parts = [(exp.dir, exp.name, p.loaded.spec.search.num_samples, True)]
    parts += [(exp.dir / e["name"], e["name"], e["num_samples"], False)
              for e in exp.extensions()]
    if extend:
        ext = exp.add_extension(extend)
        parts.append((exp.dir / ext["name"], ext["name"], extend, False))
    states: list = []
    for path, name, n, points in parts:
        part = trial_states(_search_tuner(p, path, name, n, points, retry_failed,
                                          trainable).fit())
        states += part
        if _unfinished(part) or len(part) < n:
            return None
    exp.store.pull(f"{exp.name}/trials")  # a remote storage: the records the trials pushed
    settle_study(exp.dir, exp.name, states)
    prune_resume_states(exp.store, exp.name, states)
    return states


def baseline_runs(p: Pipeline) -> list[dict]:
    """Every (baseline recipe, seed) of the spec, with its cache key and folder."""
    runs = []
    spec = p.loaded.spec
    archs = [baseline_recipe(p.loaded, b, 0, where=f"baselines ({b.recipe})").model.arch
             for b in spec.baselines]
    for b, arch in zip(spec.baselines, archs):
        # "densenet121 seed 0"; the recipe's name where several recipes share an architecture
        # (random / ImageNet / MoCo v2 starts of DenseNet-121)
        name = arch if archs.count(arch) == 1 else b.recipe
        for seed in spec.baseline_seeds(b):
            r = baseline_recipe(p.loaded, b, seed, where=f"baselines ({b.recipe})")
            d = absolute_paths(r.model_dump(mode="json"))
            key = p.baseline_key(r)
            runs.append({"run_id": f"{b.recipe}-s{seed}-{key[:6]}", "recipe_name": b.recipe,
                         "label": f"{name} seed {seed}", "seed": seed, "key": key,
                         "recipe": d, "artifacts": str(p.baseline_dir(key)),
                         "rel": baseline_rel(key),
                         "state": {"status": "TERMINATED", "error": None}})
    return runs


def is_done(run: dict) -> bool:
    return TrialArtifacts(run["artifacts"]).path("done.json").is_file()


def run_baselines(p: Pipeline):
    """Train the baselines not yet in the cache; None if interrupted."""
    from ray import tune

    runs = baseline_runs(p)
    for r in runs:
        p.exp.store.pull(r["rel"])  # a remote storage: what is cached there
    todo = [r for r in runs if not is_done(r)]
    for r in runs:
        r["cached"] = r not in todo
    if not todo:
        return runs
    exp_dir = p.exp.dir / "baselines"
    ctx = {"run": p.exp.name, "store": p.exp.store, "baselines": {r["run_id"]: r for r in runs}}
    recipe = p.loaded.base  # baselines share the search's resources
    trainable = tune.with_resources(tune.with_parameters(baseline_trainable, context=ctx),
                                    trial_resources(recipe))
    if tune.Tuner.can_restore(str(exp_dir)):
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True,
                                   resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"baseline": tune.grid_search([r["run_id"] for r in todo])},
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrency(recipe, p.cluster, None),
                                        trial_dirname_creator=trial_dirname, reuse_actors=True),
            run_config=tune.RunConfig(
                name="baselines", storage_path=str(p.exp.dir), verbose=1 if p.verbose else 0,
                callbacks=[Progress("baselines", len(todo), recipe.finetune.epochs,
                                    concurrency(recipe, p.cluster, None))],
                failure_config=tune.FailureConfig(max_failures=1)),
        )
    grid = tuner.fit()
    for r in runs:
        p.exp.store.pull(r["rel"])
    states = trial_states(grid)
    if _unfinished(states):
        return None
    by_run = {res.config.get("baseline"): st for res, (_, st) in zip(grid, states)}
    for r in runs:
        if r["run_id"] in by_run:
            r["state"] = by_run[r["run_id"]]
    return runs


def finalists_of(p: Pipeline, states) -> list[str]:
    """The top-k trials by validation mean AUC (the only thing selection ever looks at)."""
    scored = []
    for trial_id, st in states:
        if st["status"] != "TERMINATED":
            continue
        summary = TrialArtifacts(p.exp.dir / "trials" / trial_id).read_json("summary.json")
        value = (summary or {}).get("val_mean_auc")
        if value is not None and value == value:
            scored.append((value, trial_id))
    scored.sort(reverse=True)
    return [t for _, t in scored[: p.loaded.spec.finalists]]


def score_finalists(p: Pipeline, states) -> list[str]:
    import ray

    from explorer.evaluate import score_finalist

    finalists = finalists_of(p, states)
    if len(p.data.test) == 0:
        print("note: the data has no test images; finalists are reported on validation only",
              flush=True)
        return finalists
    r = p.base.resources
    todo = [f"{p.exp.name}/trials/{t}" for t in finalists]
    if not r.gpus_per_worker:
        # A CPU forward pass over the test split: cheaper here, where torch is already
        # imported, than in new worker processes (bench/orchestration.py: 14 s -> 3.5 s).
        for rel in todo:
            score_finalist(p.exp.store, rel)
        return finalists
    task = ray.remote(num_cpus=r.cpus_per_worker, num_gpus=r.gpus_per_worker)(score_finalist)
    ray.get([task.remote(p.exp.store, rel) for rel in todo])
    for rel in todo:
        p.exp.store.pull(rel)
    return finalists
