"""A worker's input pipeline: loader processes, pinned memory and prefetch sized to the device.

Batches leave the loader as uint8 grey [B, 1, H, W] and are normalised (and erased) on the
device (``explorer.data.transforms.device_batches``). How many loader processes a training
worker gets (``loader_plan``), unless ``data.loader_workers`` says:

- on a GPU: every CPU of the worker but one, which the training process keeps (it launches
  the kernels). One core turns out 860-1,470 MAE images/s at 224 px, an H200 eats ~10,000:
  the GPU starves without them;
- on CPUs: none. The training step is 6-20x slower than loading on the same core
  (BENCHMARKS.md section 3), so a loader process would only take a core from the step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset

from explorer.errors import DataError
from explorer.spec.config import Recipe
from explorer.train.common import StepPlan
from explorer.train.session import Session

PREFETCH = 4       # batches per loader process in flight: rides out slow (RandAugment) batches
SHM = "/dev/shm"   # where DataLoader processes hand batches to the training process


@dataclass(frozen=True)
class LoaderPlan:
    workers: int
    pin_memory: bool
    prefetch: int | None   # batches in flight per loader process (None: no processes)
    why: str

    def describe(self) -> str:
        if not self.workers:
            return f"no loader processes ({self.why})"
        return (f"{self.workers} loader processes ({self.why}), {self.prefetch} batches "
                f"prefetched each, {'pinned' if self.pin_memory else 'pageable'} memory")


def default_workers(recipe: Recipe) -> tuple[int, str]:
    r = recipe.resources
    if recipe.data.loader_workers is not None:
        return recipe.data.loader_workers, "data.loader_workers"
    if r.gpus_per_worker:
        n = max(1, int(r.cpus_per_worker) - 1)
        return n, f"{r.cpus_per_worker:g} CPUs per worker, one kept for the training process"
    return 0, "training on CPUs: the step, not loading, is the bottleneck"


def _shm_free() -> int | None:
    try:
        st = os.statvfs(SHM)
    except OSError:   # no /dev/shm (not Linux): nothing to size against
        return None
    return st.f_bavail * st.f_frsize


def loader_plan(recipe: Recipe, batch: int, on_gpu: bool, shm_free: int | None = None
                ) -> LoaderPlan:
    """Workers from ``default_workers``; prefetch lowered until the batches in flight fit in
    half of the free shared memory, or ``DataError`` when even one batch per process does not
    (a bus error in a loader process otherwise)."""
    workers, why = default_workers(recipe)
    if not workers:
        return LoaderPlan(0, on_gpu, None, why)
    shm = _shm_free() if shm_free is None else shm_free
    batch_bytes = batch * recipe.data.image_size ** 2  # uint8, one channel
    prefetch = PREFETCH
    if shm is not None:
        while prefetch > 1 and workers * prefetch * batch_bytes > shm / 2:
            prefetch -= 1
        if workers * batch_bytes > shm / 2:
            need = 2 * workers * batch_bytes / 2**20
            raise DataError(
                f"{SHM} has {shm / 2**20:.0f} MiB free; {workers} loader processes with batches "
                f"of {batch} x {recipe.data.image_size} px need {need:.0f} MiB: give the "
                "container more shared memory (docker --shm-size=2g) or lower "
                "data.loader_workers")
    return LoaderPlan(workers, on_gpu, prefetch, why)


def _loader(dataset: Dataset, batch: int, lp: LoaderPlan, **kwargs) -> DataLoader:
    return DataLoader(dataset, batch_size=batch, num_workers=lp.workers,
                      persistent_workers=lp.workers > 0, pin_memory=lp.pin_memory,
                      prefetch_factor=lp.prefetch, **kwargs)


def train_loader(dataset: Dataset, plan: StepPlan, session: Session, lp: LoaderPlan,
                 seed: int) -> DataLoader:
    """Shuffled micro-batches of ``plan.per_step_batch``; each worker sees its own shard."""
    if session.world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=session.world_size,
                                     rank=session.rank, shuffle=True, seed=seed, drop_last=True)
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    return _loader(dataset, plan.per_step_batch, lp, sampler=sampler, drop_last=True)


def shard_indices(n: int, batch: int, rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s share of ``n`` evaluation items: the single-process batches (items
    [0, batch), [batch, 2 batch), ...) dealt out in turn, so every batch a rank scores is one
    that a single process scores, and gives bit-identical outputs; nothing is padded or
    duplicated, and ranks differ by at most one batch."""
    starts = range(rank * batch, n, world_size * batch)
    return [i for s in starts for i in range(s, min(s + batch, n))]


def eval_loader(dataset: Dataset, batch: int, lp: LoaderPlan, rank: int = 0,
                world_size: int = 1) -> DataLoader:
    """This rank's shard of ``dataset``, in order."""
    shard = shard_indices(len(dataset), batch, rank, world_size)
    return _loader(Subset(dataset, shard), batch, lp, shuffle=False)


def describe(recipe: Recipe) -> list[str]:
    """The dry run's lines on batches, input pipeline and checkpoints (no data is read, so
    the batch plan is that of a large enough training split)."""
    from explorer.train.common import split_effective

    r, c = recipe.resources, recipe.checkpoint
    lines = []
    stages = [("fine-tuning", "finetune", recipe.finetune)]
    if recipe.uses_mae_pretraining:
        stages.insert(0, ("pre-training", "pretrain", recipe.pretrain))
    for name, what, opt in stages:
        per_step, accum = split_effective(opt, r.workers, what)
        eff = per_step * accum * r.workers
        lines.append(f"  {name}: effective batch {eff} = {r.workers} worker(s) x {per_step} "
                     f"images x {accum} accumulation step(s), lr {opt.base_lr * eff / 256:.3g}")
    on_gpu = r.gpus_per_worker > 0
    workers, why = default_workers(recipe)
    lp = LoaderPlan(workers, on_gpu, PREFETCH if workers else None, why)
    lines.append(f"  input pipeline per worker: {lp.describe()}; uint8 grey batches, "
                 f"normalised on the {'GPU' if on_gpu else 'CPU'}")
    every = [("epoch" if c.every_epochs == 1 else f"{c.every_epochs} epochs")
             if c.every_epochs else "",
             f"{c.every_minutes:g} minutes" if c.every_minutes else ""]
    lines.append(f"  resume state every {' or '.join(e for e in every if e)}, written in the "
                 f"background; torch.compile {'on' if r.compile else 'off'}")
    return lines
