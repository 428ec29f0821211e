"""No configuration is trained twice: the searched space as a set (explorer.search.space) and the
searcher that asks Optuna again on a repeat (explorer.search.tuning), with a real Optuna study."""

from __future__ import annotations

import optuna
from ray.tune.search import Searcher

from explorer.search.space import all_configs, config_key, round_config, space_size, step_decimals
from explorer.search.tuning import DUPLICATE_ATTR, EXHAUSTED_ATTR, build_searcher
from explorer.spec import load_spec

STEPPED = {"type": "float", "low": 0.5, "high": 0.95, "step": 0.05}  # 10 values


def test_stepped_values_are_rounded_to_the_step():
    assert step_decimals(0.05) == 2 and step_decimals(0.1) == 1 and step_decimals(2) == 0
    assert 0.5 + 7 * 0.05 == 0.8500000000000001  # what Optuna's grid arithmetic gives
    assert round_config({"m": 0.5 + 7 * 0.05}, {"m": STEPPED}) == {"m": 0.85}
    assert config_key({"m": 0.8500000000000001}, {"m": STEPPED}) == config_key(
        {"m": 0.85}, {"m": STEPPED})
    # an unstepped float is never rounded
    free = {"type": "float", "low": 0.0, "high": 1.0}
    assert round_config({"m": 0.123456789}, {"m": free}) == {"m": 0.123456789}


def test_space_size_follows_when_conditions():
    params = {
        "finetune.mix": {"type": "categorical", "choices": ["none", "mixup", "cutmix"]},
        "finetune.mixup_alpha": {"type": "float", "low": 0.2, "high": 1.0, "step": 0.4,
                                 "when": {"finetune.mix": "mixup"}},
        "finetune.epochs": {"type": "int", "low": 2, "high": 6, "step": 2},
    }
    # none: 3 epochs; mixup: 3 alphas x 3 epochs; cutmix: 3 epochs
    assert space_size(params) == 3 + 9 + 3
    configs = all_configs(params)
    assert len(configs) == 15 and len({config_key(c, params) for c in configs}) == 15
    assert {"finetune.mix": "none", "finetune.epochs": 4} in configs
    assert space_size({"m": STEPPED}) == 10
    assert space_size({"m": {"type": "float", "low": 0.0, "high": 1.0}}) is None


def _searcher(tmp_path, num_samples: int, n_startup: int = 4):
    spec = {"name": "dedup", "recipe": "mae_vit_small_xray", "scale": "smoke",
            "search": {"params": {"pretrain.mask_ratio": STEPPED}, "num_samples": num_samples,
                       "searcher": {"type": "tpe", "seed": 0, "n_startup_trials": n_startup}},
            "baselines": []}
    path = tmp_path / "spec.yaml"
    import yaml

    path.write_text(yaml.safe_dump(spec))
    return build_searcher(load_spec(str(path), []), tmp_path, "dedup", points=True)


def _run(searcher, n: int) -> list:
    """Suggest and finish ``n`` trials one after another (value: a smooth function of the
    mask ratio), as Tune would; FINISHED ends the loop."""
    configs = []
    for i in range(n):
        config = searcher.suggest(f"t{i}")
        if config is Searcher.FINISHED:
            break
        configs.append(config)
        value = 0.7 - (config["pretrain.mask_ratio"] - 0.8) ** 2
        searcher.on_trial_complete(f"t{i}", {"best_val_mean_auc": value})
    return configs


def test_a_seeded_tpe_search_trains_every_configuration_once(tmp_path):
    configs = _run(_searcher(tmp_path, 6), 6)
    ratios = [c["pretrain.mask_ratio"] for c in configs]
    assert len(ratios) == 6 and len(set(ratios)) == 6, ratios
    assert all(r == round(r, 2) for r in ratios)  # stored on the step grid, no float noise
    study = optuna.load_study(study_name="dedup",
                              storage=optuna.storages.JournalStorage(
                                  optuna.storages.journal.JournalFileBackend(
                                      str(tmp_path / "optuna.journal"))))
    dups = [t for t in study.trials if DUPLICATE_ATTR in t.user_attrs]
    assert dups  # seed 0 proposes repeats in these 6 trials (this test's reason to exist)
    # the sampler was told about every repeat (with the repeated trial's value) and learned
    for t in dups:
        orig = study.trials[t.user_attrs[DUPLICATE_ATTR]]
        assert t.value == orig.value and round(t.params["pretrain.mask_ratio"], 2) == round(
            orig.params["pretrain.mask_ratio"], 2)


def test_an_exhausted_stepped_space_ends_the_search(tmp_path):
    searcher = _searcher(tmp_path, 12)
    configs = _run(searcher, 12)
    assert len(configs) == 10
    assert len({c["pretrain.mask_ratio"] for c in configs}) == 10
    assert searcher.suggest("t-extra") is Searcher.FINISHED
    assert searcher._ot_study.user_attrs[EXHAUSTED_ATTR] == 10


def test_a_running_trial_is_not_proposed_again(tmp_path):
    searcher = _searcher(tmp_path, 10, n_startup=1)
    running = [searcher.suggest(f"r{i}") for i in range(10)]  # none finished yet
    ratios = [c["pretrain.mask_ratio"] for c in running]
    assert len(set(ratios)) == 10
    assert searcher.suggest("r10") is Searcher.FINISHED


def test_restored_trials_keep_their_configuration(tmp_path):
    searcher = _searcher(tmp_path, 3)
    first = searcher.suggest("t0")
    assert searcher.suggest("t0") == first  # Tune re-asks a trial it restored
