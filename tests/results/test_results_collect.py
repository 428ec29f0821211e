"""Trial records -> ``collect`` -> the Parquet results store -> ``load_results``: a round trip
on real records (phantom data at smoke scale, predictions from real arrays)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.metrics import per_class_auc
from explorer.results import TABLES, load_results
from explorer.results.collect import collect, trial_status
from explorer.storage import ENCODERS, Store
from explorer.train.artifacts import TrialArtifacts

SEARCHED = ["finetune.layer_decay"]


@pytest.fixture(scope="module")
def data():
    from explorer.data import load_data
    from explorer.spec.recipes import resolve_recipe

    return load_data(resolve_recipe("mae_vit_small_xray", "smoke").data)


def _probs(split, strength: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (split.labels * strength + rng.random(split.labels.shape)).astype(np.float32) / 3


def _trial(art: TrialArtifacts, data, *, ratio, epochs_run, planned=3, key=None, role="none",
           test=False, seed=0) -> None:
    art.write_json("config.json", {"params": {"finetune.layer_decay": ratio}, "started": 100.0,
                                   "config_hash": f"h{seed}",
                                   "recipe": {"model": {"arch": "vit_nano"}, "seed": seed,
                                              "finetune": {"epochs": planned}}})
    history = [{"epoch": e, "val_mean_auc": 0.5 + e / 100, "train_loss": 1.0 / e, "lr": 1e-3,
                "epoch_time_s": 2.0} for e in range(1, epochs_run + 1)]
    art.write_json("history.json", history)
    art.write_json("summary.json", {"epochs_run": epochs_run, "epochs_planned": planned,
                                    "best_epoch": epochs_run, "updated": 130.0,
                                    "val_mean_auc": history[-1]["val_mean_auc"] if history
                                    else None})
    art.write_json("encoder.json", {"key": key, "path": None, "role": role})
    art.write_predictions("val", data.val, _probs(data.val, 2, seed), data.findings)
    if test:
        art.write_predictions("test", data.test, _probs(data.test, 2, seed + 1), data.findings)


def test_collect_write_load_round_trip(tmp_path, data):
    store = Store(tmp_path)
    run = tmp_path / "exp"
    _trial(TrialArtifacts(run / "trials" / "a"), data, ratio=0.5, epochs_run=3, key="k1",
           role="trained", test=True, seed=1)
    _trial(TrialArtifacts(run / "trials" / "b"), data, ratio=0.7, epochs_run=1, key="k1",
           role="reused", test=True, seed=2)  # test predictions, but not a finalist
    _trial(TrialArtifacts(run / "trials" / "c"), data, ratio=0.9, epochs_run=1, seed=3)
    enc = tmp_path / ENCODERS / "k1"
    (enc / "users").mkdir(parents=True)
    (enc / "users" / "a").touch()
    (enc / "users" / "b").touch()
    (enc / "meta.json").write_text(json.dumps({"trained_by": "a", "wall_time_s": 4.0,
                                               "inputs": {"mask_ratio": 0.9}}))
    (enc / "losses.json").write_text(json.dumps([{"epoch": 1, "loss": 1.8},
                                                 {"epoch": 2, "loss": 1.1}]))
    base_dir = tmp_path / "_baselines" / "kb"
    _trial(TrialArtifacts(base_dir), data, ratio=None, epochs_run=3, test=True, seed=4)
    states = [("a", {"status": "TERMINATED", "error": None}),
              ("b", {"status": "TERMINATED", "error": None}),
              ("c", {"status": "ERROR", "error": "RuntimeError: boom"})]
    baselines = [{"run_id": "densenet121_baseline-s0-kb", "label": "densenet121 seed 0",
                  "artifacts": str(base_dir), "state": {"status": "TERMINATED", "error": None}}]

    collect(run, store, SEARCHED, data, states, baselines, finalists=["a"],
            meta={"name": "exp", "findings": list(data.findings)})
    res = load_results(run)

    t = res.trials.set_index("trial_id")
    assert list(t.index) == ["a", "b", "c", "densenet121_baseline-s0-kb"]
    assert list(t.status) == ["completed", "stopped_early", "failed", "completed"]
    assert list(t.kind) == ["recipe"] * 3 + ["baseline"]
    assert t.loc["c", "error"] == "RuntimeError: boom"
    assert t.loc["a", "finalist"] and not t.loc["b", "finalist"]
    assert t.loc["a", "param/finetune.layer_decay"] == 0.5 and res.param_columns == [
        "param/finetune.layer_decay"]
    assert t.loc["a", "wall_time_s"] == 30.0  # started 100 -> last epoch saved at 130
    # test predictions: the finalist and the baseline only
    test = res.predictions[res.predictions.split == "test"]
    assert set(test.trial_id) == {"a", "densenet121_baseline-s0-kb"}
    # per-class AUCs are the metrics package's, on the stored labels
    a_val = res.predictions[(res.predictions.trial_id == "a") & (res.predictions.split == "val")]
    labels = res.labels[res.labels.split == "val"].set_index("image_id").loc[a_val.image_id]
    want = per_class_auc(labels[res.findings].to_numpy(), a_val[res.findings].to_numpy(),
                         res.findings)
    got = res.classes[(res.classes.trial_id == "a") & (res.classes.split == "val")]
    np.testing.assert_allclose(got.auc.to_numpy(), want.auc.to_numpy())
    assert t.loc["a", "test_mean_auc"] == pytest.approx(
        res.classes[(res.classes.trial_id == "a") & (res.classes.split == "test")].auc.mean())
    # the shared encoder, with who trained it and who used it
    e = res.encoders.iloc[0]
    assert e.pretrain_key == "k1" and e.trained_by == "a" and list(e.used_by) == ["a", "b"]
    assert list(res.encoder_epochs.loss) == [1.8, 1.1] and e.final_loss == 1.1
    assert len(res.epochs) == 3 + 1 + 1 + 3
    assert {p.name for p in (run / "results").iterdir()} == \
        {f"{n}.parquet" for n in TABLES} | {"meta.json"}
    assert res.meta["name"] == "exp"


@pytest.mark.parametrize("state,summary,want", [
    ({"status": "ERROR"}, {"epochs_run": 3, "epochs_planned": 3}, "failed"),
    ({"status": "RUNNING"}, None, "running"),
    ({"status": "TERMINATED"}, None, "failed"),
    ({"status": "TERMINATED"}, {"epochs_run": 1, "epochs_planned": 3}, "stopped_early"),
    ({"status": "TERMINATED"}, {"epochs_run": 3, "epochs_planned": 3}, "completed"),
])
def test_trial_status(state, summary, want):
    assert trial_status(state, summary) == want


def test_an_empty_folder_has_no_results(tmp_path):
    from explorer.errors import UserError

    with pytest.raises(UserError, match="no results here"):
        load_results(tmp_path)
