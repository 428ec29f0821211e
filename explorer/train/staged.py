"""One segment of a staged pre-training: an encoder of the shared cache trained up to a milestone.

The pre-training stage (``explorer.search.pretraining``) trains each distinct encoder as its own
Ray job, in segments when multi-fidelity pre-training is on: up to a milestone, then a probe of
its frozen features (``explorer.train.probe``), then, if it survives, on from ``partial.pt`` with
the full budget's schedule. The encoder lives in the same cache folder, under the same key and
lock, as an encoder a trial pre-trains itself (``explorer.train.pretrain.ensure_encoder``), so a
trial finds it there and reuses it. Beside it:

``probes.json``    [{epoch, probe, value, time_s}]: each probe's validation mean AUC at each
                   milestone (a milestone already probed is never probed again)
``segments.json``  [{until, wall_s, probe_s, by, end}]: the training segments, for the cost
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from explorer.names import ENCODER_PROBES as PROBES_FILE
from explorer.names import ENCODER_SEGMENTS as SEGMENTS
from explorer.spec.config import Recipe
from explorer.storage import ENCODERS, Store, as_store, atomic_write_bytes, read_json
from explorer.train.pretrain import (
    POLL_S,
    _write_pool_record,
    finish_encoder,
    pretrain_key,
    pretrain_loop,
    pretrain_plan,
)
from explorer.train.session import Session


def _append(store: Store, rel: str, name: str, rows: list[dict]) -> None:
    path = store.path(f"{rel}/{name}")
    atomic_write_bytes(path, json.dumps([*(read_json(path, []) or []), *rows]).encode())


def _source(recipe: Recipe, data):
    """What the encoder pre-trains on (the train split or a ``pretrain.data`` pool), as in
    ``ensure_encoder``: the same key, so trials find the stage's encoder."""
    from explorer.data.pool import PretrainData

    return PretrainData.of(recipe.data, recipe.pretrain.data, data)


def pretrain_segment(recipe: Recipe, data, storage: Store | Path, session: Session,
                     until: int | None = None, probes: tuple[str, ...] = (),
                     owner: str = "pretraining stage") -> dict:
    """Train the recipe's encoder in the cache up to ``until`` epochs (None: all of them) and
    score ``probes`` there. Returns {key, epoch, complete, probes: [records at ``epoch``]}."""
    import torch

    from explorer.train.probe import probe_scores
    from explorer.train.starts import describe_start

    p = recipe.pretrain
    store = as_store(storage)
    source = _source(recipe, data)   # pre-training data; probes fit on ``data``'s train/val
    plan = pretrain_plan(recipe, source.n_train, session.world_size)
    key = pretrain_key(recipe, source.fingerprint, plan)
    rel = f"{ENCODERS}/{key}"
    enc_dir = store.path(rel)
    target = p.epochs if until is None else max(1, min(until, p.epochs))
    if session.is_main:
        enc_dir.mkdir(parents=True, exist_ok=True)
    lock = store.lock(f"{rel}/lock", owner=owner)
    # Another search sharing this storage may hold it (a trial pre-training it itself): wait.
    while not session.broadcast(lock.try_acquire() if session.is_main else None):
        time.sleep(POLL_S)
    try:
        complete = store.fetch(f"{rel}/encoder.pt")
        known = [r for r in read_json(enc_dir / PROBES_FILE, []) or [] if r["epoch"] == target]
        wanted = [n for n in probes if n not in {r["probe"] for r in known}]
        if complete and not wanted:
            return {"key": key, "epoch": p.epochs, "complete": True, "probes": known}
        state = None
        if complete:  # probes asked of a finished encoder: its final weights
            target = p.epochs
            state = torch.load(enc_dir / "encoder.pt", map_location="cpu",
                               weights_only=True)["model"]
        t0 = time.perf_counter()
        if state is None:
            store.match_stored(f"{rel}/partial.pt")  # an earlier segment's last stored epoch
            if session.is_main:
                _write_pool_record(enc_dir, source)
            state = pretrain_loop(recipe, source, session, enc_dir, stop_at=target,
                                  on_save=lambda: store.push(rel, exact=False))
        wall = time.perf_counter() - t0
        if session.is_main:
            if target >= p.epochs and not complete:
                finish_encoder(recipe, source, store, key, plan, state, owner, wall,
                               describe_start(recipe, source.notes()))
            t1 = time.perf_counter()
            new = [{"epoch": target, **r} for r in probe_scores(recipe, state, data,
                                                                tuple(wanted))] if wanted else []
            probe_s = time.perf_counter() - t1
            _append(store, rel, PROBES_FILE, new)
            _append(store, rel, SEGMENTS, [{"until": target, "wall_s": 0.0 if complete else wall,
                                            "probe_s": probe_s, "by": owner,
                                            "end": time.time()}])
            store.push(rel, exact=False)
            known += new
        session.barrier()
        return {"key": key, "epoch": target, "complete": target >= p.epochs, "probes": known}
    finally:
        if session.is_main:
            lock.release()
