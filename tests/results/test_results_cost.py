"""What trials and encoders cost (``explorer.results.cost``), through ``collect`` on hand-made
records: shared encoders, a staged encoder paid in segments, one multi-fidelity pre-training
stopped, a cached baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.results import load_results
from explorer.results.collect import collect
from explorer.results.cost import STAGE_OWNER, devices
from explorer.storage import ENCODERS, Store
from explorer.train.artifacts import TrialArtifacts


@pytest.fixture(scope="module")
def data():
    from explorer.data import load_data
    from explorer.spec.recipes import resolve_recipe

    return load_data(resolve_recipe("mae_vit_small_xray", "smoke").data)


def _trial(art: TrialArtifacts, data, key, epochs_run, planned=3, cpus=2, epoch_s=2.0) -> None:
    recipe = {"model": {"arch": "vit_nano"}, "seed": 0, "finetune": {"epochs": planned},
              "resources": {"workers": 1, "cpus_per_worker": cpus, "gpus_per_worker": 0}}
    art.write_json("config.json", {"params": {}, "started": 0.0, "recipe": recipe})
    history = [{"epoch": e, "val_mean_auc": 0.6, "train_loss": 1.0, "lr": 1e-3,
                "epoch_time_s": epoch_s} for e in range(1, epochs_run + 1)]
    art.write_json("history.json", history)
    art.write_json("summary.json", {"epochs_run": epochs_run, "epochs_planned": planned,
                                    "best_epoch": 1, "val_mean_auc": 0.6})
    art.write_json("encoder.json", {"key": key, "role": "reused" if key else "none"})
    rng = np.random.default_rng(0)
    art.write_predictions("val", data.val, rng.random(data.val.labels.shape).astype(np.float32),
                          data.findings)


def _encoder(root, key, **files) -> None:
    d = root / ENCODERS / key
    d.mkdir(parents=True)
    for name, obj in files.items():
        (d / f"{name}.json").write_text(json.dumps(obj))


def test_costs_charge_what_the_search_paid_and_price_the_recipe(tmp_path, data):
    run = tmp_path / "exp"
    state = {"status": "TERMINATED", "error": None}
    # k1: pre-trained in one go by trial a (10 s), reused by b
    _trial(TrialArtifacts(run / "trials" / "a"), data, "k1", epochs_run=3)
    _trial(TrialArtifacts(run / "trials" / "b"), data, "k1", epochs_run=1)  # ASHA stopped it
    _encoder(tmp_path, "k1", meta={"trained_by": "a", "wall_time_s": 10.0},
             losses=[{"epoch": e, "loss": 1.0, "time_s": 4.0} for e in (1, 2)])
    # k2: staged; its first segment paid by an earlier search, the rest by this one's stage
    _trial(TrialArtifacts(run / "trials" / "c"), data, "k2", epochs_run=3)
    _encoder(tmp_path, "k2", meta={"trained_by": STAGE_OWNER.format(run="exp")},
             losses=[{"epoch": e, "loss": 1.0} for e in (1, 2, 3, 4)],
             segments=[{"until": 1, "wall_s": 3.0, "probe_s": 1.0, "by": "someone else"},
                       {"until": 4, "wall_s": 9.0, "probe_s": 0.0,
                        "by": STAGE_OWNER.format(run="exp")}])
    # k3: stopped by multi-fidelity pre-training at epoch 2: no trial uses it
    _encoder(tmp_path, "k3", losses=[{"epoch": e, "loss": 1.0} for e in (1, 2)],
             segments=[{"until": 2, "wall_s": 5.0, "probe_s": 1.0,
                        "by": STAGE_OWNER.format(run="exp")}])
    (run / "pretraining.json").write_text(json.dumps({"configs": [{"key": "k2"},
                                                                  {"key": "k3"}]}))
    base = tmp_path / "_baselines" / "kb"
    _trial(TrialArtifacts(base), data, None, epochs_run=3, epoch_s=5.0)
    baselines = [{"run_id": "dn-s0", "label": "densenet121 seed 0", "artifacts": str(base),
                  "state": state, "cached": True}]
    meta = {"name": "exp", "findings": list(data.findings),
            "base_recipe": {"resources": {"workers": 1, "cpus_per_worker": 2}}}
    collect(run, Store(tmp_path), [], data, [(t, state) for t in "abc"], baselines, [], meta)
    res = load_results(run)
    t = res.trials.set_index("trial_id")
    assert set(t.device) == {"CPU"} and t.gpu_hours.isna().all()
    # fine-tuning: epochs x 2 s x 2 CPUs
    assert t.finetune_device_s.to_dict() == {"a": 12.0, "b": 4.0, "c": 12.0, "dn-s0": 30.0}
    # k1: 10 s x 2 CPUs shared by a and b; k2: this search paid 9 s x 2 CPUs, c alone
    assert t.pretrain_share_device_s.to_dict() == {"a": 10.0, "b": 10.0, "c": 18.0,
                                                   "dn-s0": 0.0}
    assert t.loc["a", "cost_device_s"] == 22.0 and t.loc["dn-s0", "cost_device_s"] == 0.0
    # the recipe from scratch: the whole encoder + fine-tuning at its planned 3 epochs
    assert t.loc["b", "recipe_device_s"] == 20.0 + 12.0
    assert t.loc["c", "pretrain_device_s"] == (3 + 1 + 9) * 2
    enc = res.encoders.set_index("pretrain_key")
    assert enc.complete.to_dict() == {"k1": True, "k2": True, "k3": False}
    assert enc.epochs_here.to_dict() == {"k1": 2, "k2": 3, "k3": 2}
    cost = res.meta["cost"]
    assert cost["stopped_encoders_device_s"] == 12.0 and cost["pretrain_epochs"] == 7
    assert cost["total_device_s"] == pytest.approx(22 + 14 + 30 + 12)
    assert cost["total_device_s"] == pytest.approx(
        cost["recipes_device_s"] + cost["baselines_device_s"] + cost["stopped_encoders_device_s"])


def test_devices_are_gpus_when_asked_for_else_cpu_cores():
    assert devices({"resources": {"workers": 4, "gpus_per_worker": 1, "cpus_per_worker": 8}}) \
        == ("GPU", 4.0)
    assert devices({"resources": {"workers": 2, "cpus_per_worker": 3}}) == ("CPU", 6.0)
