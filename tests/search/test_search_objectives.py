"""Cost as an objective (explorer.search.objectives): the spec's objective, a multi-objective
Optuna study through the searcher (repeats told their known values), and the cost every
fine-tuning report carries."""

from __future__ import annotations

import json

import pytest
import yaml

from explorer.errors import SpecError
from explorer.names import METRIC
from explorer.search.objectives import COST_METRIC, CostReporting, encoder_device_s
from explorer.search.tuning import DUPLICATE_ATTR, build_searcher
from explorer.spec import load_spec
from explorer.train.pretrain import EncoderInfo

CHOICES = {"type": "categorical", "choices": [0.75, 0.9]}  # two configurations


def _spec(tmp_path, **search) -> str:
    spec = {"name": "mo", "recipe": "mae_vit_small_xray", "scale": "smoke",
            "search": {"params": {"pretrain.mask_ratio": CHOICES}, "num_samples": 3,
                       "searcher": {"type": "tpe", "seed": 0, "n_startup_trials": 1}, **search},
            "baselines": []}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_objective_is_auc_or_auc_and_cost(tmp_path):
    assert not load_spec(_spec(tmp_path)).spec.search.multi_objective
    assert load_spec(_spec(tmp_path, objective=["auc", "cost"])).spec.search.multi_objective
    for bad in (["cost"], ["cost", "auc"], ["auc", "auc"], ["auc", "wall"]):
        with pytest.raises(SpecError, match="objective"):
            load_spec(_spec(tmp_path, objective=bad))


def test_multi_objective_study_takes_auc_and_cost_and_tells_repeats(tmp_path):
    s = build_searcher(load_spec(_spec(tmp_path, objective=["auc", "cost"])), tmp_path, "mo")
    assert s.metric == [METRIC, COST_METRIC] and s.mode == ["max", "min"]
    seen = []
    for i in range(3):
        config = s.suggest(f"t{i}")
        if not isinstance(config, dict):
            break  # FINISHED: both configurations tried
        seen.append(config["pretrain.mask_ratio"])
        # intermediate results are dropped for a multi-objective study (no crash)
        s.on_trial_result(f"t{i}", {METRIC: 0.6, COST_METRIC: 10.0, "training_iteration": 1})
        s.on_trial_complete(f"t{i}", {METRIC: 0.6 + i / 10, COST_METRIC: 100.0 - i})
    assert sorted(seen) == [0.75, 0.9]
    study = s._ot_study
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    done = [t for t in study.get_trials() if DUPLICATE_ATTR not in t.user_attrs]
    assert sorted(tuple(t.values) for t in done) == [(0.6, 100.0), (0.7, 99.0)]
    # a repeated proposal is told the known trial's two values, never trained
    dups = [t for t in study.get_trials() if DUPLICATE_ATTR in t.user_attrs]
    assert dups  # TPE (seed 0) proposes 0.9 again after its first trial
    for t in dups:
        known = next(k for k in done if k.number == t.user_attrs[DUPLICATE_ATTR])
        assert t.values == known.values


class _Recorder:
    is_main = True

    def __init__(self):
        self.reports = []

    def report(self, metrics):
        self.reports.append(metrics)


def test_reports_carry_the_recipe_cost_at_its_full_budget(tmp_path):
    enc = tmp_path / "_encoders" / "k1"
    enc.mkdir(parents=True)
    (enc / "meta.json").write_text(json.dumps({"wall_time_s": 50.0}))
    (enc / "encoder.pt").touch()
    recipe = {"resources": {"workers": 1, "cpus_per_worker": 2, "gpus_per_worker": 0}}
    info = EncoderInfo(key="k1", path=str(enc / "encoder.pt"), role="reused")
    assert encoder_device_s(info, recipe) == 100.0  # 50 s x 2 CPUs
    assert encoder_device_s(EncoderInfo(key=None, path=None, role="none"), recipe) == 0.0
    inner = _Recorder()
    s = CostReporting(inner, recipe, info, planned_epochs=10)
    assert s.is_main  # everything else is the wrapped session's
    s.report({"epoch": 2, "finetune_s": 6.0, METRIC: 0.7})
    s.report({})  # another rank's empty report stays empty
    # 100 device-s of pre-training + 3 s per epoch x 10 planned epochs x 2 CPUs
    assert inner.reports == [{"epoch": 2, "finetune_s": 6.0, METRIC: 0.7, COST_METRIC: 160.0},
                             {}]
