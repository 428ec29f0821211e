"""One MLflow run per trial, through Ray Tune's own ``MLflowLoggerCallback``.

What it adds to Ray's callback, each for a reason:

- the step of every metric is the fine-tuning epoch (``training_iteration`` restarts at 1 when
  a trial resumes), and only metrics are logged, not Ray's bookkeeping (pid, config, ...);
- a resumed search logs into the trial's existing run: Tune does not keep this callback's run
  ids across a restart, and Ray's callback would open a second run for the same trial;
- epochs whose result never reached the driver (it was killed between a trial's report and
  this callback) are filled in at the end from the trial's ``history.json``;
- the final artefacts are the trial's own record (config, summary, history, predictions), not
  Tune's folder; the weights stay out (``python -m explorer.export`` makes a model of them).
  A trial writes its record off its training thread, so the epoch it last reported can land a
  moment after Tune ended it (a trial ASHA stopped: measured 3 s late on a loaded machine);
  the record is logged once it holds that epoch (waiting at most ``RECORD_WAIT_S``);
- the default SQLite store gets its artefacts beside it, not in ``./mlartifacts`` of whatever
  folder the search was started from.
"""

from __future__ import annotations

import logging
import time

from ray.air.constants import TRAINING_ITERATION
from ray.air.integrations.mlflow import MLflowLoggerCallback

TRIAL_TAG = "ray_trial_id"
SEARCH_TAG = "explorer_search"
#: Files of a trial's record logged as its run's artefacts (under ``record/``).
RECORD_FILES = ("config.json", "encoder.json", "history.json", "summary.json", "done.json",
                "val_predictions.parquet", "test_predictions.parquet")
#: How long the end of a trial waits for its record to hold the epoch it last reported.
RECORD_WAIT_S = 60.0
NOT_METRICS = ("config", "pid", "timestamp", "date", "hostname", "node_ip", "done", "trial_id",
               "experiment_tag", "should_checkpoint", "checkpoint_dir_name",
               "iterations_since_restore", "timesteps_total", "time_since_restore")


class TrialMLflowLogger(MLflowLoggerCallback):
    """``baselines``: a baseline run id -> its record in ``store`` (search trials' records are
    ``<run>/trials/<trial id>``)."""

    def __init__(self, tracking_uri: str, *, experiment: str, artifact_location: str | None,
                 store, run: str, baselines: dict[str, str]):
        super().__init__(tracking_uri=tracking_uri, experiment_name=experiment,
                         tags={SEARCH_TAG: run})
        self.artifact_location = artifact_location
        self.store, self.run, self.baselines = store, run, baselines

    def setup(self, *args, **kwargs) -> None:
        # MLflow and Alembic log INFO lines (database migrations) to stderr, where the CLI
        # keeps only its one error line.
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        if self.artifact_location is not None:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.tracking_uri)
            if client.get_experiment_by_name(self.experiment_name) is None:
                client.create_experiment(self.experiment_name,
                                         artifact_location=self.artifact_location)
        super().setup(*args, **kwargs)

    def _record(self, trial) -> str:
        return self.baselines.get(trial.config.get("baseline"),
                                  f"{self.run}/trials/{trial.trial_id}")

    def _existing_run(self, trial) -> str | None:
        client = self.mlflow_util._get_client()
        runs = client.search_runs(
            [self.mlflow_util.experiment_id], max_results=1,
            filter_string=f"tags.{TRIAL_TAG} = '{trial.trial_id}' and "
                          f"tags.{SEARCH_TAG} = '{self.run}'")
        if not runs:
            return None
        client.update_run(runs[0].info.run_id, status="RUNNING")
        return runs[0].info.run_id

    def log_trial_start(self, trial) -> None:
        if trial not in self._trial_runs:
            run_id = self._existing_run(trial)
            if run_id is None:
                kind = "baseline" if "baseline" in trial.config else "recipe"
                name = trial.config.get("baseline") or trial.trial_id
                tags = {**self.tags, TRIAL_TAG: trial.trial_id, "kind": kind,
                        "trial_name": str(trial)}
                run_id = self.mlflow_util.start_run(tags=tags, run_name=name).info.run_id
            self._trial_runs[trial] = run_id
        super().log_trial_start(trial)  # logs the searched parameters

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if trial not in self._trial_runs:
            self.log_trial_start(trial)
        metrics = {k: v for k, v in result.items() if k not in NOT_METRICS}
        step = int(result.get("epoch") or result[TRAINING_ITERATION])
        self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=metrics,
                                     step=step)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        if trial not in self._trial_runs:
            return
        rel = self._record(trial)
        history = self._await_record(
            rel, 0 if failed else int((trial.last_result or {}).get("epoch") or 0))
        client = self.mlflow_util._get_client()
        self._fill_in(client, self._trial_runs[trial], history)
        for name in RECORD_FILES:
            path = self.store.path(f"{rel}/{name}")
            if path.is_file():
                client.log_artifact(self._trial_runs[trial], str(path), artifact_path="record")
        super().log_trial_end(trial, failed)

    def _await_record(self, rel: str, epoch: int) -> list[dict]:
        """Pull the trial's record (a remote storage: what the trial pushed, no weights) until
        its history holds ``epoch``, or ``RECORD_WAIT_S`` have passed; its history."""
        from explorer.storage import read_json

        end = time.monotonic() + RECORD_WAIT_S
        while True:
            self.store.pull(rel)
            history = read_json(self.store.path(f"{rel}/history.json"), []) or []
            if len(history) >= epoch or time.monotonic() > end:
                return history
            time.sleep(0.2)

    def _fill_in(self, client, run_id: str, history: list[dict]) -> None:
        """Log the epochs of the trial's ``history`` that its run does not have yet."""
        logged = {m.step for m in client.get_metric_history(run_id, "val_mean_auc")}
        for h in history:
            if h["epoch"] not in logged:
                metrics = {k: h[k] for k in ("epoch", "val_mean_auc", "train_loss", "lr")}
                self.mlflow_util.log_metrics(run_id=run_id, metrics_to_log=metrics,
                                             step=h["epoch"])
