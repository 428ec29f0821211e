"""Staged pre-training without Ray: segments to milestones, probes, the shared cache's files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from explorer.data import load_data
from explorer.spec.recipes import resolve_recipe
from explorer.train.pretrain import ensure_encoder, pretrain_loop
from explorer.train.probe import probe_scores
from explorer.train.session import LocalSession
from explorer.train.staged import pretrain_segment


@pytest.fixture(scope="module")
def smoke():
    recipe = resolve_recipe("mae_vit_small_xray", "smoke", ({"pretrain": {"epochs": 3}},))
    return recipe, load_data(recipe.data)


def test_segments_continue_the_full_schedule_and_equal_one_run(smoke, tmp_path):
    """Stopping at milestones 1 and 2 then finishing trains like one uninterrupted run (same
    schedule and data order; only the mask draws after a restart differ, as in any resume from
    ``partial.pt``), and a trial then reuses the cached encoder."""
    recipe, data = smoke
    staged = tmp_path / "staged"
    first = pretrain_segment(recipe, data, staged, LocalSession(), until=1, probes=("linear",))
    assert first["epoch"] == 1 and not first["complete"]
    assert [r["probe"] for r in first["probes"]] == ["linear"]
    enc = staged / "_encoders" / first["key"]
    assert (enc / "partial.pt").is_file() and not (enc / "encoder.pt").exists()
    pretrain_segment(recipe, data, staged, LocalSession(), until=2, probes=("linear", "knn"))
    last = pretrain_segment(recipe, data, staged, LocalSession())
    assert last["complete"] and (enc / "encoder.pt").is_file() and not (enc / "partial.pt").exists()
    probes = json.loads((enc / "probes.json").read_text())
    assert [(r["epoch"], r["probe"]) for r in probes] == [(1, "linear"), (2, "linear"), (2, "knn")]
    assert all(0 <= r["value"] <= 1 and r["time_s"] > 0 for r in probes)
    segments = json.loads((enc / "segments.json").read_text())
    assert [s["until"] for s in segments] == [1, 2, 3]
    meta = json.loads((enc / "meta.json").read_text())
    assert meta["wall_time_s"] == pytest.approx(sum(s["wall_s"] for s in segments))
    assert len(json.loads((enc / "losses.json").read_text())) == 3

    whole = pretrain_loop(recipe, data, LocalSession(), tmp_path / "whole")
    staged_state = torch.load(enc / "encoder.pt", weights_only=True)["model"]
    for k, v in whole.items():
        torch.testing.assert_close(staged_state[k], v, rtol=0, atol=2e-3)
    losses = [e["loss"] for e in json.loads((enc / "losses.json").read_text())]
    ref = [e["loss"] for e in json.loads((tmp_path / "whole" / "losses.json").read_text())]
    assert losses[0] == ref[0] and losses == pytest.approx(ref, rel=0.05)
    info = ensure_encoder(recipe, data, staged, LocalSession("t1"))
    assert info.role == "reused" and info.key == first["key"]


def test_a_milestone_already_probed_is_not_trained_or_probed_again(smoke, tmp_path):
    recipe, data = smoke
    pretrain_segment(recipe, data, tmp_path, LocalSession(), until=1, probes=("knn",))
    again = pretrain_segment(recipe, data, tmp_path, LocalSession(), until=1, probes=("knn",))
    enc = tmp_path / "_encoders" / again["key"]
    assert len(json.loads((enc / "probes.json").read_text())) == 1
    assert len(json.loads((enc / "losses.json").read_text())) == 1


def test_probes_tell_a_trained_encoder_from_a_random_one(smoke):
    """Honest probes: on the phantom's strong findings the features of 3 MAE epochs carry
    more than chance, and the scores are validation mean AUCs."""
    recipe, data = smoke
    from explorer.models import create_mae

    p = recipe.pretrain
    torch.manual_seed(0)
    random_state = create_mae(recipe.model.arch, img_size=recipe.data.image_size,
                              patch_size=recipe.model.patch_size, decoder_dim=p.decoder_dim,
                              decoder_depth=p.decoder_depth,
                              decoder_heads=p.decoder_heads).state_dict()
    scores = probe_scores(recipe, random_state, data)
    assert [s["probe"] for s in scores] == ["linear", "knn"]
    assert all(np.isfinite(s["value"]) and 0.3 < s["value"] < 1 for s in scores)


def test_a_staged_encoder_on_a_pool_is_the_one_a_trial_finds(tmp_path):
    """``pretrain.data`` (a pool): the stage pre-trains on the pool under the key a trial's
    ``ensure_encoder`` computes, so the trial reuses it (and its record names the pool)."""
    recipe = resolve_recipe("mae_vit_small_xray", "smoke", (
        {"pretrain": {"epochs": 1, "data": [{"source": "phantom", "splits": ["train"]}]}},))
    data = load_data(recipe.data)
    out = pretrain_segment(recipe, data, tmp_path, LocalSession())
    assert out["complete"]
    enc = tmp_path / "_encoders" / out["key"]
    assert json.loads((enc / "pool.json").read_text())["pooled"]
    assert json.loads((enc / "meta.json").read_text())["start"] is not None
    info = ensure_encoder(recipe, data, tmp_path, LocalSession())
    assert info.role == "reused" and info.key == out["key"]
