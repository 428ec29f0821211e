"""What a reader needs to reproduce a run: versions, commit, hardware, seeds, data, timings."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import time
from typing import TYPE_CHECKING

import yaml

from explorer.recipes import REPO_ROOT, config_hash

if TYPE_CHECKING:
    from explorer.pipeline import Pipeline

PACKAGES = ("torch", "timm", "ray", "optuna", "scikit-learn", "numpy", "pandas", "pyarrow",
            "plotly", "pydantic", "cxr-recipe-explorer")


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit() -> str | None:
    try:
        res = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=False)
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    return res.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def hardware(cluster: dict) -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    gpus = ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available() else [])
    return {"cpu": cpu, "cores": os.cpu_count(), "driver_gpus": gpus,
            "platform": platform.platform(), "ray_cluster": dict(cluster)}


def run_meta(p: Pipeline, runs: list[dict]) -> dict:
    spec = p.loaded.spec
    data = p.data
    return {
        "name": p.exp.name,
        "spec": p.loaded.raw,
        "spec_yaml": yaml.safe_dump(p.loaded.raw, sort_keys=False),
        "spec_path": str(p.loaded.path) if p.loaded.path else None,
        "spec_hash": config_hash(p.loaded.raw),
        "recipe": spec.recipe,
        "scale": spec.scale,
        "base_recipe": p.base_dict,
        "base_config_hash": config_hash(p.loaded.base),
        "metric": "validation mean AUC at the trial's best epoch (best_val_mean_auc)",
        "mode": "max",
        "searched": {k: v.describe() for k, v in spec.search.params.items()},
        "num_samples": spec.search.num_samples,
        "findings": list(data.findings),
        "data": {**data.notes, "fingerprint": data.fingerprint,
                 "source": p.base.data.source, "image_size": p.base.data.image_size},
        # pre-training pools (pretrain.data) by fingerprint: sources, sizes, what the leakage
        # guard left out and why
        "pretrain_pools": getattr(p, "pools", {}),
        "seeds": {"recipe": p.base.seed, "split": p.base.data.split_seed,
                  "searcher": spec.search.searcher.seed, "bootstrap": 0,
                  "baselines": sorted({r["seed"] for r in runs})},
        "baselines": [{k: r[k] for k in ("run_id", "recipe_name", "label", "seed", "key")}
                      | {"cached": r.get("cached", False)} for r in runs],
        "finalists_k": spec.finalists,
        "bootstrap": spec.bootstrap,
        "versions": versions(),
        "git_commit": git_commit(),
        "hardware": hardware(p.cluster),
        "stage_wall_s": p.exp.stage_times(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
