"""Fine-tuning: the worker loop that turns an encoder (or a CNN) into a 14-finding classifier.

Per epoch: train with BCE-with-logits (optionally multi-label mixup/cutmix), score the
validation split (mean AUC over the findings that have both classes), keep the best epoch,
save the resume state, and report to Ray so ASHA can stop weak trials. The test split is never
touched here.

The resume state is one file in the trial's record, ``resume.pt`` (model, optimizer, epoch,
history, best epoch with its weights and validation probabilities), replaced atomically after
every epoch by rank 0 before the epoch is reported. Whatever restarts the loop (a Train worker
restarted by ``FailureConfig``, a trial retried by Tune, ``--resume`` after a kill) finds the
newest finished epoch there. Ray's own checkpoints are not used: Tune's experiment snapshot can
lag the deletion of an older checkpoint, and a driver killed in that window left a trial Tune
could not restore.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from explorer.config import Recipe
from explorer.errors import DataError
from explorer.storage import atomic_torch_save
from explorer.train.artifacts import TrialArtifacts
from explorer.train.common import (
    autocast,
    build_optimizer,
    build_scheduler,
    current_lr,
    finite_or_raise,
    plan_steps,
    setup_worker,
    train_loader,
    train_one_epoch,
)
from explorer.train.pretrain import EncoderInfo
from explorer.train.session import Session, unwrap

METRIC = "best_val_mean_auc"


def build_classifier(recipe: Recipe, num_classes: int, encoder: EncoderInfo) -> torch.nn.Module:
    from explorer.models import create_cnn, create_vit_classifier, load_weights_file

    f = recipe.finetune
    if recipe.model.family == "cnn":   # a MoCo encoder when the recipe pre-trains one
        return create_cnn(recipe.model.arch, num_classes=num_classes,
                          weights=encoder.path or f.weights)
    state = load_weights_file(encoder.path) if encoder.path else None
    return create_vit_classifier(recipe.model.arch, img_size=recipe.data.image_size,
                                 patch_size=recipe.model.patch_size, num_classes=num_classes,
                                 drop_path=f.drop_path, global_pool=recipe.model.global_pool,
                                 head_init_std=f.head_init_std, encoder_state=state)


def make_mixup(recipe: Recipe, num_classes: int):
    """timm's Mixup/CutMix in multi-label mode: targets mixed with the images' lambda."""
    from timm.data import Mixup

    f = recipe.finetune
    if f.mix == "none":
        return None
    return Mixup(mixup_alpha=f.mixup_alpha if f.mix in ("mixup", "both") else 0.0,
                 cutmix_alpha=f.cutmix_alpha if f.mix in ("cutmix", "both") else 0.0,
                 label_smoothing=0.0, num_classes=num_classes, multi_label=True, mode="batch")


@torch.no_grad()
def predict(model: torch.nn.Module, dataset, device: torch.device, batch_size: int
            ) -> np.ndarray:
    """Sigmoid probabilities [N, C] in dataset order, computed in float32 even where training
    uses bf16 autocast: bf16 logits keep 8 significant bits, so close scores tie and every AUC
    computed from them is pulled towards 0.5 (measured on an H200: BENCHMARKS.md, section 7)."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    out = []
    for imgs, _ in loader:
        logits = model(imgs.to(device, non_blocking=True))
        out.append(torch.sigmoid(logits.float()).cpu().numpy())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out).astype(np.float32)


def check_validation(data) -> None:
    from explorer.metrics import undefined_classes

    if len(data.val) == 0:
        raise DataError("the validation split is empty: nothing to select recipes on")
    missing = undefined_classes(data.val.labels, data.findings)
    if len(missing) == len(data.findings):
        raise DataError("no finding has both positive and negative cases in the validation "
                        "split, so no AUC can be computed: use more validation images")


RESUME = "resume.pt"


def _load_state(path: Path, model, optimizer) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    unwrap(model).load_state_dict(state.pop("model"))
    optimizer.load_state_dict(state.pop("optimizer"))
    probs = state.get("best_probs")
    state["best_probs"] = probs.numpy() if probs is not None else None
    return state


def _save_state(path: Path, model, optimizer, st: dict) -> None:
    probs = st["best_probs"]
    atomic_torch_save({"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                       "epoch": st["epoch"], "history": st["history"], "best": st["best"],
                       "best_model": st["best_model"],
                       "best_probs": torch.from_numpy(probs) if probs is not None else None},
                      path)


def _resume(artifacts: TrialArtifacts, session: Session, model, optimizer, data,
            epochs_planned: int) -> dict:
    """The state saved after the newest finished epoch; the record is rewritten from it, so
    files written for an epoch that did not finish saving its state are replaced."""
    state = _load_state(artifacts.path(RESUME), model, optimizer)
    if session.is_main:
        artifacts.write_json("resumes.json", [*artifacts.read_json("resumes.json", []),
                                              {"from_epoch": state["epoch"], "at": time.time()}])
        artifacts.write_json("history.json", state["history"])
        artifacts.write_json("summary.json", {**summarize(state, epochs_planned),
                                              "updated": time.time()})
        if state["best_model"] is not None:
            artifacts.save_model(state["best_model"])
            artifacts.write_predictions("val", data.val, state["best_probs"], data.findings)
        artifacts.commit()
    return state


def drop_resume_state(artifacts: TrialArtifacts) -> None:
    """A finished or stopped trial is never resumed: free its (at paper scale, GB) state."""
    artifacts.path(RESUME).unlink(missing_ok=True)


def _epoch_metrics(st: dict, findings) -> dict[str, Any]:
    last = st["history"][-1]
    best = st["best"] or {}
    m = {"epoch": last["epoch"], "val_mean_auc": last["val_mean_auc"],
         "train_loss": last["train_loss"], "lr": last["lr"],
         METRIC: best.get("val_mean_auc", float("nan")), "best_epoch": best.get("epoch", 0)}
    for f, auc in zip(findings, last["val_auc"]):
        m[f"val_auc/{f}"] = auc
    return m


def report_finished(artifacts: TrialArtifacts, findings, session: Session) -> None:
    """Report a finished trial's last epoch from its record (Tune needs one result)."""
    summary = artifacts.read_json("summary.json") or {}
    st = {"history": artifacts.read_json("history.json") or [],
          "best": {"epoch": summary.get("best_epoch"), "val_mean_auc": summary.get("val_mean_auc")}}
    session.report(_epoch_metrics(st, findings) if session.is_main and st["history"] else {})


def finetune_loop(recipe: Recipe, data, session: Session, encoder: EncoderInfo,
                  artifacts: TrialArtifacts | None = None,
                  on_finish: Callable[[dict], None] | None = None) -> dict:
    """Fine-tune, validate every epoch, report; returns the final summary (rank 0).

    ``on_finish(summary)`` runs on rank 0 after the last epoch, before its report.
    """
    from explorer.data import XrayDataset, build_transform
    from explorer.metrics import per_class_auc

    f = recipe.finetune
    n_classes = len(data.findings)
    device = setup_worker(recipe, session, seed_offset=2)
    model = build_classifier(recipe, n_classes, encoder)
    channels_last = recipe.model.family == "cnn"  # faster convolutions, CPU (~1.25x) and GPU
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = session.prepare_model(model)
    tf = build_transform(recipe.data, train=True, crop_scale=tuple(f.crop_scale), hflip=f.hflip,
                         rand_augment=f.rand_augment, random_erasing=f.random_erasing,
                         interpolation=f.interpolation)
    loader = train_loader(XrayDataset(data.train, tf), f.batch_size, session,
                          recipe.data.loader_workers, seed=recipe.seed)
    val_ds = XrayDataset(data.val, build_transform(recipe.data, train=False))
    plan = plan_steps(f, session.world_size, len(data.train))
    layer_decay = f.layer_decay if recipe.model.family == "vit" else None
    optimizer = build_optimizer(unwrap(model), f, plan.lr, layer_decay=layer_decay)
    scheduler = build_scheduler(optimizer, plan, f)
    mixup = make_mixup(recipe, n_classes)
    criterion = torch.nn.BCEWithLogitsLoss()

    st: dict[str, Any] = {"epoch": 0, "history": [], "best": None, "best_model": None,
                          "best_probs": None}
    if artifacts is not None and artifacts.path(RESUME).is_file():
        st.update(_resume(artifacts, session, model, optimizer, data, f.epochs))
    session.barrier()  # every rank has read the state before rank 0 can replace it
    if st["epoch"] >= f.epochs and st["history"]:
        # Finished before an interruption hid it from Tune: finish it (if the kill came before
        # ``on_finish``) and report the last epoch again.
        if session.is_main and on_finish is not None:
            on_finish(summarize(st, f.epochs))
        session.report(_epoch_metrics(st, data.findings) if session.is_main else {})
        return summarize(st, f.epochs)

    def step(imgs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        imgs = imgs.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if mixup is not None and len(imgs) > 1:
            imgs, targets = mixup(imgs, targets)
        if channels_last:
            imgs = imgs.contiguous(memory_format=torch.channels_last)
        with autocast(device, recipe.resources):
            return criterion(model(imgs).float(), targets)

    updates = st["epoch"] * plan.updates_per_epoch
    scheduler.step_update(updates)
    for epoch in range(st["epoch"], f.epochs):
        t0 = time.perf_counter()
        loss, updates = train_one_epoch(model, loader, optimizer, scheduler, plan, epoch,
                                        recipe.seed, updates, step)
        train_loss = finite_or_raise(session.all_mean(loss), "training loss")
        st["epoch"] = epoch + 1
        report: dict[str, Any] = {}
        if session.is_main:
            probs = predict(unwrap(model), val_ds, device, f.batch_size)
            table = per_class_auc(data.val.labels, probs, data.findings)
            defined = table["auc"].dropna()
            mean = float(defined.mean()) if len(defined) else float("nan")
            st["history"].append({"epoch": epoch + 1, "val_mean_auc": mean,
                                  "val_auc": [None if math.isnan(a) else float(a)
                                              for a in table["auc"]],
                                  "train_loss": train_loss, "lr": current_lr(optimizer),
                                  "epoch_time_s": time.perf_counter() - t0})
            best = st["best"]
            if best is None or (not math.isnan(mean) and mean > best["val_mean_auc"]):
                st["best"] = {"epoch": epoch + 1, "val_mean_auc": mean}
                st["best_model"] = copy.deepcopy({k: v.detach().cpu() for k, v in
                                                  unwrap(model).state_dict().items()})
                st["best_probs"] = probs
                if artifacts is not None:
                    artifacts.save_model(st["best_model"])
                    artifacts.write_predictions("val", data.val, probs, data.findings)
            if artifacts is not None:
                artifacts.write_json("history.json", st["history"])
                artifacts.write_json("summary.json",
                                     {**summarize(st, f.epochs), "updated": time.time()})
                _save_state(artifacts.path(RESUME), model, optimizer, st)
                artifacts.commit()
            report = _epoch_metrics(st, data.findings)
            if epoch + 1 == f.epochs and on_finish is not None:
                # Before the last report: a scheduler may stop the trial right after it.
                on_finish(summarize(st, f.epochs))
        session.report(report)
    return summarize(st, f.epochs)


def summarize(st: dict, epochs_planned: int) -> dict:
    best = st.get("best") or {}
    hist = st.get("history") or []
    at_best = next((h for h in hist if h["epoch"] == best.get("epoch")), None)
    return {"epochs_run": st.get("epoch", 0), "epochs_planned": epochs_planned,
            "best_epoch": best.get("epoch"), "val_mean_auc": best.get("val_mean_auc"),
            "val_auc": at_best["val_auc"] if at_best else None}
