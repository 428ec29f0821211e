"""The results store: the Parquet tables (and one JSON file) a search leaves behind.

Everything the report shows is read from here, never from live Ray objects, so
``python -m explorer.report RUN_DIR`` can rebuild a report at any time and anyone can re-plot
the numbers with pandas. Layout, under ``RUN_DIR/results/``:

``trials.parquet``           one row per trial (search trials and baseline runs)
    trial_id str, kind {"recipe", "baseline"}, label str, arch str,
    status {"completed", "stopped_early", "failed", "running", "missing"}, error str|None,
    epochs_run int, epochs_planned int, best_epoch int|None (1-based),
    val_mean_auc float|None (at best_epoch), test_mean_auc float|None (finalists, baselines),
    finalist bool, seed int, wall_time_s float, config_hash str, config_json str,
    pretrain_key str|None, pretrain_role {"trained", "reused", "imported", "none"},
    resumes int (times fine-tuning restarted from a checkpoint: worker or trial restart, resume),
    cost (``explorer.results.cost``): device {"CPU", "GPU"}, finetune_device_s,
    pretrain_device_s (the whole encoder), pretrain_share_device_s (this search's share),
    cost_device_s (what this search spent on the trial), recipe_device_s (what the recipe costs
    from scratch at its full budget), gpu_hours (GPU runs only),
    start_method {"random", "imagenet", "imagenet_mae", "mocov2", "mae", "continued_mae",
    "weights_file", "imported"}, start_text str (e.g. "MoCo v2 on chestxray14 train 75,312 +
    chexpert train 191,027 = 266,339 images"), start_data str|None (the pre-training data),
    start_images int|None, start_sources str|None (pooled sources, comma-separated),
    start_init str|None (the named start or file it began from),
    and one column "param/<dotted.path>" per searched parameter.
``epochs.parquet``           learning curves: trial_id, epoch (1-based), val_mean_auc, train_loss,
                             lr, epoch_time_s
``classes.parquet``          trial_id, split {"val", "test"}, finding, auc (NaN = undefined),
                             positives, negatives. Validation rows are at the best epoch.
``predictions.parquet``      trial_id, split, image_id, patient_id, one float column per finding
                             (probabilities). Validation at the best epoch for every trial; test
                             only for finalists and baselines (scored once).
``labels.parquet``           split, image_id, patient_id, one int8 column per finding
``encoders.parquet``         pretrain_key, trained_by, used_by (list[str]), epochs, final_loss,
                             wall_time_s, config_json, complete (False: multi-fidelity
                             pre-training stopped it), device_s (all of its pre-training),
                             here_device_s and epochs_here (what this search paid)
``encoder_epochs.parquet``   pretrain_key, epoch, loss, time_s
``encoder_probes.parquet``   pretrain_key, epoch, probe {"linear", "knn"}, value (validation mean
                             AUC of the probe on frozen features), time_s
``reconstructions.parquet``  pretrain_key, image_id, panel {"masked", "reconstruction",
                             "original"}, png (bytes)
``meta.json``                name, spec, spec_yaml, scale, metric, searched (param -> space),
                             pretrain_pools (fingerprint -> sources, sizes, leakage-guard counts),
                             num_samples, findings, data (source, fingerprint, split sizes,
                             patients, positives per split, skipped/missing files), seeds,
                             versions, git_commit, hardware, stage_wall_s, finalists_k, created,
                             cost (the search's whole spend: ``explorer.results.cost``),
                             stage (the pre-training stage's recipes: params, key, status)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from explorer.storage import atomic_path, atomic_write_json

TABLES = (
    "trials",
    "epochs",
    "classes",
    "predictions",
    "labels",
    "encoders",
    "encoder_epochs",
    "reconstructions",
    "encoder_probes",
)
#: The pre-training stage's record in the experiment folder (``explorer.search.pretraining``).
STAGE_FILE = "pretraining.json"
PARAM_PREFIX = "param/"
#: "missing": a finished trial whose record was deleted (explorer.search.stages.missing_records)
STATUSES = ("completed", "stopped_early", "failed", "running", "missing")


@dataclass
class Results:
    """All tables of one run, as pandas DataFrames (empty frames for tables not written)."""

    meta: dict
    trials: pd.DataFrame
    epochs: pd.DataFrame
    classes: pd.DataFrame
    predictions: pd.DataFrame
    labels: pd.DataFrame
    encoders: pd.DataFrame
    encoder_epochs: pd.DataFrame
    reconstructions: pd.DataFrame
    encoder_probes: pd.DataFrame = field(default_factory=pd.DataFrame)
    extra: dict = field(default_factory=dict)

    @property
    def findings(self) -> list[str]:
        return list(self.meta["findings"])

    @property
    def param_columns(self) -> list[str]:
        return [c for c in self.trials.columns if c.startswith(PARAM_PREFIX)]


def results_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "results"


def write_results(run_dir: str | Path, meta: dict, **tables: pd.DataFrame) -> Path:
    """Write ``meta.json`` and the given tables atomically (temp file, then rename)."""
    out = results_dir(run_dir)
    for name, df in tables.items():
        if name not in TABLES:
            raise ValueError(f"unknown results table {name!r}")
        with atomic_path(out / f"{name}.parquet") as tmp:
            df.to_parquet(tmp, index=False)
    atomic_write_json(out / "meta.json", meta)
    return out


def load_results(run_dir: str | Path) -> Results:
    """Read a run's results store; raises ``UserError`` if the folder holds none."""
    from explorer.errors import UserError

    src = results_dir(run_dir)
    if not (src / "meta.json").is_file():
        raise UserError(f"{run_dir}: no results here (expected {src / 'meta.json'})")
    meta = json.loads((src / "meta.json").read_text())
    frames = {
        name: pd.read_parquet(src / f"{name}.parquet") if (src / f"{name}.parquet").is_file()
        else pd.DataFrame()
        for name in TABLES
    }
    return Results(meta=meta, **frames)
