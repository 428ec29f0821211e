"""``explorer.replay`` on a hand-made results store whose truth is known: ten mask ratios
with smooth learning curves, their encoders' epoch times and probe scores, as a cpu-scale
search of ``search_spaces/mask_ratio.yaml`` would record them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from explorer.replay import STRATEGIES, load_recorded, replay_once, summarise
from explorer.replay.__main__ import main
from explorer.replay.strategies import variant
from explorer.results import write_results
from explorer.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
RATIOS = [round(0.5 + 0.05 * i, 2) for i in range(10)]
FT_S, PRE_S, PROBE_S = 2.0, 3.0, 0.5


def quality(ratio: float) -> float:
    return 0.75 - abs(ratio - 0.8)  # best at 0.8, distinct everywhere


def recorded_epochs() -> int:
    """The cpu scale's fine-tuning epochs, which the hand-made store records."""
    return load_spec(REPO / "search_spaces" / "mask_ratio.yaml").base.finetune.epochs


def recorded_pretrain_epochs() -> int:
    """The cpu scale's pre-training epochs, which the hand-made store records."""
    return load_spec(REPO / "search_spaces" / "mask_ratio.yaml").base.pretrain.epochs


def make_store(run_dir: Path, probes: bool = True, stopped_at: dict | None = None) -> Path:
    """A finished search that trained every ratio; ``stopped_at``: ratio -> last epoch
    recorded (ASHA stopped it there)."""
    loaded = load_spec(REPO / "search_spaces" / "mask_ratio.yaml")
    ft, pre = loaded.base.finetune.epochs, loaded.base.pretrain.epochs
    trials, epochs, encoders, enc_epochs, enc_probes = [], [], [], [], []
    for i, r in enumerate(RATIOS):
        tid, key = f"t{i}", f"k{i}"
        run = (stopped_at or {}).get(r, ft)
        curve = [quality(r) * (1 - math.exp(-e / 3)) for e in range(1, run + 1)]
        trials.append({"trial_id": tid, "kind": "recipe", "label": f"trial {i + 1}",
                       "arch": "vit_micro", "status": "completed", "epochs_run": run,
                       "epochs_planned": ft, "best_epoch": run, "val_mean_auc": max(curve),
                       "seed": 0, "pretrain_key": key, "param/pretrain.mask_ratio": r})
        epochs += [{"trial_id": tid, "epoch": e, "val_mean_auc": v, "epoch_time_s": FT_S}
                   for e, v in enumerate(curve, 1)]
        encoders.append({"pretrain_key": key, "wall_time_s": PRE_S * pre,
                         "device_s": PRE_S * pre + (PROBE_S * (pre - 1) if probes else 0.0)})
        enc_epochs += [{"pretrain_key": key, "epoch": e, "loss": 1.0, "time_s": PRE_S}
                       for e in range(1, pre + 1)]
        if probes:  # a probe that ranks like the final AUC, noisier early
            enc_probes += [{"pretrain_key": key, "epoch": e, "probe": "linear",
                            "value": quality(r) - 0.1 + 0.01 * ((i * 7) % 3) / e,
                            "time_s": PROBE_S} for e in range(1, pre)]
    meta = {"name": "mask_ratio", "spec": loaded.raw, "findings": ["a"],
            "base_recipe": loaded.base.model_dump(mode="json"),
            "hardware": {"ray_cluster": {"CPU": 2.0}}}
    write_results(run_dir, meta, trials=pd.DataFrame(trials), epochs=pd.DataFrame(epochs),
                  encoders=pd.DataFrame(encoders), encoder_epochs=pd.DataFrame(enc_epochs),
                  encoder_probes=pd.DataFrame(enc_probes))
    return run_dir


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    return load_recorded(make_store(tmp_path_factory.mktemp("run") / "mask_ratio"))


def test_a_replay_costs_what_it_ran(recorded):
    """TPE without stopping, all ten ratios: every encoder and every epoch, paid once."""
    out = replay_once(recorded, variant(recorded, STRATEGIES["tpe"], 0), 0, num_samples=10)
    assert len(out.trials) == 10 and out.substituted == 0 and out.censored_epochs == 0
    ft, pre = recorded_epochs(), recorded_pretrain_epochs()
    assert out.pretrain_epochs == 10 * pre and out.finetune_epochs == 10 * ft
    assert out.cost_device_s == pytest.approx(10 * (pre * PRE_S + ft * FT_S))
    assert out.best()["params"] == {"pretrain.mask_ratio": 0.8}
    # 2 slots, every trial pre-training inline: the makespan is half the work
    assert out.makespan_s == pytest.approx(5 * (pre * PRE_S + ft * FT_S))


def test_strategies_rank_by_what_they_find_and_spend(recorded):
    seeds = list(range(6))
    pre = recorded_pretrain_epochs()
    first, second = round(0.2 * pre), round(0.5 * pre)   # the milestones' epochs
    two = ["search.pretraining.fidelity.milestones=[0.2,0.5]"]
    rows = {name: summarise(recorded, name, [*sets, *(two if "mf" in name else [])], seeds,
                            num_samples=6) for name, sets in STRATEGIES.items()}
    assert all(r["replayable"] for r in rows.values())
    # ASHA stops fine-tuning early; multi-fidelity stops pre-training early
    assert rows["tpe+asha"]["finetune_epochs"] < rows["tpe"]["finetune_epochs"]
    assert rows["tpe+asha"]["pretrain_epochs"] == rows["tpe"]["pretrain_epochs"] == 6 * pre
    # 6 to the first milestone, the best 2 to the second, the best of those to the end (at 10
    # epochs: 12 + 6 + 5 of 60); a third promoted when an early leader of the first milestone
    # later falls out of the top third (asynchronous)
    mf = rows["tpe+asha+mf"]
    plain = 6 * first + 2 * (second - first) + (pre - second)
    assert {r["pretrain_epochs"] for r in mf["per_seed"]} <= {plain, plain + second - first}
    assert mf["pretrain_epochs"] <= 0.4 * rows["tpe+asha"]["pretrain_epochs"]
    assert rows["tpe+asha+mf"]["cost_device_s"] < rows["tpe+asha"]["cost_device_s"]
    # a probe that ranks encoders rightly keeps the search's answer as good
    assert rows["tpe+asha+mf"]["regret"] <= rows["tpe+asha"]["regret"] + 1e-9
    assert all(r["regret"] >= 0 for r in rows.values())


def test_trials_run_past_the_record_are_censored(tmp_path):
    rec = load_recorded(make_store(tmp_path / "mask_ratio", stopped_at={0.8: 5, 0.5: 5}))
    out = replay_once(rec, variant(rec, STRATEGIES["tpe"], 0), 0, num_samples=10)
    assert out.censored_epochs == 2 * (recorded_epochs() - 5)  # two recorded to epoch 5
    assert rec.real["trials"] == 10


def test_multi_fidelity_needs_probes_at_its_milestones(tmp_path):
    rec = load_recorded(make_store(tmp_path / "mask_ratio", probes=False))
    row = summarise(rec, "tpe+asha+mf", STRATEGIES["tpe+asha+mf"], [0], num_samples=6)
    assert not row["replayable"] and "no linear probe at pre-training epoch" in row["why"]


def test_cli_prints_a_ranked_table(recorded, capsys):
    assert main([str(recorded.run_dir), "--repeats", "3"]) == 0  # seconds: docs, not a test
    out = capsys.readouterr().out
    assert "| tpe+asha+mf |" in out and "replayed as run" in out


def test_cli_refuses_a_folder_without_results_in_one_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["--repeats", "0"], "--repeats must be at least 1, got 0"),
    (["--num-samples", "0"], "--num-samples must be at least 1, got 0"),
])
def test_cli_refuses_bad_counts_in_one_line(recorded, capsys, args, message):
    assert main([str(recorded.run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n"


def test_cli_refuses_a_search_without_a_spec_or_a_trained_recipe(tmp_path, capsys):
    run = make_store(tmp_path / "mask_ratio")
    meta = json.loads((run / "results" / "meta.json").read_text())
    (run / "results" / "meta.json").write_text(json.dumps({**meta, "spec": None}))
    assert main([str(run)]) == 2
    assert "holds no search spec to replay" in capsys.readouterr().err
    run2 = make_store(tmp_path / "two" / "mask_ratio")
    trials = pd.read_parquet(run2 / "results" / "trials.parquet")
    trials.assign(val_mean_auc=None, epochs_run=0).to_parquet(
        run2 / "results" / "trials.parquet")
    pd.DataFrame(columns=["trial_id", "epoch", "val_mean_auc", "train_loss", "lr",
                          "epoch_time_s"]).to_parquet(run2 / "results" / "epochs.parquet")
    assert main([str(run2)]) == 2
    err = capsys.readouterr().err
    assert "the search recorded no trained recipe to replay" in err and err.count("\n") == 1
