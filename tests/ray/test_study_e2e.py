"""The study's table at smoke scale with real Ray: fine-tuning on the real NIH mini images,
pre-training (MAE and MoCo v2 alike) on a pool of the phantom and the same NIH images as a
plain folder; every row of the paper's table, starts named; a second search reuses both
encoders.

The ImageNet rows read weights files this test writes itself (timm's architectures, random
weights: nothing here reaches the hub), so they test the plumbing, not ImageNet.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import ray
import timm
from safetensors.torch import save_file

from explorer.models import create_vit_classifier
from explorer.search.cli import main

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]  # per test, fixtures included


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The ImageNet files the study's rows name, built here; set before Ray starts, so its
    workers see the folder."""
    folder = tmp_path_factory.mktemp("weights")
    dense = timm.create_model("densenet121", num_classes=1000).state_dict()
    save_file({k: v.contiguous() for k, v in dense.items()},
              folder / "densenet121.tv_in1k.safetensors")
    deit = create_vit_classifier("vit_nano", img_size=64, patch_size=4, num_classes=1000,
                                 global_pool="token")
    save_file({k: v.contiguous() for k, v in deit.state_dict().items()},
              folder / "vit_nano.imagenet.safetensors")
    old = {k: os.environ.get(k) for k in ("CXR_EXPLORER_WEIGHTS", "HF_HUB_OFFLINE")}
    os.environ.update(CXR_EXPLORER_WEIGHTS=str(folder), HF_HUB_OFFLINE="1")
    yield folder
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def ray_2cpu(weights):
    ray.init(address="local", num_cpus=2, include_dashboard=None)
    yield
    ray.shutdown()


def study(storage: Path, nih: Path, *sets: str, name: str = "study_table") -> int:
    pool = (f"pretrain.data=[{{source: phantom, images: {{train: 48}}}}, "
            f"{{source: folder, root: {nih / 'images'}, images: {{train: 96}}}}]")
    args = [str(REPO / "search_spaces" / "study_table.yaml"), "--storage", str(storage),
            "--reports", str(storage / "reports"), "--name", name, "--set", "scale=smoke",
            "--set", "data.source=chestxray14", "--set", f"data.root={nih}",
            "--set", "data.images.train=96", "--set", pool]
    for s in sets:
        args += ["--set", s]
    return main(args)


@pytest.fixture(scope="module")
def study_run(ray_2cpu, tmp_path_factory, nih_mini_module):
    storage = tmp_path_factory.mktemp("storage")
    assert study(storage, nih_mini_module) == 0
    return storage


@pytest.fixture(scope="module")
def nih_mini_module():
    nih = (REPO.parent / "shared" / "data" / "chestxray14-mini").resolve()
    if not nih.is_dir():
        pytest.skip(f"shared NIH mini data not found at {nih}")
    return nih


def test_every_row_of_the_study_with_its_start(study_run):
    run = study_run / "study_table"
    trials = pd.read_parquet(run / "results" / "trials.parquet")
    assert set(trials.status) == {"completed"}
    starts = dict(zip(trials.label, trials.start_method))
    assert sorted(starts.values()) == ["imagenet", "imagenet", "mae", "mocov2", "random"]
    assert trials.start_text.notna().all()
    page = (study_run / "reports" / "study_table" / "index.html").read_text()
    assert "9. The study&#x27;s table" in page or "9. The study's table" in page
    for words in ("random init", "ImageNet supervised", "MoCo v2 on phantom train 48 + folder",
                  "MAE on phantom train 48 + folder", "not comparable: a capped subset"):
        assert words in page, words
    meta = json.loads((run / "results" / "meta.json").read_text())
    (pool,) = meta["pretrain_pools"].values()
    assert pool["excluded"]["heldout_image"] > 0   # the folder holds validation images


def test_pre_training_never_saw_a_validation_or_test_image_or_patient(study_run):
    """Both encoders (MAE and MoCo v2) pre-trained once each on both pooled sources; their
    image lists hold no image and no patient of the fine-tuning validation or test split."""
    labels = pd.read_parquet(study_run / "study_table" / "results" / "labels.parquet")
    held_ids, held_patients = set(labels.image_id), set(labels.patient_id)
    assert held_ids and held_patients
    encoders = sorted((study_run / "_encoders").iterdir())
    assert len(encoders) == 2
    for enc in encoders:
        pool = pd.read_parquet(enc / "pool.parquet")
        assert set(pool.source) == {"phantom", "folder"}
        names = {Path(i).name for i in pool.image_id}
        nih_patients = {n.split("_")[0].lstrip("0") for n in names if n.endswith(".png")}
        assert not names & held_ids and not nih_patients & held_patients
        assert json.loads((enc / "meta.json").read_text())["method"] in ("mae", "mocov2")


def test_a_second_search_reuses_both_encoders(study_run, nih_mini_module):
    """Another fine-tuning seed of the MoCo baseline, in a new search of the same storage: no
    pre-training runs again (the MoCo encoder's key ignores the fine-tuning seed)."""
    before = sorted(p.name for p in (study_run / "_encoders").iterdir())
    assert study(study_run, nih_mini_module, "baselines=[{recipe: densenet121_mocov2, seeds: [1]}]",
                 name="again") == 0
    assert sorted(p.name for p in (study_run / "_encoders").iterdir()) == before
    trials = pd.read_parquet(study_run / "again" / "results" / "trials.parquet")
    assert dict(zip(trials.kind, trials.pretrain_role)) == {"recipe": "reused",
                                                           "baseline": "reused"}
    assert set(trials.pretrain_key) <= set(before)
