"""TensorBoard event files per trial, by fine-tuning epoch."""

from __future__ import annotations

from ray.tune.logger import TBXLoggerCallback
from ray.tune.result import TIMESTEPS_TOTAL


def by_epoch(result: dict) -> dict:
    """Ray's loggers step on ``timesteps_total``, else ``training_iteration``; the latter starts
    again at 1 when a trial resumes from its checkpoint, so a resumed trial would draw over its
    own first epochs. Our results carry the fine-tuning epoch, which does not restart."""
    return {**result, TIMESTEPS_TOTAL: result["epoch"]} if result.get("epoch") else result


class EpochTBXLogger(TBXLoggerCallback):
    """Ray's TensorBoardX callback (``tensorboardX`` comes with ``ray[tune]``) with the epoch as
    step. Passing it stops Tune adding its own, so each trial gets one set of curves."""

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        super().log_trial_result(iteration, trial, by_epoch(result))
