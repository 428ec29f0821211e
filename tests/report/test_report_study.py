"""Section 9, the study's table: rows by (architecture, start, pre-training data), published
numbers only where data, split, resolution and pre-training data match."""

from __future__ import annotations

import json

import pandas as pd

from explorer.report.scores import evaluate, ranked_trials
from explorer.report.study import get_study_table_info
from explorer.results import load_results

NIH_224 = {"data": {"source": "chestxray14", "image_size": 224,
                    "images": {"train": None, "val": None, "test": None}}}
STUDY_POOL = {"start_sources": "chestxray14,chexpert", "start_images": 266_339,
              "start_data": "chestxray14 train 75,312 + chexpert train 191,027 = 266,339 images"}


def with_starts(results, recipe: dict, pool: dict, moco_pool: dict):
    """The fixture store's models as the study's rows: ViT-S MAE trials on ``pool``, DenseNet
    seeds 0 and 1 from ImageNet, seed 2 MoCo v2 on ``moco_pool``."""
    t = results.trials.copy()
    t["config_json"] = json.dumps(recipe)
    for column in ("start_method", "start_data", "start_sources", "start_images", "start_text"):
        t[column] = None
    starts = {"recipe": {"start_method": "mae", **pool},
              "b0": {"start_method": "imagenet", "start_data": None},
              "b1": {"start_method": "imagenet", "start_data": None},
              "b2": {"start_method": "mocov2", **moco_pool}}
    for i, row in t.iterrows():
        for k, v in starts.get(row["trial_id"], starts[row["kind"]]
                               if row["kind"] == "recipe" else {}).items():
            t.at[i, k] = v
        t.at[i, "start_text"] = f"{row['trial_id']} start"
    results.trials = t
    ev = evaluate(results, n_resamples=200, seed=0)
    return get_study_table_info(results, ev, ranked_trials(results, ev)), ev


def test_rows_are_starts_with_the_published_number_where_comparable(make_store):
    results = load_results(make_store())
    info, ev = with_starts(results, NIH_224, STUDY_POOL,
                           {**STUDY_POOL, "start_sources": "chestxray14", "start_images": 75_312,
                            "start_data": "chestxray14 train 75,312 images"})
    rows = {(r.model, r.how): r for r in info.rows}
    assert list(rows) == [("DenseNet-121", "supervised"), ("DenseNet-121", "MoCo v2"),
                          ("ViT-S", "MAE")]
    imagenet, moco, mae = rows.values()
    ranked = ranked_trials(results, ev)
    order = [r.trial_id for r in ranked.itertuples() if r.trial_id in ("b0", "b1")]
    assert imagenet.models == [f"densenet121 seed {t[1]}" for t in order]   # best val first
    assert imagenet.chosen == imagenet.models[0] and imagenet.split == "test"
    assert imagenet.auc == ev.get(order[0], "test").mean
    assert imagenet.published == 0.822 and imagenet.note.startswith("comparable")
    assert moco.published is None and moco.published_as == "DenseNet-121 / X-rays (0.3M) / MoCo v2"
    assert moco.note == ("not comparable: pre-trained on chestxray14 train 75,312 images, not "
                         "the study's 0.3M X-rays (NIH train + CheXpert train)")
    assert mae.pretrained_on == STUDY_POOL["start_data"] and mae.published == 0.823
    assert len(mae.models) == 5 and mae.split == "test"
    assert mae.chosen == ranked[ranked.kind == "recipe"].iloc[0]["label"]


def test_phantom_data_or_no_test_split_is_not_comparable(make_store):
    results = load_results(make_store(with_test=False))
    info, _ = with_starts(results, NIH_224, STUDY_POOL, STUDY_POOL)
    assert {r.note for r in info.rows} == {
        "not comparable: not scored on the test split (the study reports the official test "
        "list)"}
    assert all(r.split == "val" and r.published is None for r in info.rows)
    results = load_results(make_store())
    small = {"data": {"source": "phantom", "image_size": 32, "images": {"train": 192}}}
    info, _ = with_starts(results, small, STUDY_POOL, STUDY_POOL)
    assert {r.note for r in info.rows} == {"not comparable: fine-tuned on phantom, not NIH "
                                           "ChestX-ray14"}
    capped = {"data": {**NIH_224["data"], "images": {"train": 640, "val": None}}}
    info, _ = with_starts(results, capped, STUDY_POOL, STUDY_POOL)
    assert info.rows[0].note == "not comparable: a capped subset of ChestX-ray14 (train 640 images)"


def test_a_start_the_study_did_not_publish_and_the_pools_guard_counts(make_store):
    results = load_results(make_store())
    results.meta["pretrain_pools"] = {"fp": {
        "describe": "chestxray14 train+val 500 + folder all 100 = 600 images",
        "excluded_total": 30, "excluded": {"heldout_image": 20, "heldout_patient": 10},
        "reasons": {"heldout_image": "a validation/test image of the fine-tuning data",
                    "heldout_patient": "another image of a validation/test patient of the "
                                       "fine-tuning data"}}}
    t = results.trials
    results.trials = t.assign(start_method=["random" if k == "baseline" else "continued_mae"
                                            for k in t["kind"]],
                              start_text=None, start_data=None)
    ev = evaluate(results, n_resamples=200, seed=0)
    info = get_study_table_info(results, ev, ranked_trials(results, ev))
    assert [(r.how, r.pretrained_on, r.note) for r in info.rows] == [
        ("random init", "none", "the study publishes no such row"),
        ("continued MAE", "a weights file", "the study publishes no such row")]
    assert info.pools == [
        "chestxray14 train+val 500 + folder all 100 = 600 images; the leakage guard left out 30 "
        "(20 a validation/test image of the fine-tuning data; 10 another image of a "
        "validation/test patient of the fine-tuning data)"]
    assert isinstance(results.trials, pd.DataFrame)
