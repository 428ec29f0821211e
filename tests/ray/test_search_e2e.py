"""Whole searches at smoke scale with real Ray, real Optuna and real timm models.

One Ray instance (2 CPUs) serves the module. The first search runs once (fixture) and the
tests read what it left behind; later searches reuse its storage, as users do.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
import ray

from explorer.search.cli import main
from explorer.search.tuning import DUPLICATE_ATTR

REPO = Path(__file__).resolve().parents[2]
SPACES = REPO / "search_spaces"
pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]  # per test, fixtures included


@pytest.fixture(scope="module")
def ray_2cpu():
    # A private local Ray, as the CLI starts: never a cluster someone else started on this
    # machine (Ray's default address would join it, and refuse num_cpus).
    ray.init(address="local", num_cpus=2, include_dashboard=None)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    return tmp_path_factory.mktemp("storage")


def search(space: str, storage: Path, *sets: str, extra: tuple[str, ...] = ()) -> int:
    args = [str(SPACES / f"{space}.yaml"), "--storage", str(storage),
            "--reports", str(storage / "reports"), "--set", "scale=smoke", *extra]
    for s in sets:
        args += ["--set", s]
    return main(args)


@pytest.fixture(scope="module")
def mask_ratio_run(ray_2cpu, storage):
    assert search("mask_ratio", storage, "search.num_samples=3") == 0
    return storage / "mask_ratio"


def test_search_writes_report_and_tables(mask_ratio_run, storage):
    trials = pd.read_parquet(mask_ratio_run / "results" / "trials.parquet")
    recipes = trials[trials.kind == "recipe"]
    assert len(recipes) == 3 and recipes.trial_id.is_unique
    assert recipes.val_mean_auc.notna().all() and recipes.val_mean_auc.between(0, 1).all()
    assert set(recipes.status) <= {"completed", "stopped_early"}
    assert recipes["param/pretrain.mask_ratio"].notna().all()
    assert (trials.kind == "baseline").sum() == 1  # smoke scale: one DenseNet-121 seed
    classes = pd.read_parquet(mask_ratio_run / "results" / "classes.parquet")
    assert set(classes.split) == {"val", "test"}
    assert set(classes.finding) == set(json.loads(
        (mask_ratio_run / "results" / "meta.json").read_text())["findings"])
    # every trial's resolved config is saved with its hash
    for tid in recipes.trial_id:
        cfg = json.loads((mask_ratio_run / "trials" / tid / "config.json").read_text())
        assert len(cfg["config_hash"]) == 12 and cfg["recipe"]["model"]["arch"] == "vit_nano"
    page = (storage / "reports" / "mask_ratio" / "index.html").read_text()
    assert "Recipe search" in page and all(t in page for t in recipes.label)
    sections = ["Verdict", "Leaderboard", "Per-class AUC", "Knob effects", "Learning curves",
                "ROC curves", "MAE reconstructions", "Reproducibility"]
    assert all(f"{i}. {name}" in page for i, name in enumerate(sections, 1))
    # finished and stopped trials drop their resume state; Ray keeps no checkpoints of ours
    assert not list(storage.glob("**/resume.pt")) and not list(storage.glob("**/checkpoint_*"))
    assert (storage / "reports" / "mask_ratio" / "trials.parquet").is_file()


def test_test_split_scored_only_for_finalists_and_baselines(mask_ratio_run):
    trials = pd.read_parquet(mask_ratio_run / "results" / "trials.parquet")
    preds = pd.read_parquet(mask_ratio_run / "results" / "predictions.parquet")
    tested = set(preds[preds.split == "test"].trial_id)
    expected = set(trials[trials.finalist | (trials.kind == "baseline")].trial_id)
    assert tested == expected
    finalists = trials[trials.finalist].sort_values("val_mean_auc", ascending=False)
    others = trials[(trials.kind == "recipe") & ~trials.finalist]
    if len(others):
        assert finalists.val_mean_auc.min() >= others.val_mean_auc.max()


def test_existing_experiment_is_never_overwritten(mask_ratio_run, storage, capsys):
    before = (mask_ratio_run / "results" / "trials.parquet").stat().st_mtime_ns
    assert search("mask_ratio", storage, "search.num_samples=3") == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--name" in err and len(err.strip().splitlines()) == 1
    assert (mask_ratio_run / "results" / "trials.parquet").stat().st_mtime_ns == before


def test_resume_of_a_finished_search_reruns_nothing(mask_ratio_run, storage):
    done = {p: p.stat().st_mtime_ns for p in mask_ratio_run.glob("trials/*/done.json")}
    assert search("mask_ratio", storage, "search.num_samples=3", extra=("--resume",)) == 0
    assert {p: p.stat().st_mtime_ns for p in done} == done
    trials = pd.read_parquet(mask_ratio_run / "results" / "trials.parquet")
    assert (trials.kind == "recipe").sum() == 3


def test_second_search_reuses_encoders_and_baselines(mask_ratio_run, storage):
    """layer_decay searches fine-tuning only: its one encoder (mask 0.9) exists already."""
    encoders_before = set((storage / "_encoders").iterdir())
    assert search("layer_decay", storage, "search.num_samples=3") == 0
    assert set((storage / "_encoders").iterdir()) == encoders_before
    run = storage / "layer_decay"
    trials = pd.read_parquet(run / "results" / "trials.parquet")
    recipes = trials[trials.kind == "recipe"]
    assert set(recipes.pretrain_role) == {"reused"} and recipes.pretrain_key.nunique() == 1
    first = pd.read_parquet(mask_ratio_run / "results" / "trials.parquet")
    at_09 = first[first["param/pretrain.mask_ratio"].round(3) == 0.9].pretrain_key
    assert recipes.pretrain_key.iloc[0] in set(at_09)
    meta = json.loads((run / "results" / "meta.json").read_text())
    assert all(b["cached"] for b in meta["baselines"]), "same data and budget: baseline reused"
    assert len(list((storage / "_baselines").iterdir())) == 1


def test_extend_adds_trials_that_learn_from_the_old_ones(mask_ratio_run, storage):
    assert search("mask_ratio", storage, "search.num_samples=3", extra=("--extend", "2")) == 0
    trials = pd.read_parquet(mask_ratio_run / "results" / "trials.parquet")
    assert (trials.kind == "recipe").sum() == 5 and trials.trial_id.is_unique
    study = optuna.load_study(study_name="mask_ratio", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(mask_ratio_run / "optuna.journal"))))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    run_ones = [t for t in complete if DUPLICATE_ATTR not in t.user_attrs]
    assert len(run_ones) == 5  # the extension's sampler saw the 3 old trials in the same study
    for dup in (t for t in complete if DUPLICATE_ATTR in t.user_attrs):  # told known value
        known = study.trials[dup.user_attrs[DUPLICATE_ATTR]]
        assert dup.params == known.params and dup.value == known.value
    assert [t.number for t in study.trials] == list(range(len(study.trials)))


def test_torch_trainer_trials_share_one_pretraining(ray_2cpu, tmp_path):
    """Two concurrent TorchTrainer trials (1 gloo DDP worker each) of a layer-decay search in a
    fresh storage: exactly one pre-trains the encoder, the other waits and reuses it."""
    code = search("layer_decay", tmp_path, "search.num_samples=2", "baselines=[]",
                  "resources.trainer=torch_trainer", "search.scheduler.type=none")
    assert code == 0
    assert len(list((tmp_path / "_encoders").iterdir())) == 1
    trials = pd.read_parquet(tmp_path / "layer_decay" / "results" / "trials.parquet")
    assert sorted(trials.pretrain_role) == ["reused", "trained"]
    assert set(trials.status) == {"completed"}
    assert any((tmp_path / "layer_decay" / "_train").iterdir())  # the Train runs' own storage


def released_checkpoint(path: Path) -> Path:
    """A file in the study's release format: {model, optimizer, epoch, scaler, args}, where
    `model` holds the MAE's keys (timm ViT names + decoder), pre-trained at a larger size."""
    import argparse

    import torch

    from explorer.models import create_mae

    mae = create_mae("vit_nano", img_size=64, patch_size=4, decoder_dim=32, decoder_depth=1,
                     decoder_heads=2)
    torch.save({"model": mae.state_dict(), "optimizer": {}, "epoch": 799, "scaler": {},
                "args": argparse.Namespace(model="mae_vit_nano", mask_ratio=0.9)}, path)
    return path


def test_finetune_from_a_released_checkpoint(ray_2cpu, tmp_path):
    """64 px checkpoint (16 x 16 grid) into the 32 px smoke model (8 x 8): pos_embed resampled;
    no pre-training runs."""
    ckpt = released_checkpoint(tmp_path / "vit-nano_CXR_mae.pth")
    code = search("layer_decay", tmp_path, "search.num_samples=1", "baselines=[]",
                  f"pretrain.from_checkpoint={ckpt}")
    assert code == 0
    trials = pd.read_parquet(tmp_path / "layer_decay" / "results" / "trials.parquet")
    assert list(trials.pretrain_role) == ["imported"]
    assert not (tmp_path / "_encoders").exists()


def test_wrong_architecture_checkpoint_is_one_line_and_creates_nothing(tmp_path, capsys):
    import torch

    from explorer.models import create_mae

    mae = create_mae("vit_micro", img_size=32, patch_size=4, decoder_dim=32, decoder_depth=1,
                     decoder_heads=2)
    bad = tmp_path / "vit-micro.pth"
    torch.save({"model": mae.state_dict()}, bad)
    code = search("layer_decay", tmp_path / "runs", f"pretrain.from_checkpoint={bad}")
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "cls_token" in err or "pos_embed" in err or "patch_embed" in err, err
    assert not (tmp_path / "runs").exists()


def test_real_nih_images_with_findings_missing_from_validation(ray_2cpu, tmp_path, nih_mini):
    """The real-data command on the shared NIH mini folder (690 images, no test-list images)."""
    code = search("layer_decay", tmp_path, "data.source=chestxray14", f"data.root={nih_mini}",
                  "search.num_samples=1", "baselines=[]")
    assert code == 0
    run = tmp_path / "layer_decay"
    meta = json.loads((run / "results" / "meta.json").read_text())
    assert meta["data"]["sizes"]["test"]["images"] == 0
    missing = meta["data"]["no_positive"]["val"]
    assert missing, "this folder's validation split lacks some findings"
    classes = pd.read_parquet(run / "results" / "classes.parquet")
    assert set(classes[classes.auc.isna()].finding) == set(missing)
    page = (tmp_path / "reports" / "layer_decay" / "index.html").read_text()
    assert "Findings without an AUC" in page and all(f in page for f in missing)
    assert "VALIDATION" in page  # no test images: the verdict falls back, labelled


def test_an_exhausted_stepped_space_ends_the_search_with_one_line(ray_2cpu, tmp_path, capsys):
    """10 layer decays, 12 trials asked: 10 distinct trials, then one line, exit 0, a report."""
    spec = {"name": "ten", "recipe": "mae_vit_small_xray", "scale": "smoke",
            "search": {"params": {"finetune.layer_decay": {"type": "float", "low": 0.45,
                                                           "high": 0.9, "step": 0.05}},
                       "num_samples": 12, "max_concurrent": 2,
                       "searcher": {"type": "tpe", "seed": 0, "n_startup_trials": 4},
                       "scheduler": {"type": "none"}},
            "pretrain": {"epochs": 1, "warmup_epochs": 0},
            "finetune": {"epochs": 1, "warmup_epochs": 0}, "baselines": [], "finalists": 1}
    path = tmp_path / "ten.yaml"
    path.write_text(json.dumps(spec))
    code = main([str(path), "--storage", str(tmp_path / "runs"),
                 "--reports", str(tmp_path / "reports")])
    out = capsys.readouterr().out
    assert code == 0
    lines = [ln for ln in out.splitlines() if "search space exhausted" in ln]
    assert len(lines) == 1 and "all 10 distinct configurations" in lines[0], out[-1500:]
    trials = pd.read_parquet(tmp_path / "runs" / "ten" / "results" / "trials.parquet")
    decays = sorted(json.loads(c)["finetune"]["layer_decay"] for c in trials.config_json)
    assert decays == [round(0.45 + 0.05 * k, 2) for k in range(10)]  # each once, on the grid
    assert (tmp_path / "reports" / "ten" / "index.html").is_file()
