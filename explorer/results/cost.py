"""What each trial and each encoder cost, in device-seconds (GPU-hours where GPUs were used).

A device is what a worker reserves: a GPU when the recipe asks for GPUs, else a CPU core. A
stretch of training costs its wall time x the devices it held (workers x devices per worker).

Two costs answer two questions:

- **What this search spent** (``cost_device_s``): the trial's fine-tuning plus its *share* of
  the pre-training this search paid for. An encoder is charged to the search whose trial (or
  pre-training stage) trained it, divided evenly among the search's trials that used it; an
  encoder found in the cache from an earlier search costs this search nothing. Summed over the
  trials, plus the encoders multi-fidelity pre-training stopped (used by no trial), it is the
  search's whole training spend: the number a user compares between strategies.
- **What the recipe costs** (``recipe_device_s``): its whole pre-training (whoever paid) plus
  its fine-tuning at the full planned epochs. This is a property of the recipe, not of the
  search's history, so it is what a multi-objective search trades against AUC and what "the
  best recipe within a budget" is measured in.

The clock is the loops' own: fine-tuning epochs' ``epoch_time_s`` (training and validation)
and pre-training segments' wall time plus their probes. Start-up and waiting are not training
and are not charged (the pre-training stage exists so that nothing waits holding a device).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from explorer.storage import read_json

#: Who trained an encoder in the pre-training stage of the search ``run``.
STAGE_OWNER = "pretraining stage of {run}"


def devices(recipe: dict) -> tuple[str, float]:
    """("GPU" | "CPU", devices one run of ``recipe`` holds)."""
    r = recipe.get("resources", {}) or {}
    workers = float(r.get("workers", 1) or 1)
    gpus = float(r.get("gpus_per_worker", 0) or 0)
    if gpus:
        return "GPU", workers * gpus
    return "CPU", workers * float(r.get("cpus_per_worker", 1) or 1)


def encoder_cost(enc_dir: Path, run: str, trial_ids: set[str]) -> dict:
    """One encoder's cost in seconds of its workers' wall time (multiply by their devices):
    ``total_s`` (all of it), ``here_s`` (what the search ``run`` paid), the pre-training epochs
    of each, and whether it is complete."""
    meta = read_json(enc_dir / "meta.json", {}) or {}
    segments = read_json(enc_dir / "segments.json", []) or []
    losses = read_json(enc_dir / "losses.json", []) or []
    complete = bool(meta)  # written with encoder.pt (a remote mirror may lack the weights)
    ours = {STAGE_OWNER.format(run=run), *trial_ids}
    if segments:  # staged: each segment was paid by whoever ran it
        total = sum(s["wall_s"] + s.get("probe_s", 0.0) for s in segments)
        here = sum(s["wall_s"] + s.get("probe_s", 0.0) for s in segments if s.get("by") in ours)
        reached, epochs_here = 0, 0
        for s in segments:
            if s.get("by") in ours:
                epochs_here += max(0, s["until"] - reached)
            reached = max(reached, s["until"])
    else:  # pre-trained by a trial in one go (explorer.train.pretrain.ensure_encoder)
        total = float(meta.get("wall_time_s") or sum(e.get("time_s", 0.0) for e in losses))
        mine = meta.get("trained_by") in ours
        here, epochs_here = (total, len(losses)) if mine else (0.0, 0)
    return {"total_s": total, "here_s": here, "epochs": len(losses),
            "epochs_here": epochs_here, "complete": complete}


def add_trial_costs(trials: pd.DataFrame, epochs: pd.DataFrame, encoders: pd.DataFrame,
                    recipes: dict[str, dict], cached: set[str] = frozenset()) -> pd.DataFrame:
    """``trials`` with cost columns: device, finetune_device_s, pretrain_device_s,
    pretrain_share_device_s, cost_device_s, recipe_device_s, gpu_hours.

    ``encoders``: the encoders table with ``device_s`` and ``here_device_s``; ``recipes``:
    trial id -> its recipe (for its devices); ``cached``: runs found in the cache (baselines
    an earlier search trained), which cost this search nothing.
    """
    out = trials.copy()
    if out.empty:
        return out
    ft_s = (epochs.groupby("trial_id")["epoch_time_s"].sum()
            if not epochs.empty and "epoch_time_s" in epochs else pd.Series(dtype=float))
    enc = encoders.set_index("pretrain_key") if not encoders.empty else pd.DataFrame()
    users = out[out["kind"] == "recipe"].groupby("pretrain_key")["trial_id"].count()
    rows = []
    for r in out.itertuples():
        kind, n = devices(recipes.get(r.trial_id, {}))
        finetune = float(ft_s.get(r.trial_id, 0.0)) * n
        key = r.pretrain_key if isinstance(r.pretrain_key, str) else None
        pre_total = share = 0.0
        if key is not None and key in enc.index:
            pre_total = float(enc.at[key, "device_s"])
            share = float(enc.at[key, "here_device_s"]) / max(1, int(users.get(key, 1)))
        run, planned = int(r.epochs_run or 0), int(r.epochs_planned or 0)
        full_ft = finetune / run * planned if run else None
        spent = 0.0 if r.trial_id in cached else finetune + share
        rows.append({"device": kind, "finetune_device_s": finetune,
                     "pretrain_device_s": pre_total, "pretrain_share_device_s": share,
                     "cost_device_s": spent,
                     "recipe_device_s": None if full_ft is None else pre_total + full_ft,
                     "gpu_hours": spent / 3600 if kind == "GPU" else None})
    return pd.concat([out.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def search_cost(trials: pd.DataFrame, encoders: pd.DataFrame) -> dict:
    """The search's whole spend: its trials (recipes and baselines) and the encoders it
    pre-trained that no trial used (stopped by multi-fidelity pre-training)."""
    if trials.empty or "cost_device_s" not in trials:
        return {}
    used = set(trials["pretrain_key"].dropna())
    unused = encoders[~encoders["pretrain_key"].isin(used)] if not encoders.empty else encoders
    recipes = trials[trials["kind"] == "recipe"]
    stopped = float(unused["here_device_s"].sum()) if len(unused) else 0.0
    return {
        "device": str(recipes["device"].iloc[0]) if len(recipes) else None,
        "recipes_device_s": float(recipes["cost_device_s"].sum()),
        "baselines_device_s": float(trials.loc[trials["kind"] == "baseline",
                                               "cost_device_s"].sum()),
        "stopped_encoders_device_s": stopped,
        "pretrain_device_s": float(encoders["here_device_s"].sum()) if len(encoders) else 0.0,
        "pretrain_epochs": int(encoders["epochs_here"].sum()) if len(encoders) else 0,
        "finetune_epochs": int(recipes["epochs_run"].sum()),
        "total_device_s": float(trials["cost_device_s"].sum()) + stopped,
    }
