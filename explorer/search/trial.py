"""The Tune trainables: one search trial (pre-train if needed, then fine-tune) and one baseline run.

A trial runs its worker loop either inline in the Tune trial (one worker, no Train start-up) or
as a Ray Train ``TorchTrainer`` with DDP workers whose rank-0 metrics reach Tune through
``TuneReportCallback``. The loop is the same function in both cases (``run_worker``); only the
``Session`` differs. Everything here is importable, so ``Tuner.restore`` can unpickle it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from explorer.names import RESUME
from explorer.spec.recipes import build_recipe, config_hash, set_path
from explorer.train.artifacts import TrialArtifacts
from explorer.train.session import Session, TrainSession, TuneSession


def trial_recipe_dict(base: dict, params: dict[str, Any]) -> dict:
    import copy

    d = copy.deepcopy(base)
    for path, value in params.items():
        set_path(d, path, value)
    return d


def _node() -> dict:
    """Where the trial ran (node id and host), for the reproducibility record."""
    import socket

    import ray

    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    return {"node_id": node_id, "host": socket.gethostname()}


def run_worker(job: dict, session: Session) -> dict:
    """The per-worker body shared by both execution modes.

    ``job``: recipe (dict), params, kind ("recipe" | "baseline"), store (the storage),
    artifacts (the record's folder in it), score_test (baselines score the test split once at
    the end, selecting their epoch on validation), data (``explorer.data.prepare.ship``).
    """
    from explorer.data.prepare import receive
    from explorer.train.finetune import check_validation, drop_resume_state, finetune_loop
    from explorer.train.pretrain import ensure_encoder

    t0 = time.time()
    recipe = build_recipe(job["recipe"])
    data = receive(job.get("data"), recipe.data)  # the driver's split plan, this node's cache
    check_validation(data)
    store, rel = job["store"], job["artifacts"]
    art = TrialArtifacts(store.path(rel), commit=lambda: store.push(rel))
    # A remote storage: rank 0 starts from the stored record, the others read only these two
    # (every rank must see the same state: a copy the storage lacks is dropped).
    if session.is_main:
        store.pull(rel, skip=())
    else:
        for name in ("done.json", RESUME):
            store.match_stored(f"{rel}/{name}")
    if art.path("done.json").is_file():
        # Finished before an interruption hid it from Tune: report its result, train nothing.
        from explorer.train.finetune import report_finished

        report_finished(art, data.findings, session)
        return art.read_json("done.json")
    if session.is_main:
        art.write_json("config.json", {"kind": job["kind"], "trial_id": session.trial_id,
                                       "node": _node(),
                                       "params": job.get("params", {}),
                                       "recipe": recipe.model_dump(mode="json"),
                                       "config_hash": config_hash(recipe),
                                       "started": art.read_json("config.json", {}).get(
                                           "started", t0)})
    encoder = ensure_encoder(recipe, data, store, session)
    if session.is_main:
        art.write_json("encoder.json", encoder.to_dict())
        art.commit()
    def finish(summary: dict) -> None:
        if job.get("score_test"):
            from explorer.search.evaluate import score_test

            score_test(recipe, data, art)
        art.write_json("done.json", {"finished": time.time(), **summary})
        drop_resume_state(art)
        art.commit()

    if job.get("cost_metric"):  # a multi-objective search (explorer.search.objectives)
        from explorer.search.objectives import CostReporting

        session = CostReporting(session, job["recipe"], encoder, recipe.finetune.epochs)
    return finetune_loop(recipe, data, session, encoder, art, on_finish=finish)


def train_worker(config: dict) -> None:
    """Ray Train's ``train_loop_per_worker``."""
    run_worker(config["job"], TrainSession(config["job"]["trial_id"]))


def _run(job: dict, recipe_dict: dict, run_dir: Path) -> None:
    """``run_dir``: this node's view of the experiment folder (Train's scratch goes there)."""
    recipe = build_recipe(recipe_dict)
    if recipe.resources.mode == "inline":
        run_worker(job, TuneSession(job["trial_id"]))
        return
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    r = recipe.resources
    per_worker = {"CPU": r.cpus_per_worker}
    if r.gpus_per_worker:
        per_worker["GPU"] = r.gpus_per_worker
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"job": job},
        scaling_config=ray.train.ScalingConfig(num_workers=r.workers,
                                               use_gpu=r.gpus_per_worker > 0,
                                               resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(
            # The loop resumes from the trial's own resume.pt, whatever restarts it.
            name=job["trial_id"], storage_path=str(run_dir / "_train"),
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=r.max_failures),
        ),
    )
    trainer.fit()


def search_trainable(config: dict, context: dict) -> None:
    """One search trial: the searched parameters in ``config`` applied to the base recipe."""
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    store = context["store"]
    recipe_dict = trial_recipe_dict(context["base_recipe"], config)
    job = {"kind": "recipe", "trial_id": trial_id, "params": dict(config),
           "recipe": recipe_dict, "artifacts": f"{context['run']}/trials/{trial_id}",
           "store": store, "score_test": False, "data": context.get("data"),
           "cost_metric": context.get("cost_metric", False)}
    _run(job, recipe_dict, store.path(context["run"]))


def baseline_trainable(config: dict, context: dict) -> None:
    """One baseline run (a CNN and a seed), cached in ``<storage>/_baselines/<key>``.

    A lock on the cache folder makes two searches sharing a storage train it once.
    """
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    b = context["baselines"][config["baseline"]]
    store = context["store"]
    done = f"{b['rel']}/done.json"
    lock = store.lock(f"{b['rel']}/lock", owner=trial_id)
    while not store.fetch(done, refresh=True):
        if lock.try_acquire():
            with lock.held():
                if not store.fetch(done, refresh=True):
                    job = {"kind": "baseline", "trial_id": trial_id, "params": {},
                           "recipe": b["recipe"], "artifacts": b["rel"], "store": store,
                           "score_test": True, "data": context.get("data")}
                    _run(job, b["recipe"], store.path(context["run"]))
            return
        time.sleep(2)
