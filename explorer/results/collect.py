"""Gathering trial records into the results store (``explorer.results.store``) after a search.

Reads only files: each trial's artifacts folder, the shared encoder and baseline caches, and the
trial states Tune reported. The report is then built from the tables written here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.metrics import per_class_auc
from explorer.names import ENCODER_PROBES
from explorer.results.cost import add_trial_costs, devices, encoder_cost, search_cost
from explorer.results.store import PARAM_PREFIX, STAGE_FILE, write_results
from explorer.storage import ENCODERS, Store, as_store, read_json
from explorer.train.artifacts import TrialArtifacts


def trial_status(state: dict, summary: dict | None) -> str:
    if state.get("missing"):  # finished, but its record was deleted: not a failure
        return "missing"
    if state.get("status") == "ERROR":
        return "failed"
    if state.get("status") not in (None, "TERMINATED"):
        return "running"
    if not summary or not summary.get("epochs_run"):
        return "failed"
    if summary["epochs_run"] < summary["epochs_planned"]:
        return "stopped_early"
    return "completed"


def _nan_to_none(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _wall_time(started: float | None, done: dict | None, summary: dict | None) -> float | None:
    """From the trial's start (pre-training included) to its last finished epoch."""
    end = (done or {}).get("finished") or (summary or {}).get("updated")
    return end - started if end and started else None


def start_columns(start: dict | None) -> dict:
    """What the model started from (``explorer.train.starts``), flat for the trials table."""
    start = start or {}
    return {"start_method": start.get("method"), "start_text": start.get("text"),
            "start_data": start.get("data"), "start_images": start.get("images"),
            "start_sources": ",".join(start.get("sources") or []) or None,
            "start_init": start.get("init")}


def _record(art: TrialArtifacts, trial_id: str, kind: str, label: str, state: dict,
            searched: list[str]) -> tuple[dict, list[dict], list[pd.DataFrame]]:
    cfg = art.read_json("config.json", {}) or {}
    summary = art.read_json("summary.json")
    history = art.read_json("history.json", []) or []
    enc = art.read_json("encoder.json", {}) or {}
    done = art.read_json("done.json")
    recipe = cfg.get("recipe", {})
    params = cfg.get("params", {})
    started = cfg.get("started")
    row = {
        "trial_id": trial_id, "kind": kind, "label": label,
        "arch": recipe.get("model", {}).get("arch"),
        "status": trial_status(state, summary), "error": state.get("error"),
        "epochs_run": int((summary or {}).get("epochs_run") or 0),
        "epochs_planned": int((summary or {}).get("epochs_planned")
                              or recipe.get("finetune", {}).get("epochs") or 0),
        "best_epoch": (summary or {}).get("best_epoch"),
        "val_mean_auc": _nan_to_none((summary or {}).get("val_mean_auc")),
        "test_mean_auc": None, "finalist": False, "seed": recipe.get("seed"),
        "wall_time_s": _wall_time(started, done, summary),
        "config_hash": cfg.get("config_hash"), "config_json": json.dumps(recipe, sort_keys=True),
        "pretrain_key": enc.get("key"), "pretrain_role": enc.get("role", "none"),
        "resumes": len(art.read_json("resumes.json", []) or []),
        **start_columns(enc.get("start")),
    }
    for p in searched:
        row[PARAM_PREFIX + p] = params.get(p)
    epochs = [{"trial_id": trial_id, "epoch": h["epoch"], "val_mean_auc": h["val_mean_auc"],
               "train_loss": h["train_loss"], "lr": h["lr"],
               "epoch_time_s": h.get("epoch_time_s")} for h in history]
    preds = []
    for split in ("val", "test"):
        df = art.read_predictions(split)
        if df is not None:
            preds.append(df.assign(trial_id=trial_id, split=split))
    return row, epochs, preds


def _class_rows(preds: pd.DataFrame, labels: pd.DataFrame, findings: list[str]) -> list[dict]:
    rows = []
    for (trial_id, split), df in preds.groupby(["trial_id", "split"], sort=False):
        lab = labels[labels["split"] == split].set_index("image_id").loc[df["image_id"]]
        table = per_class_auc(lab[findings].to_numpy(), df[findings].to_numpy(), findings)
        for r in table.itertuples():
            rows.append({"trial_id": trial_id, "split": split, "finding": r.finding,
                         "auc": r.auc, "positives": int(r.positives),
                         "negatives": int(r.negatives)})
    return rows


def labels_frame(data) -> pd.DataFrame:
    frames = []
    for split in (data.val, data.test):
        df = pd.DataFrame({"split": split.name, "image_id": split.image_ids.astype(str),
                           "patient_id": split.patient_ids.astype(str)})
        for j, f in enumerate(data.findings):
            df[f] = split.labels[:, j].astype(np.int8)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _encoders(store: Store, keys: list[str], run: str, trial_ids: set[str], n_devices: float
              ) -> tuple[pd.DataFrame, ...]:
    """encoders, encoder_epochs, reconstructions and encoder_probes tables (``cost``: what
    each encoder cost, and what the search ``run`` paid of it, ``n_devices`` per run)."""
    enc_rows, epoch_rows, recon, probes = [], [], [], []
    for key in keys:
        store.pull(f"{ENCODERS}/{key}", exact=False)  # remote storage: all but the weights
        d = store.path(f"{ENCODERS}/{key}")
        meta = read_json(d / "meta.json", {}) or {}
        losses = read_json(d / "losses.json", []) or []
        users = sorted(p.name for p in (d / "users").glob("*")) if (d / "users").is_dir() else []
        cost = encoder_cost(d, run, trial_ids)
        enc_rows.append({"pretrain_key": key, "trained_by": meta.get("trained_by"),
                         "used_by": users, "epochs": len(losses),
                         "final_loss": losses[-1]["loss"] if losses else None,
                         "wall_time_s": meta.get("wall_time_s"),
                         "config_json": json.dumps(meta.get("inputs", {}), sort_keys=True),
                         "complete": cost["complete"], "device_s": cost["total_s"] * n_devices,
                         "here_device_s": cost["here_s"] * n_devices,
                         "epochs_here": cost["epochs_here"]})
        epoch_rows += [{"pretrain_key": key, "epoch": e["epoch"], "loss": e["loss"],
                        "time_s": e.get("time_s")} for e in losses]
        probes += [{"pretrain_key": key, **r} for r in read_json(d / ENCODER_PROBES, []) or []]
        if (d / "reconstructions.parquet").is_file():
            recon.append(pd.read_parquet(d / "reconstructions.parquet").assign(pretrain_key=key))
    return (pd.DataFrame(enc_rows), pd.DataFrame(epoch_rows),
            pd.concat(recon, ignore_index=True) if recon else pd.DataFrame(),
            pd.DataFrame(probes, columns=["pretrain_key", "epoch", "probe", "value", "time_s"]))


def collect(run_dir: Path, storage: Store | Path, searched: list[str], data,
            search_trials: list[tuple[str, dict]], baseline_runs: list[dict],
            finalists: list[str], meta: dict) -> Path:
    """Write ``run_dir/results``: search trials (id, Tune state) and baseline runs."""
    rows, epochs, preds = [], [], []
    for i, (trial_id, state) in enumerate(search_trials):
        art = TrialArtifacts(run_dir / "trials" / trial_id)
        row, ep, pr = _record(art, trial_id, "recipe", f"trial {i + 1}", state, searched)
        row["finalist"] = trial_id in finalists
        rows.append(row)
        epochs += ep
        preds += [p for p in pr if p["split"].iat[0] == "val" or trial_id in finalists]
    for b in baseline_runs:
        art = TrialArtifacts(b["artifacts"])
        row, ep, pr = _record(art, b["run_id"], "baseline", b["label"], b["state"], searched)
        rows.append(row)
        epochs += ep
        preds += pr
    findings = list(data.findings)
    labels = labels_frame(data)
    pred_df = pd.concat(preds, ignore_index=True) if preds else pd.DataFrame()
    classes = pd.DataFrame(_class_rows(pred_df, labels, findings)) if len(pred_df) else \
        pd.DataFrame(columns=["trial_id", "split", "finding", "auc", "positives", "negatives"])
    trials = pd.DataFrame(rows)
    if len(classes):
        test_means = (classes[classes["split"] == "test"].groupby("trial_id")["auc"].mean())
        trials["test_mean_auc"] = trials["trial_id"].map(test_means)
    keys = sorted({k for k in trials.get("pretrain_key", [])
                   if isinstance(k, str) and not k.startswith("file:")} | set(stage_keys(run_dir)))
    base = meta.get("base_recipe") or {}
    encoders, encoder_epochs, recon, probes = _encoders(
        as_store(storage), keys, Path(run_dir).name, {t for t, _ in search_trials},
        devices(base)[1])
    epochs_df = pd.DataFrame(epochs)
    recipes = {r["trial_id"]: json.loads(r["config_json"]) for r in rows}
    trials = add_trial_costs(trials, epochs_df, encoders, recipes,
                             {b["run_id"] for b in baseline_runs if b.get("cached")})
    meta = {**meta, "cost": search_cost(trials, encoders), "stage": stage_records(run_dir)}
    if len(pred_df):
        pred_df = pred_df[["trial_id", "split", "image_id", "patient_id", *findings]]
    return write_results(run_dir, meta, trials=trials, epochs=epochs_df,
                         classes=classes, predictions=pred_df, labels=labels, encoders=encoders,
                         encoder_epochs=encoder_epochs, reconstructions=recon,
                         encoder_probes=probes)


def stage_records(run_dir: Path) -> list[dict]:
    """Every recipe the search's pre-training stage drew (``explorer.search.pretraining``),
    stopped ones included: {params, key (its encoder), status}."""
    run_dir = Path(run_dir)
    out = []
    for path in [run_dir / STAGE_FILE, *sorted(run_dir.glob(f"extend-*/{STAGE_FILE}"))]:
        record = read_json(path, {}) or {}
        out += [{k: c.get(k) for k in ("params", "key", "status")}
                for c in record.get("configs", [])]
    return out


def stage_keys(run_dir: Path) -> list[str]:
    return [c["key"] for c in stage_records(run_dir) if c.get("key")]
