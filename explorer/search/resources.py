"""What one trial reserves on a Ray cluster, whether it can ever start, and how many run at once."""

from __future__ import annotations

from explorer.spec.config import Recipe


def trial_resources(recipe: Recipe) -> dict:
    """What one trial reserves. Inline: the worker itself. TorchTrainer: a near-free driver actor
    (the Train workers take their own placement group)."""
    r = recipe.resources
    if r.mode == "inline":
        res = {"CPU": r.cpus_per_worker}
        if r.gpus_per_worker:
            res["GPU"] = r.gpus_per_worker
        return res
    return {"CPU": 0.01}


def fits(recipe: Recipe, cluster: dict, nodes: list[dict] | None = None) -> tuple[bool, str]:
    """Whether one trial can ever start on this cluster (else Ray Train retries forever), and
    if not, why.

    ``cluster``: total resources; ``nodes``: each alive node's resources (one worker must fit
    on one node).
    """
    r = recipe.resources
    need_cpu = r.workers * r.cpus_per_worker + (0.01 if r.mode == "torch_trainer" else 0)
    need_gpu = r.workers * r.gpus_per_worker
    have_cpu, have_gpu = cluster.get("CPU", 0), cluster.get("GPU", 0)
    what = (f"one trial needs {need_cpu:g} CPUs and {need_gpu:g} GPUs ({r.workers} workers x "
            f"{r.cpus_per_worker:g} CPUs, {r.gpus_per_worker:g} GPUs)")
    if need_cpu > have_cpu + 1e-9 or need_gpu > have_gpu + 1e-9:
        return False, (f"{what}, but the cluster has {have_cpu:g} CPUs and {have_gpu:g} GPUs "
                       "in all")
    if nodes and not any(n.get("CPU", 0) + 1e-9 >= r.cpus_per_worker
                         and n.get("GPU", 0) + 1e-9 >= r.gpus_per_worker for n in nodes):
        return False, (f"{what}, but no single node has {r.cpus_per_worker:g} CPUs and "
                       f"{r.gpus_per_worker:g} GPUs for one worker")
    return True, ""


def concurrency(recipe: Recipe, cluster: dict, wanted: int | None) -> int:
    """Trials at once: as many as the cluster holds, at most ``wanted`` (the spec's cap)."""
    r = recipe.resources
    per_cpu = r.workers * r.cpus_per_worker
    n = int(cluster.get("CPU", 1) // per_cpu) if per_cpu else 1
    if r.gpus_per_worker:
        n = min(n, int(cluster.get("GPU", 0) // (r.workers * r.gpus_per_worker)))
    n = max(1, n)
    return min(n, wanted) if wanted else n
