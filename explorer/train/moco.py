"""MoCo v2 pre-training of a CNN (DenseNet-121, ResNet-50): the worker loop.

The SSL parts are lightly's (``NTXentLoss`` with a memory bank is MoCo's queue and InfoNCE,
gathered across DDP workers; ``MoCoProjectionHead``; ``update_momentum``; the MoCo v2 views);
the backbone is timm's, so the encoder it leaves is a plain timm state dict that
``create_cnn(weights=...)`` fine-tunes like ImageNet weights. Like MAE (``pretrain_loop``), the
input pipeline is the shared one (uint8 batches, here the two views stacked as two channels,
normalised on the device), and at the ``checkpoint`` cadence rank 0 writes ``partial.pt``
(query and key encoders, the queue, the optimizer) from a background thread; a restarted loop
continues from it.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from timm.optim import create_optimizer_v2
from torch import nn

from explorer.spec.config import Recipe
from explorer.train.cadence import Cadence, partial_saver, rank0_writer, snapshot
from explorer.train.common import (
    autocast,
    build_scheduler,
    finite_or_raise,
    plan_steps,
    setup_worker,
    train_one_epoch,
)
from explorer.train.session import Session, unwrap


class TwoViews:
    """Grey PIL image -> uint8 [2, S, S]: the query view and the key view (MoCo v2
    augmentations on the single grey channel), stacked as two channels, so the batch goes
    through the shared loader and device normalisation like any other."""

    def __init__(self, recipe: Recipe):
        from lightly.transforms import MoCoV2Transform

        d, p, m = recipe.data, recipe.pretrain, recipe.pretrain.moco
        scale = d.image_size / 224   # the blur covers the same share of the image at any size
        self.views = MoCoV2Transform(
            input_size=d.image_size, min_scale=p.crop_scale[0], hf_prob=0.5 if p.hflip else 0.0,
            cj_prob=m.jitter_prob, cj_bright=m.brightness, cj_contrast=m.contrast, cj_sat=0.0,
            cj_hue=0.0, random_gray_scale=0.0, gaussian_blur=m.blur_prob,
            sigmas=(m.blur_sigma[0] * scale, m.blur_sigma[1] * scale),
            normalize=None)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        # lightly's views end in ToTensor (x / 255 of uint8 pixels): back to the exact uint8
        return torch.cat([(v * 255).round_().to(torch.uint8) for v in self.views(image)])


class MoCo(nn.Module):
    """Query encoder (timm backbone + MLP head) and its momentum copy, the key encoder."""

    def __init__(self, arch: str, *, proj_dim: int, hidden_dim: int | None,
                 init: nn.Module | None = None):
        super().__init__()
        import timm
        from lightly.models.modules import MoCoProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        self.backbone = init if init is not None else timm.create_model(
            arch, pretrained=False, num_classes=0)
        self.backbone.reset_classifier(0)   # pooled features [B, D] (1024 DenseNet, 2048 ResNet)
        width = self.backbone.num_features
        self.head = MoCoProjectionHead(width, hidden_dim or width, proj_dim)
        self.key_backbone = copy.deepcopy(self.backbone)
        self.key_head = copy.deepcopy(self.head)
        deactivate_requires_grad(self.key_backbone)
        deactivate_requires_grad(self.key_head)

    def query(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    @torch.no_grad()
    def keys(self, x: torch.Tensor, splits: int) -> torch.Tensor:
        """Keys of a shuffled batch encoded in ``splits`` parts, returned in batch order: each
        part's batch-norm statistics mix other images than the query batch's (MoCo's shuffle
        BN, done within one worker), so matching them says nothing about the pair."""
        n = max(1, min(splits, len(x) // 2))   # batch norm needs 2+ images per part
        order = torch.randperm(len(x), device=x.device)
        parts = [self.key_head(self.key_backbone(c)) for c in x[order].chunk(n)]
        return torch.cat(parts)[order.argsort()]


def _query_module(moco: MoCo) -> nn.Module:
    """The trained half as one module (what DDP wraps; the key half has no gradients)."""
    return nn.Sequential(moco.backbone, moco.head)


def moco_loop(recipe: Recipe, data, session: Session, workdir: Path,
              on_save: Callable[[], None] | None = None) -> dict:
    """Train MoCo v2 on ``data.train`` images; resume from ``workdir/partial.pt``.

    Returns the query backbone's state dict (timm names, no classifier). At the ``checkpoint``
    cadence rank 0 writes ``partial.pt`` and ``losses.json`` (mean InfoNCE loss per epoch) from
    a background thread, then calls ``on_save`` there.
    """
    from lightly.loss import NTXentLoss

    p, m = recipe.pretrain, recipe.pretrain.moco
    seed = recipe.pretrain_seed
    device = setup_worker(recipe.model_copy(update={"seed": seed}), session, seed_offset=1)
    init = None
    if p.init_from:
        from explorer.models.cnn import create_cnn

        init = create_cnn(recipe.model.arch, num_classes=0, weights=p.init_from)
    moco = MoCo(recipe.model.arch, proj_dim=m.proj_dim, hidden_dim=m.hidden_dim, init=init)
    # channels-last: the fast layout for convolutions (CPU and GPU), as in fine-tuning
    moco = moco.to(device, memory_format=torch.channels_last)
    query = session.prepare_model(_query_module(moco))
    criterion = NTXentLoss(temperature=m.temperature, memory_bank_size=(m.queue_size, m.proj_dim),
                           gather_distributed=True).to(device)
    plan = plan_steps(p, session.world_size, len(data.train), what="pretrain")
    batches = _batches(recipe, data, session, plan, device, seed)
    # MoCo's SGD decays every weight, biases and norms included
    optimizer = create_optimizer_v2(unwrap(query), opt="sgd", lr=plan.lr, momentum=m.sgd_momentum,
                                    weight_decay=p.weight_decay, filter_bias_and_bn=False)
    scheduler = build_scheduler(optimizer, plan, p)

    start, losses = 0, []
    partial = workdir / "partial.pt"
    if partial.is_file():
        state = torch.load(partial, map_location="cpu", weights_only=True)
        moco.load_state_dict(state["model"])
        criterion.load_state_dict(state["queue"])
        optimizer.load_state_dict(state["optimizer"])
        start, losses = int(state["epoch"]), list(state["losses"])

    def step(views, _targets):
        from lightly.models.utils import update_momentum

        from explorer.data.transforms import model_input

        update_momentum(moco.backbone, moco.key_backbone, m.momentum)
        update_momentum(moco.head, moco.key_head, m.momentum)
        with autocast(device, recipe.resources):
            q = query(model_input(views[:, :1], channels_last=True))
            k = moco.keys(model_input(views[:, 1:], channels_last=True), m.key_splits)
            return criterion(q.float(), k.float())

    save = partial_saver(workdir, on_save)
    cadence = Cadence(recipe.checkpoint, start)
    updates = start * plan.updates_per_epoch
    scheduler.step_update(updates)
    with rank0_writer(session.is_main, workdir, losses) as writer:
        for epoch in range(start, p.epochs):
            t0 = time.perf_counter()
            moco.key_backbone.train()
            moco.key_head.train()
            loss, updates, waited = train_one_epoch(query, batches, optimizer, scheduler, plan,
                                                    epoch, seed, updates, step)
            losses.append({"epoch": epoch + 1,
                           "loss": finite_or_raise(session.all_mean(loss), "MoCo loss"),
                           "time_s": time.perf_counter() - t0, "data_wait_s": waited,
                           "end": time.time()})
            # the last epoch's state is the encoder itself (written by ensure_encoder)
            if writer is not None and epoch + 1 < p.epochs and cadence.due(epoch + 1):
                cadence.mark(epoch + 1)
                writer.submit(functools.partial(save, {
                    "model": snapshot(moco.state_dict()),
                    "queue": snapshot(criterion.state_dict()),
                    "optimizer": snapshot(optimizer.state_dict()),
                    "epoch": epoch + 1, "losses": list(losses)}))
    return {k: v.detach().cpu() for k, v in moco.backbone.state_dict().items()}


def _batches(recipe: Recipe, data, session: Session, plan, device: torch.device, seed: int):
    """Two-view uint8 batches [B, 2, S, S], normalised on the device."""
    from explorer.data import XrayDataset
    from explorer.data.transforms import device_batches
    from explorer.train.inputs import loader_plan, train_loader

    lp = loader_plan(recipe, plan.per_step_batch, device.type == "cuda")
    loader = train_loader(XrayDataset(data.train, TwoViews(recipe)), plan, session, lp, seed)
    return device_batches(loader, recipe.data, device)
