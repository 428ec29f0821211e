"""What both worker loops share: threads and seeds, the batch/lr plan, optimizer, schedule."""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch.utils.data import DistributedSampler, RandomSampler

from explorer.errors import SpecError
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


def maybe_compile(model: torch.nn.Module, resources: ResourcesConfig) -> torch.nn.Module:
    """``torch.compile`` when the recipe opts in (``resources.compile``). Off by default: it
    pays on a GPU for ViTs (1.10x MAE, 1.40x fine-tuning on an H200) but costs tens of seconds
    per trial, slows DenseNet-121 (0.77x) and buys 1.4% on CPU (BENCHMARKS.md 2 and 7)."""
    return torch.compile(model) if resources.compile else model


@dataclass(frozen=True)
class StepPlan:
    """How a recipe's effective batch is reached on this many workers, and the resulting lr.

    ``effective_batch = world_size x per_step_batch x accum_steps``, exactly.
    """

    world_size: int
    per_step_batch: int
    accum_steps: int
    effective_batch: int
    lr: float
    batches_per_epoch: int
    updates_per_epoch: int
    total_updates: int
    warmup_updates: int

    def record(self) -> dict:
        """What training actually used (for the trial's and the encoder's record)."""
        return {"world_size": self.world_size, "per_worker_batch": self.per_step_batch,
                "accum_steps": self.accum_steps, "effective_batch": self.effective_batch,
                "lr": self.lr, "updates_per_epoch": self.updates_per_epoch}


def split_effective(opt: _Optim, world_size: int, what: str) -> tuple[int, int]:
    """(per-worker micro-batch, accumulation steps) giving ``effective_batch`` exactly: the
    fewest accumulation steps whose micro-batch fits ``batch_size`` (the memory bound).
    ``scale_lr``: (``batch_size``, 1)."""
    if opt.batch_policy == "scale_lr":
        return opt.batch_size, 1
    eff = opt.effective_batch
    if eff % world_size:
        fits = [w for w in range(1, min(eff, 64) + 1) if eff % w == 0]
        raise SpecError(
            f"{what}.effective_batch {eff} cannot be split evenly over {world_size} workers: use "
            f"{', '.join(map(str, fits[-6:]))} workers, or an effective_batch that "
            f"{world_size} divides (e.g. {eff - eff % world_size} or "
            f"{eff + world_size - eff % world_size})")
    per_worker = eff // world_size
    accum = max(1, math.ceil(per_worker / opt.batch_size))
    while per_worker % accum:  # ends: accum = per_worker divides it
        accum += 1
    return per_worker // accum, accum


def plan_steps(opt: _Optim, world_size: int, n_train: int, what: str = "finetune") -> StepPlan:
    """The batch plan on ``world_size`` workers for ``n_train`` images; ``SpecError`` (one
    line) when the effective batch cannot be kept exactly.

    ``accumulate``: the effective batch is kept on any worker count that divides it, with
    per-worker micro-batches of at most ``batch_size`` images. ``scale_lr``: one step per
    ``batch_size`` per worker, the lr scaled by the batch that results. Each worker's epoch
    ends at the last whole update (no micro-batch is computed and then dropped).
    """
    if opt.batch_policy == "accumulate":
        per_step, accum = split_effective(opt, world_size, what)
    else:  # a split smaller than one batch trains on all of it at once
        per_step, accum = min(opt.batch_size, max(1, n_train // world_size)), 1
    effective = per_step * accum * world_size
    # DistributedSampler(drop_last=True) gives each worker n_train // world_size images.
    updates = n_train // world_size // per_step // accum
    if updates == 0:
        raise SpecError(f"{what}: an optimizer update takes {effective} images "
                        f"(effective batch), more than the {n_train} training images: lower "
                        f"{what}.effective_batch / batch_size or use more images")
    return StepPlan(
        world_size=world_size,
        per_step_batch=per_step,
        accum_steps=accum,
        effective_batch=effective,
        lr=opt.base_lr * effective / 256,
        batches_per_epoch=updates * accum,
        updates_per_epoch=updates,
        total_updates=updates * opt.epochs,
        warmup_updates=updates * opt.warmup_epochs,
    )


def check_plans(recipe: Recipe, n_train: int) -> None:
    """Refuse (``SpecError``) a recipe whose batch plans cannot hold on its workers and data,
    before any trial starts."""
    workers = recipe.resources.workers
    if recipe.uses_mae_pretraining:
        plan_steps(recipe.pretrain, workers, n_train, what="pretrain")
    plan_steps(recipe.finetune, workers, n_train, what="finetune")


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


def set_epoch(loader, epoch: int, seed: int) -> None:
    """Shuffle by (seed, epoch), so a run resumed at epoch k sees the batches it would have seen."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    elif isinstance(loader.sampler, RandomSampler):
        loader.sampler.generator.manual_seed(seed * 100_003 + epoch)


def train_one_epoch(model: torch.nn.Module, batches, optimizer, scheduler,
                    plan: StepPlan, epoch: int, seed: int, updates: int,
                    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                    ) -> tuple[float, int, float]:
    """One pass with gradient accumulation; ``step(images, targets) -> loss`` does the forward.

    ``batches``: device batches (``explorer.data.transforms.device_batches``). The scheduler is
    stepped per optimizer update. Under DDP, gradients are synchronised once per update, not
    per micro-batch. The loss is summed on the device and read once per epoch (a read per
    micro-batch would make the host wait for the device every step). Returns (mean loss on
    this worker, updates so far, seconds the training thread waited for batches).
    """
    model.train()
    ddp = getattr(model, "_orig_mod", model)  # torch.compile's wrapper hides DDP's no_sync
    set_epoch(batches, epoch, seed)
    total, n, waited = None, 0, 0.0
    optimizer.zero_grad(set_to_none=True)
    it = iter(batches)
    for i in range(plan.batches_per_epoch):
        t0 = time.perf_counter()
        imgs, targets = next(it)
        waited += time.perf_counter() - t0
        last_micro = (i + 1) % plan.accum_steps == 0
        sync = contextlib.nullcontext() if last_micro or not hasattr(ddp, "no_sync") \
            else ddp.no_sync()
        with sync:
            loss = step(imgs, targets)
            (loss / plan.accum_steps).backward()
        total = loss.detach().float() if total is None else total + loss.detach().float()
        n += 1
        if last_micro:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            updates += 1
            scheduler.step_update(updates)
    return (float(total) / n if n else 0.0), updates, waited


def finite_or_raise(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise FloatingPointError(f"{what} became {value}: lower the learning rate")
    return value
