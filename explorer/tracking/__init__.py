"""Watching a search in the tools researchers already use, through Ray Tune's own callbacks.

- ``tensorboard``  ``EpochTBXLogger``: TensorBoard event files in each trial's Tune folder
                   (always on: Ray writes them anyway, this makes the x axis the epoch)
- ``mlflow_runs``  ``TrialMLflowLogger``: one MLflow run per trial (spec ``tracking.mlflow``)

The Optuna study needs nothing here: ``optuna-dashboard RUN_DIR/optuna.journal`` opens it.
The callbacks are chosen when an experiment starts: Tune pickles them into ``tuner.pkl`` and a
resume brings back the same ones (so ``tracking`` is part of the spec that ``--resume`` checks).
"""

from __future__ import annotations

import os

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"


def mlflow_target(tracking, exp_dir) -> tuple[str, str | None]:
    """(tracking URI, artifact location for a new MLflow experiment, or None: the server's).

    The default is a SQLite file in the experiment folder, not MLflow's ``./mlruns`` file store:
    MLflow 3 refuses that store unless ``MLFLOW_ALLOW_FILE_STORE=true`` ("maintenance mode"),
    and SQLite needs nothing beyond SQLAlchemy and Alembic, which Optuna already brings.
    """
    uri = tracking.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri, None
    return f"sqlite:///{exp_dir / DEFAULT_DB}", (exp_dir / DEFAULT_ARTIFACTS).as_uri()


def tune_callbacks(p, baselines: dict[str, str] | None = None) -> list:
    """The tracking callbacks of one Tuner: the search's, or the baselines' (``baselines``:
    run id -> its record in the storage). ``p``: the run (``explorer.search.context.RunContext``:
    its ``loaded`` spec and ``exp``eriment)."""
    from explorer.tracking.tensorboard import EpochTBXLogger

    callbacks: list = [EpochTBXLogger()]
    tracking = p.loaded.spec.tracking
    if tracking.mlflow:
        from explorer.tracking.mlflow_runs import TrialMLflowLogger

        uri, artifacts = mlflow_target(tracking, p.exp.dir)
        callbacks.append(TrialMLflowLogger(
            uri, experiment=tracking.mlflow_experiment or p.exp.name,
            artifact_location=artifacts, store=p.exp.store, run=p.exp.name,
            baselines=baselines or {}))
    return callbacks
