"""Fine-tuning: the worker loop that turns an encoder (or a CNN) into a 14-finding classifier.

Per epoch: train with BCE-with-logits (optionally multi-label mixup/cutmix), score the
validation split on every rank (mean AUC over the findings that have both classes,
``explorer.train.validate``), keep the best epoch, queue the record's writes and, at the
``checkpoint`` cadence, the resume state (``explorer.train.resume``), and report to Ray so
ASHA can stop weak trials. The test split is never touched here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from explorer.errors import DataError
from explorer.names import METRIC
from explorer.spec.config import Recipe
from explorer.train.artifacts import TrialArtifacts
from explorer.train.common import (
    autocast,
    build_optimizer,
    build_scheduler,
    current_lr,
    finite_or_raise,
    maybe_compile,
    plan_steps,
    setup_worker,
    train_one_epoch,
)
from explorer.train.pretrain import EncoderInfo
from explorer.train.resume import RESUME, Recorder, load_state, resume_files
from explorer.train.session import Session, unwrap
from explorer.train.validate import predict, score

__all__ = ["METRIC", "RESUME", "build_classifier", "finetune_loop", "predict"]


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


def check_validation(data) -> None:
    from explorer.metrics import undefined_classes

    if len(data.val) == 0:
        raise DataError("the validation split is empty: nothing to select recipes on")
    missing = undefined_classes(data.val.labels, data.findings)
    if len(missing) == len(data.findings):
        raise DataError("no finding has both positive and negative cases in the validation "
                        "split, so no AUC can be computed: use more validation images")


def drop_resume_state(artifacts: TrialArtifacts) -> None:
    """A finished or stopped trial is never resumed: free its (at paper scale, GB) state."""
    for p in resume_files(artifacts.root):
        p.unlink(missing_ok=True)


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


class _Run:
    """One worker's fine-tuning parts: model, batches, validation, optimizer, the step."""

    def __init__(self, recipe: Recipe, data, session: Session, encoder: EncoderInfo):
        from explorer.data import XrayDataset, build_transform
        from explorer.data.transforms import device_batches
        from explorer.train.inputs import loader_plan, train_loader
        from explorer.train.validate import Validator

        self.started = time.time()  # the stage's wall time starts with its set-up
        f = self.f = recipe.finetune
        self.recipe, self.data, self.session = recipe, data, session
        n_classes = len(data.findings)
        self.device = setup_worker(recipe, session, seed_offset=2)
        model = build_classifier(recipe, n_classes, encoder)
        self.channels_last = recipe.model.family == "cnn"  # faster convolutions, CPU and GPU
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = maybe_compile(session.prepare_model(model), recipe.resources)
        self.plan = plan_steps(f, session.world_size, len(data.train))
        lp = loader_plan(recipe, self.plan.per_step_batch, self.device.type == "cuda")
        tf = build_transform(recipe.data, train=True, crop_scale=tuple(f.crop_scale),
                             hflip=f.hflip, rand_augment=f.rand_augment,
                             interpolation=f.interpolation)
        loader = train_loader(XrayDataset(data.train, tf), self.plan, session, lp, recipe.seed)
        self.batches = device_batches(loader, recipe.data, self.device, f.random_erasing)
        val = XrayDataset(data.val, build_transform(recipe.data, train=False))
        self.validate = Validator(val, n_classes, session, recipe.data, self.device,
                                  f.batch_size, lp, self.channels_last)
        layer_decay = f.layer_decay if recipe.model.family == "vit" else None
        self.optimizer = build_optimizer(unwrap(self.model), f, self.plan.lr, layer_decay)
        self.scheduler = build_scheduler(self.optimizer, self.plan, f)
        self.mixup = make_mixup(recipe, n_classes)
        self.criterion = torch.nn.BCEWithLogitsLoss()
        self.updates = 0

    def step(self, imgs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from explorer.data.transforms import model_input

        if self.mixup is not None and len(imgs) > 1:  # on the grey channel: same result
            imgs, targets = self.mixup(imgs, targets)
        with autocast(self.device, self.recipe.resources):
            logits = self.model(model_input(imgs, self.channels_last))
            return self.criterion(logits.float(), targets)

    def start(self, artifacts: TrialArtifacts | None, recorder: Recorder | None) -> dict:
        """A fresh state, or the newest resume state (the record rewritten from it)."""
        st: dict[str, Any] = {"epoch": 0, "history": [], "best": None, "best_probs": None}
        if artifacts is not None and artifacts.path(RESUME).is_file():
            st.update(load_state(artifacts.path(RESUME), self.model, self.optimizer))
            if recorder is not None:
                artifacts.write_json("resumes.json", [*artifacts.read_json("resumes.json", []),
                                                      {"from_epoch": st["epoch"],
                                                       "at": time.time()}])
                artifacts.write_json("history.json", st["history"])
                artifacts.write_json("summary.json", {**summarize(st, self.f.epochs),
                                                      "updated": time.time()})
                recorder.restore(st)
                artifacts.commit()
        st["plan"], st["started"] = self.plan.record(), self.started
        self.session.barrier()  # every rank has read the state before rank 0 can replace it
        self.updates = st["epoch"] * self.plan.updates_per_epoch
        self.scheduler.step_update(self.updates)
        return st

    def train_and_score(self, st: dict, epoch: int) -> bool:
        """Train one epoch and validate (every rank); on rank 0, record it: whether it is the
        new best."""
        t0 = time.perf_counter()
        loss, self.updates, waited = train_one_epoch(
            self.model, self.batches, self.optimizer, self.scheduler, self.plan, epoch,
            self.recipe.seed, self.updates, self.step)
        train_loss = finite_or_raise(self.session.all_mean(loss), "training loss")
        t_val = time.perf_counter()
        probs = self.validate(unwrap(self.model))
        st["epoch"] = epoch + 1
        if not self.session.is_main:
            return False
        mean, aucs = score(self.data.val.labels, probs, self.data.findings)
        p = self.plan
        st["history"].append({"epoch": epoch + 1, "val_mean_auc": mean, "val_auc": aucs,
                              "train_loss": train_loss, "lr": current_lr(self.optimizer),
                              "epoch_time_s": time.perf_counter() - t0,
                              # where the time went (bench/gpu_search.py reads these)
                              "val_time_s": time.perf_counter() - t_val, "data_wait_s": waited,
                              "images": p.batches_per_epoch * p.per_step_batch * p.world_size,
                              "val_images": len(self.data.val), "end": time.time()})
        best = st["best"]
        if best is None or (not math.isnan(mean) and mean > best["val_mean_auc"]):
            st["best"], st["best_probs"] = {"epoch": epoch + 1, "val_mean_auc": mean}, probs
            return True
        return False


def _epochs(run: _Run, st: dict, recorder: Recorder | None,
            on_finish: Callable[[dict], None] | None) -> None:
    f, session, findings = run.f, run.session, run.data.findings
    if recorder is not None:
        recorder.cadence.mark(st["epoch"])
    for epoch in range(st["epoch"], f.epochs):
        new_best = run.train_and_score(st, epoch)
        report: dict[str, Any] = {}
        if session.is_main:
            if recorder is not None:
                recorder.epoch_done(st, run.model, run.optimizer, new_best,
                                    summarize(st, f.epochs))
            report = _epoch_metrics(st, findings)
            if epoch + 1 == f.epochs and on_finish is not None:
                # Before the last report: a scheduler may stop the trial right after it.
                if recorder is not None:
                    recorder.flush()
                on_finish(summarize(st, f.epochs))
        session.report(report)


def finetune_loop(recipe: Recipe, data, session: Session, encoder: EncoderInfo,
                  artifacts: TrialArtifacts | None = None,
                  on_finish: Callable[[dict], None] | None = None) -> dict:
    """Fine-tune, validate every epoch, report; returns the final summary (rank 0).

    ``on_finish(summary)`` runs on rank 0 after the last epoch (its record written), before
    its report.
    """
    f = recipe.finetune
    run = _Run(recipe, data, session, encoder)
    recorder = None
    if artifacts is not None and session.is_main:
        recorder = Recorder(artifacts, data, recipe.checkpoint, start_epoch=0)
    try:
        st = run.start(artifacts, recorder)
        if st["epoch"] >= f.epochs and st["history"]:
            # Finished before an interruption hid it from Tune: finish it (if the kill came
            # before ``on_finish``) and report the last epoch again.
            if session.is_main and on_finish is not None:
                on_finish(summarize(st, f.epochs))
            session.report(_epoch_metrics(st, data.findings) if session.is_main else {})
        else:
            _epochs(run, st, recorder, on_finish)
    except BaseException:
        if recorder is not None:
            recorder.abandon()  # finish what was queued; the error in flight is the one raised
        raise
    if recorder is not None:
        recorder.close()
    return summarize(st, f.epochs)


def summarize(st: dict, epochs_planned: int) -> dict:
    best = st.get("best") or {}
    hist = st.get("history") or []
    at_best = next((h for h in hist if h["epoch"] == best.get("epoch")), None)
    return {"epochs_run": st.get("epoch", 0), "epochs_planned": epochs_planned,
            "best_epoch": best.get("epoch"), "val_mean_auc": best.get("val_mean_auc"),
            "val_auc": at_best["val_auc"] if at_best else None, "plan": st.get("plan"),
            "started": st.get("started")}
