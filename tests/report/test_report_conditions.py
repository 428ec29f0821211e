"""The verdict names the conditions in which the recipe and the baseline were trained apart."""

from __future__ import annotations

import json

import pandas as pd

from explorer.report.conditions import conditions_note, differences
from explorer.results import Results
from explorer.spec.recipes import resolve_recipe


def _results(*recipes: dict) -> Results:
    trials = pd.DataFrame({"trial_id": [f"t{i}" for i in range(len(recipes))],
                           "config_json": [json.dumps(r) for r in recipes]})
    empty = pd.DataFrame()
    return Results(meta={}, trials=trials, epochs=empty, classes=empty, predictions=empty,
                   labels=empty, encoders=empty, encoder_epochs=empty, reconstructions=empty)


def test_cpu_scale_names_the_cnn_s_randaugment_and_nothing_else():
    vit = resolve_recipe("mae_vit_small_xray", "cpu").model_dump(mode="json")
    cnn = resolve_recipe("densenet121_baseline", "cpu").model_dump(mode="json")
    assert differences(vit, cnn) == [("RandAugment magnitude", None, 6)]
    note = conditions_note(_results(vit, cnn), "t0", "t1", "recipe", "DenseNet-121")
    assert note.startswith("The two models were not fine-tuned under equal conditions: "
                           "RandAugment magnitude (recipe off, DenseNet-121 6).")


def test_paper_scale_families_share_their_conditions():
    vit = resolve_recipe("mae_vit_small_xray", "paper").model_dump(mode="json")
    cnn = resolve_recipe("densenet121_baseline", "paper").model_dump(mode="json")
    assert differences(vit, cnn) == []
    assert conditions_note(_results(vit, cnn), "t0", "t1", "recipe", "DenseNet-121") is None


def test_budget_and_images_are_named_and_unknown_records_say_nothing():
    a = {"data": {"images": {"train": 640}}, "finetune": {"epochs": 15, "crop_scale": [0.5, 1]}}
    b = {"data": {"images": {"train": 320}}, "finetune": {"epochs": 30, "crop_scale": [0.5, 1]}}
    note = conditions_note(_results(a, b), "t0", "t1", "recipe", "DenseNet-121")
    assert "training images (recipe 640, DenseNet-121 320); fine-tuning epochs (recipe 15, " \
           "DenseNet-121 30)" in note and "crop scale" not in note
    assert conditions_note(_results(a, {}), "t0", "t1", "recipe", "DenseNet-121") is None
    assert conditions_note(_results(a, b), "t0", "missing", "recipe", "DenseNet-121") is None
