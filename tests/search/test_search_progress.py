"""The progress lines, from real (stub) Tune ``Trial`` objects, and what Tune pickles of them."""

from __future__ import annotations

import pickle
import threading

from ray.tune.experiment import Trial

from explorer.names import METRIC
from explorer.search.progress import Progress


def _trial(status: str, epoch: int, best: float | None, **config) -> Trial:
    t = Trial("search_trainable", config=config, stub=True)
    t.set_status(status)
    result = {"epoch": epoch, "time_total_s": 10.0}
    if best is not None:
        result[METRIC] = best
    t.update_last_result(result)
    return t


def test_summary_counts_states_names_the_best_and_estimates_time_left():
    p = Progress("search x", total=5, max_t=3, concurrency=2)
    trials = [_trial(Trial.TERMINATED, 3, 0.61, lr=0.001), _trial(Trial.TERMINATED, 1, 0.55),
              _trial(Trial.ERROR, 1, None), _trial(Trial.RUNNING, 2, float("nan")),
              _trial(Trial.RUNNING, 1, 0.70, lr=0.1234567)]
    key, line = p.summary(trials)
    assert line.startswith("3/5 done (1 stopped early, 1 failed), 2 running")
    assert "best val mean AUC 0.700 (lr=0.1235)" in line  # NaN is never the best
    assert "about 10s left" in line  # 2 left, 10 s each, 2 at a time
    assert key == (3, 1, 1, 2, 0.7)


def test_prints_on_change_and_then_every_every_s(capsys):
    p = Progress("baselines", total=1, max_t=3, concurrency=1, every_s=3600)
    trials = [_trial(Trial.RUNNING, 1, 0.5)]
    p.on_step_end(0, trials)
    p.on_step_end(1, trials)
    trials[0].set_status(Trial.TERMINATED)
    p.on_trial_complete(2, trials, trials[0])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "baselines: 1/1 done" in lines[1]


def test_started_is_set_at_setup_and_never_pickled():
    started = threading.Event()
    p = Progress("baselines", 1, 3, 1, started=started)
    restored = pickle.loads(pickle.dumps(p))  # as tuner.pkl holds it
    assert restored.started is None and restored.label == "baselines"
    restored.setup()  # no event: nothing to set, no error
    p.setup()
    assert started.is_set()
