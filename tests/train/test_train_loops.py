"""The worker loops without Ray (LocalSession): plans, pre-training, fine-tuning, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from explorer.data import DataConfig, load_data
from explorer.errors import SpecError
from explorer.spec.config import FinetuneConfig, PretrainConfig
from explorer.spec.recipes import resolve_recipe
from explorer.train.artifacts import TrialArtifacts
from explorer.train.common import plan_steps
from explorer.train.finetune import METRIC, finetune_loop, make_mixup
from explorer.train.pretrain import EncoderInfo, ensure_encoder, pretrain_key, pretrain_plan
from explorer.train.session import LocalSession


@pytest.fixture(scope="module")
def smoke():
    recipe = resolve_recipe("mae_vit_small_xray", "smoke",
                            ({"pretrain": {"epochs": 2}, "finetune": {"epochs": 2}},))
    return recipe, load_data(recipe.data)


def test_effective_batch_by_accumulation_or_lr_scaling():
    acc = FinetuneConfig(batch_size=128, effective_batch=1024, batch_policy="accumulate")
    plan = plan_steps(acc, world_size=2, n_train=10_000)
    assert plan.accum_steps == 4 and plan.effective_batch == 1024 and plan.per_step_batch == 128
    assert plan.lr == pytest.approx(2.5e-4 * 1024 / 256)  # the study's 1e-3
    scaled = FinetuneConfig(batch_size=64, effective_batch=1024, batch_policy="scale_lr")
    plan = plan_steps(scaled, world_size=1, n_train=10_000)
    assert plan.accum_steps == 1 and plan.lr == pytest.approx(2.5e-4 * 64 / 256)


@pytest.mark.parametrize("effective,batch", [(2048, 256), (1024, 128), (1000, 96)])
def test_plan_keeps_the_effective_batch_on_1_to_64_workers_or_refuses(effective, batch):
    cfg = PretrainConfig(batch_size=batch, effective_batch=effective, batch_policy="accumulate")
    kept = []
    for world in range(1, 65):
        try:
            plan = plan_steps(cfg, world_size=world, n_train=112_120, what="pretrain")
        except SpecError as exc:
            msg = str(exc)
            assert effective % world and "\n" not in msg and f"over {world} workers" in msg
            continue
        kept.append(world)
        assert plan.world_size * plan.per_step_batch * plan.accum_steps == effective
        assert plan.effective_batch == effective and plan.per_step_batch <= batch
        assert plan.lr == pytest.approx(cfg.base_lr * effective / 256)  # whatever the workers
        per_worker = effective // world   # the fewest accumulation steps that fit the batch
        assert plan.accum_steps == min(a for a in range(1, per_worker + 1)
                                       if per_worker % a == 0 and per_worker // a <= batch)
        assert plan.batches_per_epoch == plan.updates_per_epoch * plan.accum_steps
        assert plan.batches_per_epoch * plan.per_step_batch <= 112_120 // world
    assert kept == [w for w in range(1, 65) if effective % w == 0]


def test_plan_refuses_an_update_larger_than_the_data():
    cfg = FinetuneConfig(batch_size=128, effective_batch=1024, batch_policy="accumulate")
    with pytest.raises(SpecError, match="more than the 1000 training images"):
        plan_steps(cfg, world_size=1, n_train=1000)
    small = FinetuneConfig(batch_size=64, effective_batch=64, batch_policy="scale_lr")
    plan = plan_steps(small, world_size=2, n_train=40)   # smaller than a batch: one of 20
    assert (plan.per_step_batch, plan.updates_per_epoch) == (20, 1)


def test_pretraining_loss_goes_down_and_encoder_is_shared(smoke, tmp_path):
    recipe, data = smoke
    recipe = recipe.model_copy(update={"pretrain": recipe.pretrain.model_copy(
        update={"epochs": 4, "warmup_epochs": 0})})
    first = ensure_encoder(recipe, data, tmp_path, LocalSession("trial-a"))
    assert first.role == "trained"
    losses = json.loads((tmp_path / "_encoders" / first.key / "losses.json").read_text())
    assert len(losses) == 4 and losses[-1]["loss"] < losses[0]["loss"]
    again = ensure_encoder(recipe, data, tmp_path, LocalSession("trial-b"))
    assert again.role == "reused" and again.path == first.path
    users = sorted(p.name for p in (tmp_path / "_encoders" / first.key / "users").iterdir())
    assert users == ["trial-a", "trial-b"]
    other = recipe.model_copy(update={"pretrain": recipe.pretrain.model_copy(
        update={"mask_ratio": 0.5})})
    plan = pretrain_plan(other, len(data.train), 1)
    assert pretrain_key(other, data.fingerprint, plan) != first.key


def test_finetune_reports_every_epoch_and_resumes_from_checkpoint(smoke, tmp_path):
    recipe, data = smoke
    enc = EncoderInfo(None, None, "none")
    full = LocalSession()
    finetune_loop(recipe.model_copy(update={"finetune": recipe.finetune.model_copy(
        update={"epochs": 3})}), data, full, enc, TrialArtifacts(tmp_path / "art"))
    assert [m["epoch"] for m in full.history] == [1, 2, 3]
    assert all(0 <= m["val_mean_auc"] <= 1 for m in full.history)
    assert full.history[-1][METRIC] == max(m["val_mean_auc"] for m in full.history)
    summary = json.loads((tmp_path / "art" / "summary.json").read_text())
    assert summary["epochs_run"] == 3 and summary["best_epoch"] in (1, 2, 3)
    assert (tmp_path / "art" / "best_model.pt").is_file()

    # Interrupted after 2 epochs, then resumed: epoch 3 starts from the epoch-2 resume state.
    part, art = LocalSession(), TrialArtifacts(tmp_path / "part")
    short = recipe.model_copy(update={"finetune": recipe.finetune.model_copy(
        update={"epochs": 3})})
    finetune_loop(short.model_copy(update={"finetune": short.finetune.model_copy(
        update={"epochs": 2})}), data, part, enc, art)
    # a third epoch that wrote its record but was killed before saving its state
    (tmp_path / "part" / "history.json").write_text(json.dumps(
        [*json.loads((tmp_path / "part" / "history.json").read_text()), {"epoch": 3}]))
    resumed = LocalSession()
    finetune_loop(short, data, resumed, enc, art)
    assert [m["epoch"] for m in resumed.history] == [3]
    assert [h["epoch"] for h in art.read_json("history.json")] == [1, 2, 3]
    assert art.read_json("resumes.json")[0]["from_epoch"] == 2


def test_finished_run_resumed_reports_its_last_epoch_again(smoke, tmp_path):
    recipe, data = smoke
    enc = EncoderInfo(None, None, "none")
    art = TrialArtifacts(tmp_path / "s")
    finetune_loop(recipe, data, LocalSession(), enc, art)
    again, finished = LocalSession(), []
    # killed after its last epoch's state was saved, before on_finish: it finishes now
    finetune_loop(recipe, data, again, enc, art, on_finish=finished.append)
    assert len(again.history) == 1 and again.history[0]["epoch"] == recipe.finetune.epochs
    assert len(finished) == 1 and finished[0]["epochs_run"] == recipe.finetune.epochs


def test_multilabel_mixup_mixes_targets_with_the_image_lambda(smoke):
    recipe, _ = smoke
    recipe = recipe.model_copy(update={"finetune": recipe.finetune.model_copy(
        update={"mix": "mixup", "mixup_alpha": 0.4})})
    mix = make_mixup(recipe, num_classes=14)
    torch.manual_seed(0)
    np.random.seed(0)
    x = torch.stack([torch.full((3, 8, 8), float(i)) for i in range(4)])
    y = torch.zeros(4, 14)
    y[0, 2] = 1
    y[3, 5] = 1
    xm, ym = mix(x.clone(), y.clone())
    lam = float(xm[0, 0, 0, 0] - 3) / (0 - 3)  # image 0 is mixed with the flipped image 3
    assert ym.shape == (4, 14)
    assert ym[0, 2] == pytest.approx(lam, abs=1e-5) and ym[0, 5] == pytest.approx(1 - lam,
                                                                                   abs=1e-5)
    assert torch.all((ym >= 0) & (ym <= 1))


def test_cutmix_multilabel_targets(smoke):
    recipe, _ = smoke
    recipe = recipe.model_copy(update={"finetune": recipe.finetune.model_copy(
        update={"mix": "cutmix", "cutmix_alpha": 1.0})})
    mix = make_mixup(recipe, num_classes=14)
    np.random.seed(1)
    x = torch.zeros(2, 3, 16, 16)
    x[1] = 1.0
    y = torch.tensor([[1.0] + [0.0] * 13, [0.0, 1.0] + [0.0] * 12])
    xm, ym = mix(x.clone(), y.clone())
    pasted = float(xm[0].mean())  # share of image 0 covered by image 1's patch
    assert ym[0, 0] == pytest.approx(1 - pasted, abs=1e-5)
    assert ym[0, 1] == pytest.approx(pasted, abs=1e-5)


def test_predictions_are_float32_where_training_runs_under_bf16_autocast(monkeypatch):
    """On a GPU, ``autocast`` returns bf16 autocast. Here (no GPU) it is patched to return the
    CPU's bf16 autocast, the one thing mocked. Predictions must still come from float32
    logits: in bf16, logits this close collapse onto a few values, and AUCs computed from the
    ties drift towards 0.5 (seen on an H200: 1.9 distinct values per class for 320 images)."""
    import explorer.train.common as common
    import explorer.train.finetune as finetune

    def bf16(device, resources):
        return torch.autocast("cpu", dtype=torch.bfloat16)

    monkeypatch.setattr(common, "autocast", bf16)
    monkeypatch.setattr(finetune, "autocast", bf16)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
    with torch.no_grad():
        model[1].weight.mul_(0.01)
        model[1].bias.fill_(-2.0)  # logits near -2, spread ~0.02: bf16 steps there are 0.0156
    # uint8 grey images, as the loader gives them; the model sees them as 3 channels
    data = [(torch.randint(0, 256, (1, 4, 4), dtype=torch.uint8), torch.zeros(3))
            for _ in range(64)]
    with bf16(None, None):
        x = ((torch.stack([x for x, _ in data]).float() - 127.5) / 63.75).expand(-1, 3, -1, -1)
        assert len(torch.unique(model(x)[:, 0])) < 8
    probs = finetune.predict(model, data, torch.device("cpu"), 16, DataConfig(mean=0.5, std=0.25))
    assert probs.dtype == np.float32
    assert all(len(np.unique(probs[:, j])) == 64 for j in range(3))
