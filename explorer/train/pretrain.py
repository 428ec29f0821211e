"""MAE pre-training: the worker loop, and the shared encoder cache around it.

Trials whose pre-training inputs hash the same (pre-training config, encoder architecture, data
fingerprint, seed) share one encoder in ``<storage>/_encoders/<key>/``. The first trial to need
it takes a file lock and trains it (resuming from ``partial.pt`` if an earlier holder died);
concurrent trials wait for ``encoder.pt`` to appear. Each user leaves its trial id under
``users/`` so the report can say who shared what.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from explorer.spec.config import Recipe
from explorer.spec.recipes import config_hash
from explorer.storage import ENCODERS, Store, as_store, atomic_torch_save, atomic_write_bytes
from explorer.train.common import (
    autocast,
    build_optimizer,
    build_scheduler,
    finite_or_raise,
    plan_steps,
    setup_worker,
    train_loader,
    train_one_epoch,
)
from explorer.train.session import Session, unwrap

POLL_S = 2.0
N_RECONSTRUCTIONS = 4


@dataclass
class EncoderInfo:
    key: str | None
    path: str | None
    role: str  # "trained" | "reused" | "imported" | "none"

    def to_dict(self) -> dict:
        return asdict(self)


def pretrain_inputs(recipe: Recipe, data_fingerprint: str) -> dict:
    """Everything that changes what pre-training produces (and nothing that does not)."""
    data = recipe.data.model_dump(mode="json", exclude={"loader_workers", "root"})
    pre = recipe.pretrain.model_dump(mode="json", exclude={"enabled", "from_checkpoint"})
    return {"pretrain": pre, "model": recipe.model.model_dump(mode="json", exclude={"global_pool"}),
            "data": data, "data_fingerprint": data_fingerprint, "seed": recipe.seed}


def pretrain_key(recipe: Recipe, data_fingerprint: str) -> str:
    return config_hash(pretrain_inputs(recipe, data_fingerprint), n=16)


def pretrain_loop(recipe: Recipe, data, session: Session, workdir: Path,
                  on_epoch: Callable[[], None] | None = None) -> dict:
    """Train an MAE on ``data.train`` images; resume from ``workdir/partial.pt``.

    Returns the final MAE state dict (released-checkpoint key layout). Rank 0 writes
    ``partial.pt`` every epoch and ``losses.json`` (mean loss per epoch), then calls
    ``on_epoch``.
    """
    from explorer.data import XrayDataset, build_transform
    from explorer.models import create_mae

    p = recipe.pretrain
    device = setup_worker(recipe, session, seed_offset=1)
    mae = create_mae(recipe.model.arch, img_size=recipe.data.image_size,
                     patch_size=recipe.model.patch_size, decoder_dim=p.decoder_dim,
                     decoder_depth=p.decoder_depth, decoder_heads=p.decoder_heads,
                     norm_pix_loss=p.norm_pix_loss)
    model = session.prepare_model(mae)
    tf = build_transform(recipe.data, train=True, crop_scale=tuple(p.crop_scale), hflip=p.hflip,
                         interpolation=p.interpolation)
    loader = train_loader(XrayDataset(data.train, tf), p.batch_size, session,
                          recipe.data.loader_workers, seed=recipe.seed)
    plan = plan_steps(p, session.world_size, len(data.train))
    optimizer = build_optimizer(unwrap(model), p, plan.lr)
    scheduler = build_scheduler(optimizer, plan, p)

    start, losses = 0, []
    partial = workdir / "partial.pt"
    if partial.is_file():
        state = torch.load(partial, map_location="cpu", weights_only=True)
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, losses = int(state["epoch"]), list(state["losses"])

    updates = start * plan.updates_per_epoch
    scheduler.step_update(updates)
    for epoch in range(start, p.epochs):
        t0 = time.perf_counter()

        def step(imgs, _targets):
            with autocast(device, recipe.resources):
                return model(imgs.to(device, non_blocking=True), mask_ratio=p.mask_ratio)[0]

        loss, updates = train_one_epoch(model, loader, optimizer, scheduler, plan, epoch,
                                        recipe.seed, updates, step)
        mean_loss = finite_or_raise(session.all_mean(loss), "MAE loss")
        losses.append({"epoch": epoch + 1, "loss": mean_loss,
                       "time_s": time.perf_counter() - t0})
        if session.is_main:
            atomic_torch_save({"model": unwrap(model).state_dict(),
                               "optimizer": optimizer.state_dict(),
                               "epoch": epoch + 1, "losses": losses}, partial)
            atomic_write_bytes(workdir / "losses.json", json.dumps(losses).encode())
            if on_epoch is not None:
                on_epoch()
        session.barrier()
    return unwrap(model).state_dict()


def _reconstructions(recipe: Recipe, state: dict, data) -> bytes:
    """A few validation images as masked / reconstruction / original PNGs (Parquet bytes)."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from explorer.data import XrayDataset, build_transform
    from explorer.models import create_mae, reconstruction_panels

    p = recipe.pretrain
    mae = create_mae(recipe.model.arch, img_size=recipe.data.image_size,
                     patch_size=recipe.model.patch_size, decoder_dim=p.decoder_dim,
                     decoder_depth=p.decoder_depth, decoder_heads=p.decoder_heads,
                     norm_pix_loss=p.norm_pix_loss)
    mae.load_state_dict(state)
    split = data.val if len(data.val) else data.train
    ds = XrayDataset(split, build_transform(recipe.data, train=False))
    idx = np.linspace(0, len(ds) - 1, num=min(N_RECONSTRUCTIONS, len(ds))).astype(int)
    imgs = torch.stack([ds[int(i)][0] for i in idx])
    panels = reconstruction_panels(mae, imgs, mask_ratio=p.mask_ratio, mean=recipe.data.mean,
                                   std=recipe.data.std, seed=recipe.seed)
    rows = []
    for i, pan in zip(idx, panels):
        for name, arr in pan.items():
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG")
            rows.append({"image_id": str(split.image_ids[i]), "panel": name,
                         "png": buf.getvalue()})
    out = io.BytesIO()
    pd.DataFrame(rows).to_parquet(out, index=False)
    return out.getvalue()


def ensure_encoder(recipe: Recipe, data, storage: Store | Path, session: Session
                   ) -> EncoderInfo:
    """The trial's encoder: imported, found in the shared cache, or pre-trained here (once)."""
    p = recipe.pretrain
    if p.from_checkpoint:
        path = Path(p.from_checkpoint).expanduser()
        return EncoderInfo(key=f"file:{path.name}", path=str(path), role="imported")
    if not recipe.uses_mae_pretraining:
        return EncoderInfo(key=None, path=None, role="none")

    store = as_store(storage)
    key = pretrain_key(recipe, data.fingerprint)
    rel = f"{ENCODERS}/{key}"
    enc_dir = store.path(rel)
    final = enc_dir / "encoder.pt"
    if session.is_main:
        (enc_dir / "users").mkdir(parents=True, exist_ok=True)
        (enc_dir / "users" / session.trial_id).touch()
        store.push(f"{rel}/users/{session.trial_id}")
    lock = store.lock(f"{rel}/lock", owner=session.trial_id)
    while True:
        if store.fetch(f"{rel}/encoder.pt"):  # every rank, on its own node
            return EncoderInfo(key=key, path=str(final), role="reused")
        got = session.broadcast(lock.try_acquire() if session.is_main else None)
        if got:
            break
        time.sleep(POLL_S)

    try:
        if store.fetch(f"{rel}/encoder.pt"):  # finished between our check and the lock
            return EncoderInfo(key=key, path=str(final), role="reused")
        store.match_stored(f"{rel}/partial.pt")  # an earlier holder's last stored epoch
        t0 = time.perf_counter()
        state = pretrain_loop(recipe, data, session, enc_dir,
                              on_epoch=lambda: store.push(rel, exact=False))
        if session.is_main:
            atomic_write_bytes(enc_dir / "reconstructions.parquet",
                               _reconstructions(recipe, state, data))
            meta = {"key": key, "trained_by": session.trial_id,
                    "wall_time_s": time.perf_counter() - t0,
                    "inputs": pretrain_inputs(recipe, data.fingerprint)}
            atomic_write_bytes(enc_dir / "meta.json", json.dumps(meta, indent=2).encode())
            atomic_torch_save({"model": state, "epoch": p.epochs,
                               "config": json.dumps(meta["inputs"])}, final)
            store.push(rel, exact=False, last=("encoder.pt",))  # last: marks it complete
            store.delete(f"{rel}/partial.pt")
        session.barrier()
    finally:
        if session.is_main:
            lock.release()
    return EncoderInfo(key=key, path=str(final), role="trained")
