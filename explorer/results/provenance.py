"""What a reader needs to reproduce a run: versions, commit, hardware, seeds, data, timings."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import time

import yaml

from explorer.names import BOOTSTRAP_SEED, METRIC_DESCRIPTION, MODE
from explorer.spec.recipes import REPO_ROOT, config_hash
from explorer.spec.search_spec import LoadedSpec

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


def run_meta(name: str, loaded: LoadedSpec, base_dict: dict, data, cluster: dict,
             stage_times: dict, runs: list[dict], pools: dict | None = None) -> dict:
    """``meta.json`` of the results store: everything above, for one run.

    ``base_dict``: the base recipe as trials got it (absolute paths); ``data``: its
    ``DataBundle``; ``cluster``: Ray's resources; ``runs``: the baseline runs; ``pools``: the
    pre-training pools by fingerprint (``explorer.search.pools.pool_notes``).
    """
    spec, base = loaded.spec, loaded.base.model_validate(base_dict)
    return {
        "name": name,
        "spec": loaded.raw,
        "spec_yaml": yaml.safe_dump(loaded.raw, sort_keys=False),
        "spec_path": str(loaded.path) if loaded.path else None,
        "spec_hash": config_hash(loaded.raw),
        "recipe": spec.recipe,
        "scale": spec.scale,
        "base_recipe": base_dict,
        "base_config_hash": config_hash(loaded.base),
        "metric": METRIC_DESCRIPTION,
        "mode": MODE,
        "searched": {k: v.describe() for k, v in spec.search.params.items()},
        "num_samples": spec.search.num_samples,
        "findings": list(data.findings),
        "data": {**data.notes, "fingerprint": data.fingerprint,
                 "source": base.data.source, "image_size": base.data.image_size},
        # pre-training pools (pretrain.data) by fingerprint: sources, sizes, what the leakage
        # guard left out and why
        "pretrain_pools": pools or {},
        # bootstrap: the seed the search's report uses; a rebuild shows the one it used
        "seeds": {"recipe": base.seed, "split": base.data.split_seed,
                  "searcher": spec.search.searcher.seed, "bootstrap": BOOTSTRAP_SEED,
                  "baselines": sorted({r["seed"] for r in runs})},
        "baselines": [{k: r[k] for k in ("run_id", "recipe_name", "label", "seed", "key")}
                      | {"cached": r.get("cached", False)} for r in runs],
        "finalists_k": spec.finalists,
        "bootstrap": spec.bootstrap,
        "versions": versions(),
        "git_commit": git_commit(),
        "hardware": hardware(cluster),
        "stage_wall_s": stage_times,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
