"""``settle_study`` on a real Optuna journal: lost trials failed, retried trials added."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from explorer.search.study import load_study, settle_study
from explorer.search.tuning import optuna_storage
from explorer.train.artifacts import TrialArtifacts

DIST = {"pretrain.mask_ratio": optuna.distributions.FloatDistribution(0.5, 0.95)}


def _record(run_dir, trial_id: str, ratio: float, value: float) -> None:
    art = TrialArtifacts(run_dir / "trials" / trial_id)
    art.write_json("config.json", {"params": {"pretrain.mask_ratio": ratio}})
    art.write_json("summary.json", {"val_mean_auc": value})


def test_settle_fails_lost_trials_and_adds_retried_ones(tmp_path):
    study = optuna.create_study(study_name="exp", storage=optuna_storage(tmp_path),
                                direction="maximize")
    done = study.ask(DIST)
    study.tell(done, 0.6)
    lost = study.ask(DIST)                      # suggested, then the driver was killed
    failed = study.ask(DIST)                    # errored, told FAIL, then --retry-failed
    study.tell(failed, state=TrialState.FAIL)
    _record(tmp_path, "a", done.params["pretrain.mask_ratio"], 0.6)
    _record(tmp_path, "c", failed.params["pretrain.mask_ratio"], 0.7)
    states = [("a", {"status": "TERMINATED"}), ("c", {"status": "TERMINATED"}),
              ("d", {"status": "ERROR"})]

    assert settle_study(tmp_path, "exp", states) == {"lost": 1, "retried": 1}
    trials = load_study(tmp_path, "exp").trials
    assert trials[lost.number].state == TrialState.FAIL
    assert trials[lost.number].user_attrs["note"] == "lost in an interruption"
    added = [t for t in trials if t.user_attrs.get("tune_trial_id") == "c"]
    assert len(added) == 1 and added[0].state == TrialState.COMPLETE and added[0].value == 0.7
    assert added[0].params == failed.params

    # Settling again changes nothing: the journal is already true to what ran.
    assert settle_study(tmp_path, "exp", states) == {"lost": 0, "retried": 0}
    assert len(load_study(tmp_path, "exp").trials) == len(trials)
