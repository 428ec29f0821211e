"""Where a worker loop reports to: the one seam between our loops and Ray.

The same pre-training and fine-tuning loops run in three places, and only this object differs:

- ``TrainSession``: a Ray Train ``TorchTrainer`` worker (N DDP workers; gloo on CPU, NCCL on GPU).
  Metrics go through ``ray.train.report`` (a barrier on every rank; rank 0's metrics reach Tune
  via ``TuneReportCallback``).
- ``TuneSession``: directly inside a Tune trial (one in-process worker, no Train start-up cost).
- ``LocalSession``: no Ray at all (benchmarks, unit tests, a quick run in a notebook).

Sessions carry metrics and collectives only, never checkpoints. The resume states are files the
loops write themselves at the recipe's ``checkpoint`` cadence: ``resume.pt`` in the trial's
record (``explorer.train.resume``) and ``partial.pt`` beside a shared encoder
(``explorer.train.pretrain``). Ray checkpoints are not used: Tune's experiment snapshot can lag
the deletion of an older checkpoint (``num_to_keep``), and a driver killed in that window left a
trial that Tune could never restore.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


class Session:
    rank: int = 0
    world_size: int = 1
    trial_id: str = "local"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self) -> torch.device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device())

    def report(self, metrics: dict[str, Any]) -> None:
        raise NotImplementedError

    def barrier(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world_size > 1 and dist.is_initialized():
            box = [obj]
            dist.broadcast_object_list(box, src=0)
            return box[0]
        return obj

    def all_mean(self, value: float) -> float:
        if self.world_size > 1 and dist.is_initialized():
            t = torch.tensor([value], dtype=torch.float64)
            if dist.get_backend() == "nccl":
                t = t.to(self.device())
            dist.all_reduce(t)
            return float(t.item()) / self.world_size
        return value


class LocalSession(Session):
    """Keeps reported metrics in ``history``."""

    def __init__(self, trial_id: str = "local"):
        self.trial_id = trial_id
        self.history: list[dict[str, Any]] = []

    def report(self, metrics: dict[str, Any]) -> None:
        self.history.append(dict(metrics))


class TuneSession(Session):
    """Inside a Tune function trainable: ``ray.tune.report`` (metrics only)."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id

    def report(self, metrics: dict[str, Any]) -> None:
        from ray import tune

        tune.report(metrics)


class TrainSession(Session):
    """Inside a Ray Train worker: ``ray.train.report`` is a barrier that every rank calls."""

    def __init__(self, trial_id: str):
        import ray.train

        ctx = ray.train.get_context()
        self.trial_id = trial_id
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()

    def device(self) -> torch.device:
        import ray.train.torch

        return ray.train.torch.get_device()

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)

    def report(self, metrics: dict[str, Any]) -> None:
        import ray.train

        ray.train.report(metrics)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside torch.compile's and DDP's wrappers (its state dict has the plain
    keys; evaluating it needs no collectives)."""
    model = getattr(model, "_orig_mod", model)
    return model.module if hasattr(model, "module") else model
