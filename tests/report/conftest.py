"""A small, schema-valid results store written with ``explorer.results.write_results``.

Five recipe trials (completed, stopped early by ASHA, failed), three DenseNet-121 baseline seeds,
validation and test predictions with patient ids (two images per patient), a finding with no
positive case in validation, reconstructions as real PNG bytes, learning curves and encoder
loss curves. Scores are labels plus noise, so the numbers are real AUCs of real arrays.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from explorer.metrics import mean_auc, per_class_auc
from explorer.results import write_results

FINDINGS = ["Atelectasis", "Cardiomegaly", "Effusion", "Hernia", "Mass"]
NO_VAL_POSITIVE = "Hernia"  # no positive case in validation: no validation AUC
XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = '"><img src=x onerror=alert(1)>'

SEARCHED = {
    "pretrain.mask_ratio": {"type": "float", "low": 0.5, "high": 0.95, "log": False},
    "finetune.layer_decay": {"type": "float", "low": 0.4, "high": 0.9, "log": True},
    "finetune.randaug_magnitude": {"type": "categorical", "choices": [None, 6, 9]},
}

# trial id, status, epochs run, finalist, signal strength, pretrain key, role, params
RECIPES = [
    ("t0", "completed", 6, True, 2.0, "pk_a", "trained", (0.9, 0.55, 6)),
    ("t1", "completed", 6, True, 1.2, "pk_a", "reused", (0.9, 0.75, None)),
    ("t2", "stopped_early", 2, False, 0.4, "pk_b", "trained", (0.6, 0.45, 9)),
    ("t3", "failed", 1, False, 0.0, "pk_c", "trained", (0.75, 0.8, 6)),
    ("t4", "completed", 6, False, 0.9, "pk_b", "reused", (0.6, 0.65, 9)),
]
BASELINE_STRENGTHS = {0: 1.5, 1: 1.7, 2: 1.3}
EPOCHS_PLANNED = 6


def _png(seed: int, size: int = 16) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _labels(rng, split: str, n_patients: int, findings: list[str]) -> pd.DataFrame:
    n = 2 * n_patients
    y = (rng.random((n, len(findings))) < 0.3).astype(np.int8)
    y[:4, :] = 1  # every finding has positives and negatives ...
    y[4:8, :] = 0
    if split == "val":
        y[:, findings.index(NO_VAL_POSITIVE)] = 0  # ... except this one, in validation
    df = pd.DataFrame(y, columns=findings)
    df.insert(0, "patient_id", [f"{split}_p{i // 2:03d}" for i in range(n)])
    df.insert(0, "image_id", [f"{split}_{i:04d}.png" for i in range(n)])
    df.insert(0, "split", split)
    return df


def _scores(rng, labels: pd.DataFrame, findings: list[str], strength: float) -> np.ndarray:
    y = labels[findings].to_numpy(dtype=float)
    return 1.0 / (1.0 + np.exp(-(strength * (y - 0.5) + rng.normal(size=y.shape))))


def build_store(
    run_dir: Path,
    *,
    source: str = "phantom",
    scale: str = "smoke",
    with_test: bool = True,
    with_baselines: bool = True,
    searched: dict | None = None,
    hostile: bool = False,
    with_reconstructions: bool = True,
) -> Path:
    """Write a results store under ``run_dir/results`` and return ``run_dir``.

    ``hostile`` puts markup into a trial label, a parameter value, an error message, a finding
    name and the spec text, for the escaping tests.
    """
    rng = np.random.default_rng(0)
    findings = list(FINDINGS)
    searched = dict(SEARCHED if searched is None else searched)
    if hostile:
        findings[-1] = "Mass" + XSS_IMG
        searched["finetune.mix"] = {"type": "categorical", "choices": ["none", XSS_IMG]}
    splits = ["val", "test"] if with_test else ["val"]
    labels = pd.concat([_labels(rng, s, 30, findings) for s in splits], ignore_index=True)

    runs = []  # (trial row, strength, splits scored, epochs)
    for tid, status, run, finalist, strength, key, role, values in RECIPES:
        params = dict(zip(SEARCHED, values))
        if hostile:
            params["finetune.mix"] = XSS_IMG if tid == "t1" else "none"
        label = XSS_SCRIPT if hostile and tid == "t0" else f"trial_{tid[1:]}"
        row = dict(trial_id=tid, kind="recipe", label=label, arch="vit_small", status=status,
                   error=None, epochs_run=run, epochs_planned=EPOCHS_PLANNED,
                   best_epoch=None if status == "failed" else run, finalist=finalist, seed=0,
                   pretrain_key=key, pretrain_role=role)
        if status == "failed":
            row["error"] = "RuntimeError: out of memory" + (XSS_SCRIPT if hostile else "")
        row.update({f"param/{p}": v for p, v in params.items() if p in searched})
        scored = [] if status == "failed" else (splits if finalist else ["val"])
        runs.append((row, strength, scored))
    if with_baselines:
        for seed, strength in BASELINE_STRENGTHS.items():
            row = dict(trial_id=f"b{seed}", kind="baseline", label=f"densenet121 seed {seed}",
                       arch="densenet121", status="completed", error=None,
                       epochs_run=EPOCHS_PLANNED, epochs_planned=EPOCHS_PLANNED,
                       best_epoch=EPOCHS_PLANNED, finalist=False, seed=seed, pretrain_key=None,
                       pretrain_role="none")
            runs.append((row, strength, splits))

    trials, preds, classes, epochs = [], [], [], []
    for i, (row, strength, scored) in enumerate(runs):
        for split in scored:
            lab = labels[labels.split == split].reset_index(drop=True)
            s = _scores(np.random.default_rng(100 + i), lab, findings, strength)
            y = lab[findings].to_numpy()
            p = lab[["split", "image_id", "patient_id"]].copy()
            p[findings] = s
            p.insert(0, "trial_id", row["trial_id"])
            preds.append(p)
            pc = per_class_auc(y, s, findings)
            classes.append(pc.assign(trial_id=row["trial_id"], split=split)[
                ["trial_id", "split", "finding", "auc", "positives", "negatives"]])
            row[f"{split}_mean_auc"] = mean_auc(y, s)
        row.setdefault("val_mean_auc", None)
        row.setdefault("test_mean_auc", None)
        row.update(wall_time_s=10.0 + i, config_hash=f"hash{i:02d}",
                   config_json=json.dumps({"name": row["label"], "seed": row["seed"]}))
        trials.append(row)
        curve = np.linspace(0.55, row["val_mean_auc"] or 0.5, row["epochs_run"])
        epochs += [dict(trial_id=row["trial_id"], epoch=e + 1, val_mean_auc=float(v),
                        train_loss=1.0 / (e + 1), lr=1e-3, epoch_time_s=1.5)
                   for e, v in enumerate(curve)]

    encoders = pd.DataFrame([
        dict(pretrain_key="pk_a", trained_by="t0", used_by=["t0", "t1"], epochs=4,
             final_loss=0.31, wall_time_s=40.0, config_json="{}"),
        dict(pretrain_key="pk_b", trained_by="t2", used_by=["t2", "t4"], epochs=4,
             final_loss=0.35, wall_time_s=41.0, config_json="{}"),
    ])
    encoder_epochs = pd.DataFrame([dict(pretrain_key=k, epoch=e, loss=1.0 / e + off)
                                   for k, off in (("pk_a", 0.0), ("pk_b", 0.05))
                                   for e in range(1, 5)])
    recon = pd.DataFrame([dict(pretrain_key="pk_a", image_id=f"val_{i:04d}.png", panel=panel,
                               png=_png(10 * i + j))
                          for i in range(2)
                          for j, panel in enumerate(("masked", "reconstruction", "original"))])
    spec_yaml = "name: fixture\nrecipe: mae_vit_small\nsearch:\n  num_samples: 5\n"
    if hostile:
        spec_yaml += f"description: '{XSS_SCRIPT} {XSS_IMG}'\n"
    meta = dict(
        name="fixture", spec={"name": "fixture", "scale": scale}, spec_yaml=spec_yaml,
        scale=scale, metric="val_mean_auc", searched=searched, num_samples=5, findings=findings,
        data=dict(source=source, fingerprint="abc123", split_sizes={"train": 100, "val": 60,
                  "test": 60 if with_test else 0}, patients={"train": 50, "val": 30, "test": 30},
                  skipped_files=["bad_0001.png"] if hostile is False else [XSS_IMG]),
        seeds={"search": 0, "baselines": [0, 1, 2]}, versions={"torch": "2.14.1", "ray": "2.60"},
        git_commit="deadbeef", hardware={"cpu": "2 cores", "gpu": None},
        stage_wall_s={"pretrain": 81.0, "finetune": 120.5}, finalists_k=2,
        created="2025-01-01T00:00:00",
    )
    tables = dict(trials=pd.DataFrame(trials), epochs=pd.DataFrame(epochs),
                  classes=pd.concat(classes, ignore_index=True),
                  predictions=pd.concat(preds, ignore_index=True), labels=labels,
                  encoders=encoders, encoder_epochs=encoder_epochs)
    if with_reconstructions:
        tables["reconstructions"] = recon
    write_results(run_dir, meta, **tables)
    return run_dir


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    """The default store (phantom data, validation and test, baselines): a run directory."""
    return build_store(tmp_path_factory.mktemp("run"))


@pytest.fixture
def make_store(tmp_path):
    """Build a variant store: ``make_store(with_test=False)`` etc. returns its run directory."""
    count = iter(range(100))

    def make(**kwargs) -> Path:
        return build_store(tmp_path / f"run{next(count)}", **kwargs)

    return make


N_RESAMPLES = 500  # enough to test with; the CLI default is the spec's 2000


@pytest.fixture(scope="session")
def report(store):
    """The data step on the default store (``ReportData``)."""
    from explorer.report import collect
    from explorer.results import load_results

    return collect(load_results(store), n_resamples=N_RESAMPLES)


def split_arrays(results, trial_id: str, split: str):
    """Labels, scores and patient ids of one model, joined here with plain pandas (not with the
    report's own code), rows in image order."""
    p = results.predictions
    p = p[(p.trial_id == trial_id) & (p.split == split)].sort_values("image_id")
    lab = results.labels[results.labels.split == split].set_index("image_id").loc[p.image_id]
    f = results.findings
    return lab[f].to_numpy(), p[f].to_numpy(), lab["patient_id"].to_numpy()


@pytest.fixture(scope="session")
def fx():
    """The builder's constants and helpers, as a fixture (test modules never import conftest:
    another folder's conftest.py could shadow that module name)."""
    from types import SimpleNamespace

    return SimpleNamespace(N_RESAMPLES=N_RESAMPLES, BASELINE_STRENGTHS=BASELINE_STRENGTHS,
                           XSS_SCRIPT=XSS_SCRIPT, XSS_IMG=XSS_IMG, FINDINGS=FINDINGS,
                           split_arrays=split_arrays, build_store=build_store)
