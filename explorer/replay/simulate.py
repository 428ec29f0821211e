"""One replayed search: the real searcher, scheduler and pre-training stage, on a simulated clock.

Nothing is re-implemented: the Optuna searcher is ``explorer.search.tuning.build_searcher``'s
(in memory), ASHA is Ray Tune's ``ASHAScheduler`` from ``build_scheduler``, and multi-fidelity
pre-training is ``explorer.search.pretraining.PretrainStage`` with its Ray jobs replaced by
recorded segments. Only Tune's event loop is simulated: ``n_parallel`` slots (what the real
search ran at once), each trial or pre-training job holding one, every epoch taking its
recorded seconds. Cost is counted as in ``explorer.results.cost``: recorded seconds x devices;
an encoder is paid once.

Without a stage (today's searches) a trial pre-trains its encoder inline, in its slot, before
its first epoch; a trial needing an encoder that another trial is training waits in its slot.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field
from types import SimpleNamespace

from ray.tune.search import Searcher

from explorer.names import METRIC, MODE
from explorer.replay.table import Recorded
from explorer.search.pretraining import PretrainStage, stage_key
from explorer.search.space import config_key


class NotReplayable(Exception):
    """The record lacks what a strategy needs (e.g. probe scores at its milestones)."""


@dataclass
class Outcome:
    cost_device_s: float = 0.0
    pretrain_epochs: int = 0
    finetune_epochs: int = 0
    censored_epochs: int = 0
    substituted: int = 0  # proposals not in the record, replaced by the nearest recorded one
    makespan_s: float = 0.0
    trials: list[dict] = field(default_factory=list)  # {params, value, epochs}

    def best(self) -> dict | None:
        scored = [t for t in self.trials if math.isfinite(t["value"])]
        return max(scored, key=lambda t: t["value"]) if scored else None


class RecordedOnly(Searcher):
    """The searcher, restricted to recorded configurations: a proposal the record lacks is told
    FAIL (Optuna's samplers ignore failed trials) and the nearest untried recorded
    configuration is enqueued in its place."""

    def __init__(self, searcher, rec: Recorded, out: Outcome):
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher, self._rec, self._out, self._n = searcher, rec, out, itertools.count()

    def suggest(self, trial_id: str):
        for _ in range(len(self._rec.runs) + 1):
            config = self.searcher.suggest(trial_id)
            if config in (None, Searcher.FINISHED) or self._rec.run_for(config) is not None:
                return config
            self.searcher.on_trial_complete(trial_id, error=True)
            self.searcher._ot_trials.pop(trial_id, None)  # the id is asked again below
            self.searcher._completed_trials.discard(trial_id)
            nearest = self._nearest(config)
            if nearest is None:
                return Searcher.FINISHED
            self.searcher._ot_study.enqueue_trial(nearest)
            self._out.substituted += 1
        return Searcher.FINISHED

    def _nearest(self, config: dict) -> dict | None:
        taken = {config_key(t.params, self._rec.params)
                 for t in self.searcher._ot_study.get_trials(deepcopy=False)
                 if t.state.name in ("COMPLETE", "RUNNING", "PRUNED")}
        free = [r.params for k, r in self._rec.runs.items() if k not in taken]

        def distance(p: dict) -> float:
            d = 0.0
            for name, space in self._rec.params.items():
                a, b = config.get(name), p.get(name)
                if space["type"] == "categorical" or a is None or b is None:
                    d += 0.0 if a == b else 1.0
                else:
                    lo, hi = space["low"], space["high"]
                    if space.get("log"):
                        a, b, lo, hi = map(math.log, (a, b, lo, hi))
                    d += abs(a - b) / (hi - lo)
            return d

        return min(free, key=distance) if free else None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        self.searcher.on_trial_complete(trial_id, result=result, error=error)


class ReplayStage(PretrainStage):
    """The pre-training stage with its Ray jobs replaced by recorded segments."""

    def __init__(self, *args, sim: Simulation, **kwargs):
        super().__init__(*args, **kwargs)
        self._sim = sim

    def _launch(self, skey: str, rung: int) -> None:
        enc = self._encoders[skey]
        run = self._sim.rec.run_for(enc["params"])
        encoder = self._sim.rec.encoders.get(run.key)
        last = rung == len(self._rungs) - 1
        start = self._rungs[enc["rung"]] if enc["rung"] >= 0 else 0
        until = self._rungs[rung]
        out = {"key": run.key, "epoch": until, "complete": last, "probes": []}
        if not last:
            value = encoder.probes.get((self._probe, until))
            if value is None:
                raise NotReplayable(f"no {self._probe} probe at pre-training epoch {until} for "
                                    f"encoder {run.key}")
            out["probes"] = [{"probe": self._probe, "value": value}]
        seconds = encoder.seconds(start, until) + (0.0 if last else encoder.probe_s)
        self._jobs[skey] = self._sim.start_job(seconds, until - start, out)
        enc.update(status="training", target=rung)

    def _collect(self) -> None:
        for skey in [s for s, job in self._jobs.items() if job["done"]]:
            job = self._jobs.pop(skey)
            self._record(skey, self._encoders[skey], job["out"])

    def _record(self, skey: str, enc: dict, out: dict) -> None:
        enc.setdefault("segments", [{}])
        super()._record(skey, enc, out)

    def _save(self) -> None:  # a replay writes nothing
        pass


class Simulation:
    """Tune's loop on a clock: trials and jobs in ``rec.n_parallel`` slots."""

    def __init__(self, rec: Recorded, searcher, scheduler, num_samples: int, staged: bool):
        self.rec, self.searcher, self.scheduler = rec, searcher, scheduler
        self.num_samples, self.staged = num_samples, staged
        self.now, self.free = 0.0, rec.n_parallel
        self.events: list = []
        self.seq = itertools.count()
        self.queue: list[dict] = []  # jobs waiting for a slot
        self.out = Outcome()
        self.created, self.live = 0, 0
        self.encoder_ready: dict[str, float] = {}  # inline pre-training: key -> ready time

    def start_job(self, seconds: float, epochs: int, out: dict) -> dict:
        job = {"seconds": seconds, "epochs": epochs, "out": out, "done": False}
        self.queue.append(job)
        self._start_jobs()
        return job

    def _start_jobs(self) -> None:
        while self.queue and self.free > 0:
            job = self.queue.pop(0)
            self.free -= 1
            self.out.cost_device_s += job["seconds"] * self.rec.devices
            self.out.pretrain_epochs += job["epochs"]
            self._at(self.now + job["seconds"], "job", job)

    def _at(self, t: float, kind: str, payload) -> None:
        heapq.heappush(self.events, (t, next(self.seq), kind, payload))

    def _start_trial(self, trial_id: str, config: dict) -> None:
        run = self.rec.run_for(config)
        self.free -= 1
        self.live += 1
        self.created += 1
        if self.scheduler is not None:
            self.scheduler.on_trial_add(None, SimpleNamespace(trial_id=trial_id))
        ready = self.now
        if not self.staged and run.key is not None:  # inline pre-training, or waiting for it
            if run.key not in self.encoder_ready:
                enc = self.rec.encoders.get(run.key)
                seconds = enc.seconds(0, enc.full) if enc else 0.0
                self.encoder_ready[run.key] = self.now + seconds
                self.out.cost_device_s += seconds * self.rec.devices
                self.out.pretrain_epochs += enc.full if enc else 0
            ready = max(ready, self.encoder_ready[run.key])
        t = {"id": trial_id, "run": run, "epoch": 0, "best": -math.inf, "params": config}
        self._at(ready + run.epoch_time(1), "epoch", t)

    def _epoch(self, t: dict) -> None:
        run, t["epoch"] = t["run"], t["epoch"] + 1
        e = t["epoch"]
        self.out.cost_device_s += run.epoch_time(e) * self.rec.devices
        self.out.finetune_epochs += 1
        if e <= len(run.curve):
            v = run.curve[e - 1]
            t["best"] = max(t["best"], v) if math.isfinite(v) else t["best"]
        else:
            self.out.censored_epochs += 1
        result = {"epoch": e, METRIC: t["best"], "training_iteration": e}
        stop = e >= run.planned
        if self.scheduler is not None and not stop:
            stop = self.scheduler.on_trial_result(None, SimpleNamespace(trial_id=t["id"]),
                                                  result) == "STOP"
        self.searcher.on_trial_result(t["id"], result)
        if not stop:
            self._at(self.now + run.epoch_time(e + 1), "epoch", t)
            return
        if self.scheduler is not None:
            self.scheduler.on_trial_complete(None, SimpleNamespace(trial_id=t["id"]), result)
        self.searcher.on_trial_complete(t["id"], result=result)
        self.out.trials.append({"params": t["params"], "value": t["best"], "epochs": e})
        self.free += 1
        self.live -= 1

    def _fill(self) -> bool:
        """Start what Tune would start now; False once the searcher is finished."""
        while self.free > 0 and (self.staged or self.created < self.num_samples):
            trial_id = f"r{self.created:05d}_{next(self.seq)}"
            config = self.searcher.suggest(trial_id)
            if config == Searcher.FINISHED:
                return False
            if config is None:
                break
            self._start_trial(trial_id, config)
        return self.staged or self.created < self.num_samples

    def run(self) -> Outcome:
        more = self._fill()
        while self.events:
            self.now, _, kind, payload = heapq.heappop(self.events)
            if kind == "job":
                payload["done"] = True
                self.free += 1
                self._start_jobs()
            else:
                self._epoch(payload)
            if more:
                more = self._fill()
        self.out.makespan_s = self.now
        return self.out


def replay_once(rec: Recorded, loaded, seed: int, num_samples: int) -> Outcome:
    """One search of the strategy ``loaded`` (a spec variant) with searcher seed ``seed``."""
    from explorer.search.tuning import build_scheduler, build_searcher

    inner = build_searcher(loaded, None, f"replay-{seed}")
    out = Outcome()
    searcher = RecordedOnly(inner, rec, out)
    scheduler = build_scheduler(loaded)
    if scheduler is not None:
        scheduler.set_search_properties(METRIC, MODE)
    pre = loaded.spec.search.pretraining
    sim = Simulation(rec, searcher, scheduler, num_samples, staged=pre.staged)
    sim.out = out
    if pre.staged:
        fid = pre.fidelity
        fidelity = None if fid is None else {
            "rungs": fid.epochs(int(rec.base_recipe["pretrain"]["epochs"])), "probe": fid.probe,
            "reduction_factor": fid.reduction_factor}
        sim.searcher = ReplayStage(searcher, base_recipe=rec.base_recipe, run="replay",
                                   run_dir=rec.run_dir, store=None, data=None,
                                   num_samples=num_samples, max_concurrent=rec.n_parallel,
                                   fidelity=fidelity, sim=sim)
    return sim.run()


__all__ = ["NotReplayable", "Outcome", "replay_once", "stage_key"]
