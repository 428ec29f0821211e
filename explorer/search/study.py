"""Keeping the Optuna study (a journal file in the experiment folder) true to what ran.

Ray's OptunaSearch tells Optuna about trials as they finish. Two interruptions can leave the
study out of step with Tune, and ``settle_study`` mends both after every search stage:

- a trial suggested after Tune's last experiment checkpoint, then lost to a ``kill -9``, stays
  RUNNING in the journal forever (and, with TPE's constant liar, keeps repelling its
  neighbourhood): it is marked FAIL with the note ``lost in an interruption``;
- a trial that errored, was told FAIL, and then finished under ``--retry-failed`` is added
  again as COMPLETE with its real value, so the sampler learns from it.
"""

from __future__ import annotations

from pathlib import Path

from explorer.search.space import config_key
from explorer.search.tuning import DUPLICATE_ATTR, EXHAUSTED_ATTR, LOST_NOTE, optuna_storage
from explorer.train.artifacts import TrialArtifacts


def load_study(run_dir: Path, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=optuna_storage(run_dir))


def exhausted(run_dir: Path, name: str) -> int | None:
    """How many configurations a bounded space held when the searcher found it tried in
    full (``explorer.tuning``), or None."""
    return load_study(run_dir, name).user_attrs.get(EXHAUSTED_ATTR)


def settle_study(run_dir: Path, name: str, states: list[tuple[str, dict]],
                 params_space: dict[str, dict]) -> dict:
    """Fail lost RUNNING trials; add retried trials' values. Returns counts of each fix."""
    import optuna
    from optuna.trial import TrialState

    study = load_study(run_dir, name)
    storage = study._storage  # the public Study API has no per-trial attribute setter
    lost = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(t._trial_id, "note", LOST_NOTE)
        study.tell(t.number, state=TrialState.FAIL)
        lost += 1

    def key(params: dict) -> str:
        return config_key(params, params_space)

    trials = [t for t in study.get_trials(deepcopy=False) if DUPLICATE_ATTR not in t.user_attrs]
    complete = {key(t.params) for t in trials if t.state == TrialState.COMPLETE}
    added = 0
    # A multi-objective study is told no retried values: the summary holds no cost to tell.
    for trial_id, st in states if len(study.directions) == 1 else []:
        if st["status"] != "TERMINATED":
            continue
        art = TrialArtifacts(run_dir / "trials" / trial_id)
        params = (art.read_json("config.json") or {}).get("params")
        value = (art.read_json("summary.json") or {}).get("val_mean_auc")
        if params is None or value is None or key(params) in complete:
            continue
        failed = next((t for t in trials if key(t.params) == key(params)), None)
        if failed is None:
            continue
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=failed.distributions, value=value,
            user_attrs={"tune_trial_id": trial_id, "note": "finished under --retry-failed"}))
        complete.add(key(params))
        added += 1
    return {"lost": lost, "retried": added}
