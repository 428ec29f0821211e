"""What both worker loops share: threads and seeds, the batch/lr plan, optimizer, schedule."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from explorer.spec.config import Recipe, ResourcesConfig, _Optim
from explorer.train.session import Session


def setup_worker(recipe: Recipe, session: Session, seed_offset: int = 0) -> torch.device:
    """Threads per worker from the recipe (not the machine), seeds per rank, fast math on GPUs."""
    torch.set_num_threads(max(1, int(recipe.resources.cpus_per_worker)))
    seed = recipe.seed * 1000 + seed_offset + session.rank
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    device = session.device()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return device


def autocast(device: torch.device, resources: ResourcesConfig):
    """bf16 autocast on CUDA only: on CPUs bf16 matmul is hundreds of times slower."""
    if device.type == "cuda" and resources.amp == "auto":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class StepPlan:
    """How a recipe's effective batch is reached on this many workers, and the resulting lr."""

    accum_steps: int
    effective_batch: int
    lr: float
    batches_per_epoch: int
    updates_per_epoch: int
    total_updates: int
    warmup_updates: int


def plan_steps(opt: _Optim, world_size: int, n_train: int) -> StepPlan:
    per_step = opt.batch_size * world_size
    accum = max(1, round(opt.effective_batch / per_step)) if opt.batch_policy == "accumulate" else 1
    effective = per_step * accum
    batches = max(1, n_train // per_step)
    updates = max(1, batches // accum)
    return StepPlan(
        accum_steps=accum,
        effective_batch=effective,
        lr=opt.base_lr * effective / 256,
        batches_per_epoch=batches,
        updates_per_epoch=updates,
        total_updates=updates * opt.epochs,
        warmup_updates=updates * opt.warmup_epochs,
    )


def build_optimizer(model: torch.nn.Module, opt: _Optim, lr: float,
                    layer_decay: float | None = None) -> torch.optim.Optimizer:
    """timm's AdamW with no weight decay on biases/norms, and layer-wise lr decay for ViTs."""
    kwargs = {}
    if next(model.parameters()).is_cuda:
        kwargs["fused"] = True
    return create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=opt.weight_decay,
                               betas=tuple(opt.betas), layer_decay=layer_decay, **kwargs)


def build_scheduler(optimizer: torch.optim.Optimizer, plan: StepPlan,
                    opt: _Optim) -> CosineLRScheduler:
    """Linear warm-up, then a half-cosine to ``min_lr``, stepped per optimizer update."""
    return CosineLRScheduler(
        optimizer,
        t_initial=max(1, plan.total_updates - plan.warmup_updates),
        lr_min=opt.min_lr,
        warmup_t=plan.warmup_updates,
        warmup_lr_init=0.0 if plan.warmup_updates else plan.lr,
        warmup_prefix=True,
        t_in_epochs=False,
    )


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The largest group lr (the head's, under layer decay)."""
    return max(g["lr"] for g in optimizer.param_groups)


def train_loader(dataset: Dataset, batch_size: int, session: Session, workers: int,
                 seed: int) -> DataLoader:
    if session.world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=session.world_size,
                                     rank=session.rank, shuffle=True, seed=seed, drop_last=True)
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    drop_last = len(dataset) >= batch_size * session.world_size
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                      num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=torch.cuda.is_available())


def set_epoch(loader: DataLoader, epoch: int, seed: int) -> None:
    """Shuffle by (seed, epoch), so a run resumed at epoch k sees the batches it would have seen."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    elif isinstance(loader.sampler, RandomSampler):
        loader.sampler.generator.manual_seed(seed * 100_003 + epoch)


def train_one_epoch(model: torch.nn.Module, loader: DataLoader, optimizer, scheduler,
                    plan: StepPlan, epoch: int, seed: int, updates: int,
                    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                    ) -> tuple[float, int]:
    """One pass with gradient accumulation; ``step(images, targets) -> loss`` does the forward.

    The scheduler is stepped per optimizer update. Under DDP, gradients are synchronised once
    per update, not per micro-batch. Returns (mean loss on this worker, updates so far).
    """
    model.train()
    set_epoch(loader, epoch, seed)
    total, n = 0.0, 0
    optimizer.zero_grad(set_to_none=True)
    for i, (imgs, targets) in enumerate(loader):
        if i >= plan.batches_per_epoch:
            break
        last_micro = (i + 1) % plan.accum_steps == 0
        sync = contextlib.nullcontext() if last_micro or not hasattr(model, "no_sync") \
            else model.no_sync()
        with sync:
            loss = step(imgs, targets)
            (loss / plan.accum_steps).backward()
        total += float(loss.detach())
        n += 1
        if last_micro:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            updates += 1
            scheduler.step_update(updates)
    return total / max(n, 1), updates


def finite_or_raise(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise FloatingPointError(f"{what} became {value}: lower the learning rate")
    return value
