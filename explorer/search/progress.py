"""Progress a person can read while a search runs (Ray's own tables only with ``-v``)."""

from __future__ import annotations

import sys
import threading
import time

from ray.tune import Callback

from explorer.names import METRIC


def _fmt_duration(s: float) -> str:
    s = int(max(0, s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class Progress(Callback):
    """One line whenever a trial starts, stops or improves on the best, and every ``every_s``.

    ``done (stopped early, failed), running | best so far | estimate of time left``.

    ``started``, if given, is set when the Tune run starts (its trainable is registered). Tune
    pickles callbacks into ``tuner.pkl`` and restores them on resume; an event cannot be
    pickled, so it is left out and a restore gives it again (``tuning.restore_tuner``).
    """

    started: threading.Event | None = None  # also for a Progress pickled before it had one

    def __init__(self, label: str, total: int, max_t: int, concurrency: int, every_s: float = 30,
                 started: threading.Event | None = None):
        self.label, self.total, self.max_t = label, total, max_t
        self.concurrency, self.every_s = max(1, concurrency), every_s
        self.started = started
        self._reset()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "started"}

    def _reset(self) -> None:
        self.t0 = time.time()
        self.last_print = 0.0
        self.last_key: tuple = ()

    def setup(self, **info) -> None:
        self._reset()
        if self.started is not None:
            self.started.set()

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        self._maybe_print(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._maybe_print(trials)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._maybe_print(trials)

    def on_experiment_end(self, trials: list, **info) -> None:
        self._maybe_print(trials)

    def summary(self, trials: list) -> tuple[tuple, str]:
        finished = [t for t in trials if t.status in ("TERMINATED", "ERROR")]
        failed = sum(t.status == "ERROR" for t in trials)
        stopped = sum(t.status == "TERMINATED" and t.last_result.get("epoch", 0) < self.max_t
                      for t in trials)
        running = [t for t in trials if t.status == "RUNNING"]
        scored = [t for t in trials if t.last_result.get(METRIC) == t.last_result.get(METRIC)
                  and METRIC in t.last_result]
        best = max(scored, key=lambda t: t.last_result[METRIC], default=None)
        parts = [f"{len(finished)}/{self.total} done ({stopped} stopped early, {failed} failed), "
                 f"{len(running)} running"]
        if best is not None:
            params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in best.config.items())
            parts.append(f"best val mean AUC {best.last_result[METRIC]:.3f}"
                         + (f" ({params})" if params else ""))
        durations = [t.last_result.get("time_total_s", 0) for t in finished
                     if t.status == "TERMINATED"]
        left = self.total - len(finished)
        if durations and left:
            eta = sum(durations) / len(durations) * left / min(self.concurrency, left)
            parts.append(f"about {_fmt_duration(eta)} left")
        best_val = round(best.last_result[METRIC], 3) if best is not None else None
        key = (len(finished), failed, stopped, len(running), best_val)
        return key, " | ".join(parts)

    def _maybe_print(self, trials: list) -> None:
        now = time.time()
        key, line = self.summary(trials)
        if key == self.last_key and now - self.last_print < self.every_s:
            return
        self.last_key, self.last_print = key, now
        print(f"[{_fmt_duration(now - self.t0):>6}] {self.label}: {line}", file=sys.stdout,
              flush=True)
