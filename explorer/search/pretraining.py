"""Pre-training as its own stage of the search, optionally multi-fidelity.

``PretrainStage`` sits between Tune and the Optuna searcher. It asks Optuna for a recipe, and
before Tune sees it, trains the recipe's encoder as its own Ray job (a task holding the
recipe's CPUs/GPUs); the recipe becomes a Tune trial only once its encoder is in the cache, so
a fine-tuning trial never holds a slot while an encoder trains (``ensure_encoder`` then finds
the encoder and reuses it). Recipes that share an encoder (same pre-training inputs) share one
job. The cache, its key and its lock are the ones trials use (``explorer.train.staged``).

With ``search.pretraining.fidelity``, each encoder is trained to the first milestone and its
frozen features probed; promotion-based ASHA (Li et al. 2020) then continues an encoder from
its checkpoint to the next milestone when it is in the top ``1/reduction_factor`` of the
encoders that reached its milestone, preferring promotions over new recipes. Encoders never
promoted are told to Optuna as PRUNED (their probe score as the intermediate value) once the
search has drawn its ``num_samples`` recipes. If then no encoder reached the full budget, the
best at the highest milestone is promoted (a search must end with a fine-tuned recipe).
``num_samples`` counts recipes drawn, stopped ones included: the same budget as without.

The stage's record, ``<experiment>/pretraining.json``, lists every recipe, its encoder, the
milestones it reached and their probe scores (the results store reads it).
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from explorer.names import METRIC
from explorer.results.cost import STAGE_OWNER
from explorer.results.store import STAGE_FILE
from explorer.spec.recipes import config_hash, set_path
from explorer.spec.search_spec import PRETRAIN_SECTIONS


def _segment(job: dict, until: int | None, probes: tuple[str, ...]) -> dict:
    """A Ray task: one segment of an encoder's pre-training (``explorer.train.staged``)."""
    from explorer.data.prepare import receive
    from explorer.spec.recipes import build_recipe
    from explorer.train.session import LocalSession
    from explorer.train.staged import pretrain_segment

    recipe = build_recipe(job["recipe"])
    data = receive(job.get("data"), recipe.data)
    return pretrain_segment(recipe, data, job["store"], LocalSession(job["owner"]), until,
                            probes, owner=job["owner"])


def _recipe(base: dict, params: dict) -> dict:
    """The trial's recipe dict (as ``explorer.search.trial.trial_recipe_dict``)."""
    d = copy.deepcopy(base)
    for path, value in params.items():
        set_path(d, path, value)
    return d


def stage_key(recipe: dict) -> str:
    """Recipes with equal pre-training sections train the same encoder (the data, its split
    and the workers are the run's, so equal here means equal cache keys)."""
    return config_hash({k: recipe.get(k) for k in PRETRAIN_SECTIONS}, n=16)


class PretrainStage(Searcher):
    """A Tune searcher wrapping ``searcher`` (it must be reachable as ``.searcher``: Tune saves
    and restores wrapped searchers through that attribute and ``get_state``)."""

    def __init__(self, searcher: Searcher, *, base_recipe: dict, run: str, run_dir: Path,
                 store, data, num_samples: int, max_concurrent: int,
                 fidelity: dict | None = None):
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher = searcher
        self._base, self._run, self._dir = base_recipe, run, str(run_dir)
        self._store, self._data = store, data
        self._num_samples, self._n = num_samples, max(1, max_concurrent)
        epochs = int(base_recipe["pretrain"]["epochs"])
        f = fidelity or {}
        self._rungs: list[int] = f.get("rungs") or [epochs]
        self._eta = float(f.get("reduction_factor", 3))
        self._probe: str | None = f.get("probe")
        self._configs: list[dict] = []  # {id, params, skey, status, trial_id}
        self._encoders: dict[str, dict] = {}  # skey -> {rung, scores, status, key, target}
        self._live: dict[str, str] = {}  # Tune trial id -> inner id
        self._jobs: dict[str, Any] = {}  # skey -> ObjectRef (never pickled)
        self._done = False

    # -- Tune's side ------------------------------------------------------------------------
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str):
        self._collect()
        ready = next((c for c in self._configs if c["status"] == "ready"), None)
        if ready is None and self._busy() < self._n and not self._promote():
            self._draw()  # a recipe whose encoder is in the cache is ready at once
            ready = next((c for c in self._configs if c["status"] == "ready"), None)
        if ready is not None:
            ready.update(status="handed", trial_id=trial_id, handed_at=time.time())
            self._tag(ready["id"], trial_id)
            self._live[trial_id] = ready["id"]
            self._save()
            return ready["params"]
        if self._jobs or self._drawing() or any(map(self._promotable, self._rungs_below())):
            return None
        return Searcher.FINISHED if self._finish() else None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._live:
            self.searcher.on_trial_result(self._live[trial_id], result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        inner = self._live.pop(trial_id, None)
        if inner is not None:
            self.searcher.on_trial_complete(inner, result=result, error=error)

    def get_state(self) -> dict:
        return copy.deepcopy({k: v for k, v in self.__dict__.items()
                              if k not in ("searcher", "_jobs")})

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)
        self._jobs = {}
        for enc in self._encoders.values():  # a job lost with the driver: run it again
            if enc["status"] == "training":
                enc["status"] = "relaunch"

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_jobs"} | {"_jobs": {}}

    # -- the stage --------------------------------------------------------------------------
    def _tag(self, inner: str, trial_id: str | None) -> None:
        if hasattr(self.searcher, "tag_trial"):  # the journal names the Tune trial, if any
            self.searcher.tag_trial(inner, trial_id)

    def _busy(self) -> int:
        """Slots taken: running trials, recipes ready for Tune, and each training encoder
        (once, or once per recipe waiting for it: they will all become trials)."""
        waiting: dict[str, int] = {}
        for c in self._configs:
            if c["status"] == "waiting" and self._encoders[c["skey"]]["status"] == "training":
                waiting[c["skey"]] = waiting.get(c["skey"], 0) + 1
        ready = sum(c["status"] == "ready" for c in self._configs)
        return len(self._live) + ready + sum(waiting.values())

    def _drawing(self) -> bool:
        return not self._done and len(self._configs) < self._num_samples

    def _rungs_below(self) -> range:
        return range(len(self._rungs) - 1)

    def _draw(self) -> None:
        """Ask the inner searcher for a new recipe and start (or join) its encoder's job."""
        if not self._drawing():
            return
        inner = f"pre_{len(self._configs):05d}"
        params = self.searcher.suggest(inner)
        if params is None:
            return
        if params == Searcher.FINISHED:  # a bounded space tried in full
            self._num_samples = len(self._configs)
            return
        self._tag(inner, None)  # not a Tune trial (yet): never one the journal must restore
        skey = stage_key(_recipe(self._base, params))
        self._configs.append({"id": inner, "params": params, "skey": skey,
                              "status": "waiting", "trial_id": None})
        enc = self._encoders.get(skey)
        if enc is None:
            self._encoders[skey] = enc = {"rung": -1, "scores": {}, "status": "paused",
                                          "key": None, "params": params}
            self._launch(skey, 0)
        elif enc["status"] == "complete":
            self._configs[-1]["status"] = "ready"
        elif enc["status"] == "failed":
            self._close(skey, error=True)
        self._save()

    def _launch(self, skey: str, rung: int) -> None:
        import ray

        enc = self._encoders[skey]
        recipe = _recipe(self._base, enc["params"])
        r = recipe["resources"]
        task = ray.remote(num_cpus=r["cpus_per_worker"], num_gpus=r.get("gpus_per_worker") or 0,
                          max_retries=1)(_segment)
        last = rung == len(self._rungs) - 1
        job = {"recipe": recipe, "data": self._data, "store": self._store,
               "owner": STAGE_OWNER.format(run=self._run)}
        probes = () if last or self._probe is None else (self._probe,)
        self._jobs[skey] = task.remote(job, None if last else self._rungs[rung], probes)
        enc.update(status="training", target=rung)
        enc.setdefault("segments", []).append({"rung": rung, "launched": time.time()})

    def _collect(self) -> None:
        """Take in finished jobs; relaunch those a restored driver lost."""
        import ray

        for skey, enc in self._encoders.items():
            if enc["status"] == "relaunch":
                self._launch(skey, enc["target"])
        if not self._jobs:
            return
        refs = list(self._jobs.values())
        finished, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for skey in [s for s, ref in self._jobs.items() if ref in finished]:
            ref, enc = self._jobs.pop(skey), self._encoders[skey]
            try:
                out = ray.get(ref)
            except Exception as exc:  # a failed pre-training fails its recipes, not the search
                from explorer.errors import error_line

                print(f"pre-training stage: encoder for {enc['params']} failed: "
                      f"{error_line(exc, last=True, limit=300)}", flush=True)
                enc["status"] = "failed"
                self._close(skey, error=True)
                continue
            self._record(skey, enc, out)
        self._save()

    def _record(self, skey: str, enc: dict, out: dict) -> None:
        enc["key"] = out["key"]
        enc["segments"][-1]["collected"] = time.time()
        enc["rung"] = len(self._rungs) - 1 if out["complete"] else enc["target"]
        value = next((p["value"] for p in out["probes"] if p["probe"] == self._probe), None)
        if not out["complete"] and value is not None:
            enc["scores"][str(enc["rung"])] = value
        if out["complete"]:
            enc["status"] = "complete"
            for c in self._configs:
                if c["skey"] == skey and c["status"] == "waiting":
                    c["status"] = "ready"
        else:
            enc["status"] = "paused"
            print(f"pre-training stage: encoder {out['key']} at epoch {out['epoch']}, "
                  f"{self._probe} probe {value:.3f}", flush=True)

    def _promotable(self, rung: int) -> list[str]:
        """Paused encoders at ``rung`` in its top ``1/eta`` (ASHA's rule), best first."""
        at = [(e["scores"][str(rung)], s) for s, e in self._encoders.items()
              if str(rung) in e["scores"] and not math.isnan(e["scores"][str(rung)])]
        at.sort(reverse=True)
        top = at[: int(len(at) / self._eta)]
        return [s for _, s in top if self._encoders[s]["status"] == "paused"
                and self._encoders[s]["rung"] == rung]

    def _promote(self, force: bool = False) -> bool:
        for rung in range(len(self._rungs) - 2, -1, -1):
            todo = self._promotable(rung)
            if not todo and force:
                todo = [s for _, s in sorted(
                    (e["scores"].get(str(rung), -1.0), s) for s, e in self._encoders.items()
                    if e["status"] == "paused" and e["rung"] == rung)][-1:]
            if todo:
                self._launch(todo[0], rung + 1)
                self._save()
                return True
        return False

    def _finish(self) -> bool:
        """Called with every recipe drawn and no job running or promotable: True when the
        stage has nothing left (the recipes of encoders never promoted told PRUNED)."""
        self._done = True
        if not any(e["status"] == "complete" for e in self._encoders.values()) and \
                self._promote(force=True):
            return False
        for skey, enc in self._encoders.items():
            if enc["status"] == "paused":
                enc["status"] = "stopped"
                self._close(skey, error=False)
        self._save()
        return True

    def _close(self, skey: str, error: bool) -> None:
        """Tell Optuna the recipes of a stopped encoder PRUNED, with its last probe score as
        the intermediate value at its pre-training epoch (its rank among pruned trials), or
        of a failed one FAIL. Only stopped recipes get one: a fine-tuned trial's intermediate
        values are its epochs, and the two would share steps."""
        enc = self._encoders[skey]
        rung = enc["rung"]
        value = enc["scores"].get(str(rung)) if rung >= 0 else None
        for c in self._configs:
            if c["skey"] == skey and c["status"] == "waiting":
                c["status"] = "failed" if error else "stopped"
                if not error and value is not None:
                    self.searcher.on_trial_result(c["id"], {METRIC: value, "training_iteration":
                                                            self._rungs[rung]})
                self.searcher.on_trial_complete(c["id"], result=None, error=error)

    def _save(self) -> None:
        from explorer.storage import atomic_write_json

        record = {"rungs": self._rungs, "probe": self._probe, "reduction_factor": self._eta,
                  "updated": time.time(),
                  "configs": [{**c, "key": self._encoders[c["skey"]]["key"],
                               "encoder": {k: v for k, v in self._encoders[c["skey"]].items()
                                           if k != "params"}} for c in self._configs]}
        atomic_write_json(Path(self._dir) / STAGE_FILE, record)


def stage_searcher(ctx, searcher: Searcher, part_dir: Path, num_samples: int,
                   n_parallel: int) -> PretrainStage:
    """The search part's searcher inside a pre-training stage (``ctx``: the ``RunContext``)."""
    fid = ctx.loaded.spec.search.pretraining.fidelity
    fidelity = None
    if fid is not None:
        fidelity = {"rungs": fid.epochs(ctx.base.pretrain.epochs), "probe": fid.probe,
                    "reduction_factor": fid.reduction_factor}
    return PretrainStage(searcher, base_recipe=ctx.base_dict, run=ctx.exp.name,
                         run_dir=part_dir, store=ctx.exp.store, data=ctx.shipped,
                         num_samples=num_samples, max_concurrent=n_parallel, fidelity=fidelity)


def drawn(part_dir: Path) -> int:
    """Recipes the stage of the search part in ``part_dir`` drew, stopped ones included (0
    without a stage)."""
    from explorer.storage import read_json

    return len((read_json(Path(part_dir) / STAGE_FILE, {}) or {}).get("configs", []))
