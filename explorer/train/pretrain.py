"""MAE pre-training: the worker loop, and the shared encoder cache around it (MAE, and MoCo v2
for CNNs: ``explorer.train.moco``).

Trials whose pre-training inputs hash the same (pre-training config, encoder architecture, data
fingerprint, seed) share one encoder in ``<storage>/_encoders/<key>/``. The data is the
fine-tuning train split, or the ``pretrain.data`` pool (``explorer.data.pool``), whose
fingerprint includes what the leakage guard left out. The first trial to need
it takes a file lock and trains it (resuming from ``partial.pt`` if an earlier holder died);
concurrent trials wait for ``encoder.pt`` to appear. Each user leaves its trial id under
``users/`` so the report can say who shared what.
"""

from __future__ import annotations

import functools
import io
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from explorer.names import ENCODER_SEGMENTS
from explorer.spec.config import Recipe
from explorer.spec.recipes import config_hash
from explorer.storage import (
    ENCODERS,
    Store,
    as_store,
    atomic_torch_save,
    atomic_write_bytes,
    read_json,
)
from explorer.train.cadence import Cadence, partial_saver, rank0_writer, snapshot
from explorer.train.common import (
    StepPlan,
    autocast,
    build_optimizer,
    build_scheduler,
    finite_or_raise,
    maybe_compile,
    plan_steps,
    setup_worker,
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
    start: dict | None = None  # what the model starts from, and on which data (``starts``)

    def to_dict(self) -> dict:
        return asdict(self)


#: Pre-training fields that only MAE reads (left out of a MoCo encoder's key).
MAE_ONLY = ("mask_ratio", "decoder_dim", "decoder_depth", "decoder_heads", "norm_pix_loss")


def pretrain_plan(recipe: Recipe, n_train: int, world_size: int) -> StepPlan:
    return plan_steps(recipe.pretrain, world_size, n_train, what="pretrain")


def pretrain_inputs(recipe: Recipe, data_fingerprint: str, plan: StepPlan) -> dict:
    """Everything that changes what pre-training produces (and nothing that does not),
    including the effective batch and lr it actually trains with (``plan``): under
    ``scale_lr`` they follow the number of workers."""
    from explorer.train.starts import init_signature

    p = recipe.pretrain
    data = recipe.data.model_dump(mode="json", exclude={"loader_workers", "root"})
    pre = p.model_dump(mode="json", exclude={"enabled", "from_checkpoint", "method", "data",
                                             "init_from", "seed", "moco"})
    out = {"pretrain": pre, "model": recipe.model.model_dump(mode="json", exclude={"global_pool"}),
           "data": data, "data_fingerprint": data_fingerprint, "seed": recipe.pretrain_seed,
           "effective_batch": plan.effective_batch, "lr": plan.lr}
    # A recipe without the newer options (pool, MoCo, init_from, pretrain.seed) hashes as
    # before they existed.
    if p.method != "mae":
        pre = {k: v for k, v in pre.items() if k not in MAE_ONLY}
        out["pretrain"] = {**pre, "method": p.method, "moco": p.moco.model_dump(mode="json")}
    if p.data:   # roots are where the data is mounted; the fingerprint says what it holds
        out["pool"] = [{k: v for k, v in e.model_dump(mode="json").items() if k != "root"}
                       for e in p.data]
    if p.init_from:
        out["init_from"] = init_signature(recipe.model.arch, p.init_from)
    return out


def pretrain_key(recipe: Recipe, data_fingerprint: str, plan: StepPlan) -> str:
    return config_hash(pretrain_inputs(recipe, data_fingerprint, plan), n=16)


def pretrain_loop(recipe: Recipe, data, session: Session, workdir: Path,
                  on_save: Callable[[], None] | None = None, stop_at: int | None = None) -> dict:
    """Train an MAE on ``data.train`` images; resume from ``workdir/partial.pt``.

    Returns the final MAE state dict (released-checkpoint key layout). At the ``checkpoint``
    cadence, rank 0 writes ``partial.pt`` and ``losses.json`` (mean loss per epoch) from a
    background thread, then calls ``on_save`` there; the other ranks never wait for it.
    ``stop_at``: end after this epoch (a milestone of multi-fidelity pre-training) with
    ``partial.pt`` written for it; the lr schedule stays the full budget's, so a later call
    continues exactly where this one stopped.
    """
    from explorer.data import XrayDataset, build_transform
    from explorer.data.transforms import device_batches, model_input
    from explorer.models import create_mae
    from explorer.train.inputs import loader_plan, train_loader

    p = recipe.pretrain
    seed = recipe.pretrain_seed
    device = setup_worker(recipe.model_copy(update={"seed": seed}), session, seed_offset=1)
    mae = create_mae(recipe.model.arch, img_size=recipe.data.image_size,
                     patch_size=recipe.model.patch_size, decoder_dim=p.decoder_dim,
                     decoder_depth=p.decoder_depth, decoder_heads=p.decoder_heads,
                     norm_pix_loss=p.norm_pix_loss)
    if p.init_from:   # continued pre-training
        from explorer.models.starts import init_mae_encoder

        init_mae_encoder(mae, recipe.model.arch, p.init_from)
    model = maybe_compile(session.prepare_model(mae), recipe.resources)
    plan = pretrain_plan(recipe, len(data.train), session.world_size)
    lp = loader_plan(recipe, plan.per_step_batch, device.type == "cuda")
    tf = build_transform(recipe.data, train=True, crop_scale=tuple(p.crop_scale), hflip=p.hflip,
                         interpolation=p.interpolation)
    loader = train_loader(XrayDataset(data.train, tf), plan, session, lp, seed)
    batches = device_batches(loader, recipe.data, device)
    optimizer = build_optimizer(unwrap(model), p, plan.lr)
    scheduler = build_scheduler(optimizer, plan, p)

    start, losses = 0, []
    partial = workdir / "partial.pt"
    if partial.is_file():
        state = torch.load(partial, map_location="cpu", weights_only=True)
        unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, losses = int(state["epoch"]), list(state["losses"])

    def step(imgs, _targets):
        with autocast(device, recipe.resources):
            return model(model_input(imgs), mask_ratio=p.mask_ratio)[0]

    save = partial_saver(workdir, on_save)
    cadence = Cadence(recipe.checkpoint, start)
    updates = start * plan.updates_per_epoch
    scheduler.step_update(updates)
    end = p.epochs if stop_at is None else min(stop_at, p.epochs)
    with rank0_writer(session.is_main, workdir, losses) as writer:
        for epoch in range(start, end):
            t0 = time.perf_counter()
            loss, updates, waited = train_one_epoch(model, batches, optimizer, scheduler, plan,
                                                    epoch, seed, updates, step)
            mean_loss = finite_or_raise(session.all_mean(loss), "MAE loss")
            losses.append({"epoch": epoch + 1, "loss": mean_loss,
                           "time_s": time.perf_counter() - t0, "data_wait_s": waited,
                           "images": plan.batches_per_epoch * plan.per_step_batch
                           * plan.world_size, "end": time.time()})
            # the last epoch's state is the encoder itself (written by ensure_encoder)
            due = cadence.due(epoch + 1) or epoch + 1 == end
            if writer is not None and epoch + 1 < p.epochs and due:
                cadence.mark(epoch + 1)
                writer.submit(functools.partial(save, {
                    "model": snapshot(unwrap(model).state_dict()),
                    "optimizer": snapshot(optimizer.state_dict()),
                    "epoch": epoch + 1, "losses": list(losses), "plan": plan.record()}))
    return unwrap(model).state_dict()


def _reconstructions(recipe: Recipe, state: dict, data) -> bytes:
    """A few validation images as masked / reconstruction / original PNGs (Parquet bytes)."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from explorer.data import XrayDataset, build_transform
    from explorer.data.transforms import model_input, normalise
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
    imgs = model_input(normalise(torch.stack([ds[int(i)][0] for i in idx]), recipe.data))
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


def finish_encoder(recipe: Recipe, data, store: Store, key: str, plan: StepPlan, state: dict,
                   trained_by: str, wall_time_s: float, start: dict | None = None) -> None:
    """Rank 0: write a fully pre-trained encoder into the cache (``encoder.pt`` last: its
    presence marks the encoder complete) and drop the resume state."""
    rel = f"{ENCODERS}/{key}"
    enc_dir = store.path(rel)
    earlier = read_json(enc_dir / ENCODER_SEGMENTS, []) or []  # a staged encoder's earlier segments
    meta = {"key": key, "trained_by": trained_by,
            "wall_time_s": wall_time_s + sum(float(s["wall_s"]) for s in earlier),
            "method": recipe.pretrain.method, "start": start,
            "inputs": pretrain_inputs(recipe, data.fingerprint, plan), "plan": plan.record()}
    _write_encoder(recipe, state, data, enc_dir, meta)
    store.push(rel, exact=False, last=("encoder.pt",))  # last: marks it complete
    store.delete(f"{rel}/partial.pt")


def ensure_encoder(recipe: Recipe, data, storage: Store | Path, session: Session
                   ) -> EncoderInfo:
    """The trial's encoder: imported, found in the shared cache, or pre-trained here (once)."""
    from explorer.data.pool import PretrainData
    from explorer.train.starts import describe_start

    p = recipe.pretrain
    if p.from_checkpoint or not recipe.pretrains:
        return _no_pretraining(recipe)
    source = PretrainData.of(recipe.data, p.data, data)
    start = describe_start(recipe, source.notes())
    data = source   # from here on, "data" is what the encoder pre-trains on
    store = as_store(storage)
    plan = pretrain_plan(recipe, data.n_train, session.world_size)   # no pixels opened yet
    key = pretrain_key(recipe, data.fingerprint, plan)
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
            return EncoderInfo(key=key, path=str(final), role="reused", start=start)
        got = session.broadcast(lock.try_acquire() if session.is_main else None)
        if got:
            break
        time.sleep(POLL_S)

    try:
        if store.fetch(f"{rel}/encoder.pt"):  # finished between our check and the lock
            return EncoderInfo(key=key, path=str(final), role="reused", start=start)
        store.match_stored(f"{rel}/partial.pt")  # an earlier holder's last stored epoch
        t0 = time.perf_counter()
        if session.is_main:   # what the encoder sees, image by image (the leakage test reads it)
            _write_pool_record(enc_dir, source)
        state = _loop(recipe)(recipe, data, session, enc_dir,
                              on_save=lambda: store.push(rel, exact=False))
        if session.is_main:
            finish_encoder(recipe, data, store, key, plan, state, session.trial_id,
                           time.perf_counter() - t0, start)
        session.barrier()
    finally:
        if session.is_main:
            lock.release()
    return EncoderInfo(key=key, path=str(final), role="trained", start=start)


def _write_encoder(recipe: Recipe, state: dict, data, enc_dir: Path, meta: dict) -> None:
    """Reconstructions (MAE), ``meta.json`` and, last, ``encoder.pt``."""
    if recipe.uses_mae_pretraining:
        atomic_write_bytes(enc_dir / "reconstructions.parquet",
                           _reconstructions(recipe, state, data))
    atomic_write_bytes(enc_dir / "meta.json", json.dumps(meta, indent=2).encode())
    atomic_torch_save({"model": state, "epoch": recipe.pretrain.epochs,
                       "config": json.dumps(meta["inputs"])}, enc_dir / "encoder.pt")


def _no_pretraining(recipe: Recipe) -> EncoderInfo:
    """An imported encoder (a file or a named start), or none (a CNN from random weights, a
    file or ImageNet)."""
    from explorer.models.starts import is_named, resolve_start
    from explorer.train.starts import describe_start

    ckpt = recipe.pretrain.from_checkpoint
    if not ckpt:
        return EncoderInfo(key=None, path=None, role="none", start=describe_start(recipe))
    path = resolve_start(recipe.model.arch, ckpt, "pretrain.from_checkpoint") \
        if is_named(ckpt) else Path(ckpt).expanduser()
    return EncoderInfo(key=f"file:{ckpt if is_named(ckpt) else path.name}", path=str(path),
                       role="imported", start=describe_start(recipe))


def _loop(recipe: Recipe) -> Callable:
    if recipe.uses_moco_pretraining:
        from explorer.train.moco import moco_loop

        return moco_loop
    return pretrain_loop


def _write_pool_record(enc_dir: Path, source) -> None:
    """``pool.json`` (sources, counts, what the leakage guard left out and why) and
    ``pool.parquet`` (every pre-training image: entry, source, split, image and patient id)."""
    import pandas as pd

    source.train  # noqa: B018 - opens the pool (builds its caches the first time)
    buf = io.BytesIO()
    pd.DataFrame(source.manifest).to_parquet(buf, index=False)
    atomic_write_bytes(enc_dir / "pool.parquet", buf.getvalue())
    atomic_write_bytes(enc_dir / "pool.json", json.dumps(source.notes(), indent=2).encode())
