"""A finished search as a table of recorded runs: what a replayed strategy can look up.

Each distinct configuration the search trained gives its validation curve, its fine-tuning
epoch times and its encoder; each encoder gives its pre-training epoch times and its probe
scores at milestones. A replayed strategy may only pick recorded configurations, and may only
run a trial as far as it was recorded: a trial ASHA stopped in the real search has no later
epochs, so a strategy that runs it further gets its last recorded score and the mean epoch
time for the missing epochs, and the replay counts those epochs as *censored*.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from explorer.errors import UserError
from explorer.results import load_results
from explorer.results.cost import devices
from explorer.search.resources import concurrency
from explorer.search.space import config_key
from explorer.spec import LoadedSpec
from explorer.spec.load import validate_spec


@dataclass
class Run:
    """One recorded configuration."""

    params: dict
    trial_id: str
    key: str | None  # its encoder
    curve: list[float]  # validation mean AUC per fine-tuning epoch, as recorded
    epoch_s: list[float]  # seconds per fine-tuning epoch, as recorded
    planned: int
    mean_epoch_s: float = 0.0  # of every recorded epoch: for a recipe never fine-tuned

    def epoch_time(self, epoch: int) -> float:
        """Seconds of 1-based ``epoch`` (the mean recorded epoch beyond the record)."""
        if epoch <= len(self.epoch_s):
            return self.epoch_s[epoch - 1]
        return sum(self.epoch_s) / len(self.epoch_s) if self.epoch_s else self.mean_epoch_s

    @property
    def true_value(self) -> float:
        """The best validation mean AUC the record shows (what the search selects on)."""
        finite = [v for v in self.curve if isinstance(v, float) and math.isfinite(v)]
        return max(finite) if finite else float("nan")


@dataclass
class Encoder:
    epoch_s: list[float]  # as recorded: fewer than ``full`` if it was stopped
    full: int  # the recipe's pre-training epochs
    probes: dict[tuple[str, int], float] = field(default_factory=dict)
    probe_s: float = 0.0  # mean seconds of one probe

    def seconds(self, start: int, end: int) -> float:
        """Pre-training seconds of epochs ``start + 1`` .. ``end`` (the mean recorded epoch
        for epochs a stopped encoder never trained)."""
        mean = sum(self.epoch_s) / len(self.epoch_s) if self.epoch_s else 0.0
        return float(sum(self.epoch_s[start:end])) + mean * max(0, end - max(start,
                                                                            len(self.epoch_s)))


@dataclass
class Recorded:
    """A finished search, ready to be replayed."""

    run_dir: Path
    loaded: LoadedSpec
    params: dict[str, dict]  # the searched space (explorer.search.space form)
    runs: dict[str, Run]  # config key -> run
    encoders: dict[str, Encoder]
    devices: float  # per trial or pre-training job
    n_parallel: int
    base_recipe: dict
    real: dict  # the real search: cost, pre-training epochs, best configuration

    def run_for(self, params: dict) -> Run | None:
        return self.runs.get(config_key(params, self.params))


def _runs(res, params: dict[str, dict]) -> dict[str, Run]:
    trials = res.trials[res.trials["kind"] == "recipe"]
    epochs = res.epochs
    out: dict[str, Run] = {}
    for _, t in trials.iterrows():
        cfg = {p: t[f"param/{p}"] for p in params if pd.notna(t.get(f"param/{p}"))}
        cfg = {k: (v.item() if hasattr(v, "item") else v) for k, v in cfg.items()}
        e = epochs[epochs["trial_id"] == t["trial_id"]].sort_values("epoch")
        key = t["pretrain_key"] if isinstance(t["pretrain_key"], str) else None
        run = Run(cfg, t["trial_id"], key, [float(v) for v in e["val_mean_auc"]],
                  [float(v) for v in e["epoch_time_s"].fillna(0.0)], int(t["epochs_planned"]))
        k = config_key(cfg, params)
        if k not in out or len(run.curve) > len(out[k].curve):  # a retried trial: the longest
            out[k] = run
    # recipes multi-fidelity pre-training stopped: an encoder, no fine-tuning on record
    planned = int(trials["epochs_planned"].max()) if len(trials) else 0
    for c in res.meta.get("stage") or []:
        k = config_key(c["params"], params)
        if k not in out and c.get("key"):
            out[k] = Run(c["params"], "", c["key"], [], [], planned)
    mean = float(epochs["epoch_time_s"].mean()) if len(epochs) else 0.0
    for run in out.values():
        run.mean_epoch_s = mean
    return out


def _encoders(res, n_devices: float, full: int) -> dict[str, Encoder]:
    """Each encoder's epoch times, scaled so that they add up to the training time the results
    store charged for it (``explorer.results.cost``: segments' or the run's wall time, set-up
    included), so that a replay of the same choices costs what the search cost."""
    out = {}
    ee, probes = res.encoder_epochs, res.encoder_probes
    for key, g in (ee.groupby("pretrain_key") if not ee.empty else []):
        g = g.sort_values("epoch")
        times = [float(x) for x in g["time_s"]] if "time_s" in g else []
        p = probes[probes["pretrain_key"] == key] if not probes.empty else probes
        row = res.encoders[res.encoders["pretrain_key"] == key]
        total = None
        if len(row) and "device_s" in row and pd.notna(row["device_s"].iloc[0]):
            total = float(row["device_s"].iloc[0]) / n_devices - float(
                p["time_s"].sum() if len(p) else 0.0)
        elif len(row) and pd.notna(row["wall_time_s"].iloc[0]):
            total = float(row["wall_time_s"].iloc[0])
        if not times or any(pd.isna(x) for x in times):
            times = [1.0] * len(g)
        if total is not None and sum(times) > 0:
            times = [t * total / sum(times) for t in times]
        enc = Encoder(times, full)
        if len(p):
            enc.probes = {(r.probe, int(r.epoch)): float(r.value) for r in p.itertuples()}
            enc.probe_s = float(p["time_s"].mean())
        out[key] = enc
    return out


def _real(res, runs: dict[str, Run]) -> dict:
    cost = res.meta.get("cost") or {}
    rec = res.trials[(res.trials["kind"] == "recipe") & res.trials["val_mean_auc"].notna()]
    best = rec.sort_values("val_mean_auc", ascending=False).head(1)
    best_id = best["trial_id"].iloc[0] if len(best) else None
    best_params = next((r.params for r in runs.values() if r.trial_id == best_id), None)
    spent = cost.get("recipes_device_s", 0.0) + cost.get("stopped_encoders_device_s", 0.0)
    return {"cost_device_s": spent if cost else None,
            "pretrain_epochs": cost.get("pretrain_epochs"),
            "finetune_epochs": cost.get("finetune_epochs"),
            "best_params": best_params,
            "best_value": float(best["val_mean_auc"].iloc[0]) if len(best) else None,
            "trials": len(res.trials[res.trials["kind"] == "recipe"])}


def load_recorded(run_dir: str | Path) -> Recorded:
    """Read a finished search's results store (``explorer.results``)."""
    from explorer.search.tuning import space_params

    res = load_results(run_dir)
    spec = res.meta.get("spec")
    if not isinstance(spec, dict):
        raise UserError(f"{run_dir}: results/meta.json holds no search spec to replay")
    # A multi-objective search (auc, cost) is replayed on AUC: the strategies compared are
    # single-objective, and each one's cost is what the replay adds up anyway.
    search = {**(spec.get("search") or {}), "objective": ["auc"]} \
        if isinstance(spec.get("search"), dict) else spec.get("search")
    loaded = validate_spec({**spec, "search": search}, f"{run_dir}/results/meta.json (spec)")
    params = space_params(loaded)
    runs = _runs(res, params)
    if not any(r.curve for r in runs.values()):  # no recipe fine-tuned for an epoch
        raise UserError(f"{run_dir}: the search recorded no trained recipe to replay")
    base = res.meta.get("base_recipe") or loaded.base.model_dump(mode="json")
    cluster = (res.meta.get("hardware") or {}).get("ray_cluster") or {"CPU": 1}
    n = concurrency(loaded.base, cluster, loaded.spec.search.max_concurrent)
    n_devices = devices(base)[1]
    encoders = _encoders(res, n_devices, int(base["pretrain"]["epochs"]))
    return Recorded(Path(run_dir), loaded, params, runs, encoders, n_devices, n, base,
                    _real(res, runs))


def describe(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) if params else "-"


def as_json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)
