"""A Tune run whose own state is damaged, rebuilt from our records.

Tune keeps a run's state in ``tuner.pkl``, ``experiment_state-*.json`` and the searcher's and
callbacks' pickles. Written through ``storage.tunefs`` they are whole, but a disk that fails,
a copy made while a driver wrote, or a hand that edits them can still leave one unreadable,
and ``Tuner.restore`` then crashes on every resume. What a search needs of that state is also
in files we own, so the run is rebuilt from them instead:

- the Optuna journal (repaired first, ``repair.py``) names every trial a run started (the
  searcher tags each with its Tune id and run: ``tuning.TUNE_ATTR``) and its outcome;
- the trial records say which trials finished (``done.json``).

Finished, stopped and failed trials keep their records and outcomes (``rebuilt.json``, beside
Tune's moved-aside files); trials that were running lose their partial progress; the rest of
the run's samples continue in a fresh Tune run in the ``rebuilt`` folder, with a searcher on
the same study, so the sampler still learns from every trial.
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

from explorer.storage import atomic_write_json, read_json
from explorer.train.artifacts import TrialArtifacts

REBUILT = "rebuilt.json"
CONTINUATION = "rebuilt"
#: Tune's state files in a run folder (``ray.tune``'s CKPT_FILE_TMPL names).
STATE_FILES = ("tuner.pkl", "experiment_state-*.json", "searcher-state-*.pkl",
               "search_gen_state-*.json", "callback-states-*.pkl")
# What reading a truncated or garbled pickle or JSON raises (not ImportError/AttributeError:
# a class that moved is a bug to see, not a damaged file).
_DAMAGED = (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
            UnicodeDecodeError, OverflowError, MemoryError)


def state_damage(path: Path) -> str | None:
    """None when Tune can read the run's state at ``path``, else '<file>: <why>'. Reads each
    file the way ``Tuner.restore`` and ``fit()`` do."""
    from ray.tune.utils.serialization import _loads_with_cloudpickle
    from ray.tune.utils.util import _load_newest_checkpoint

    path = Path(path)
    checks = [("tuner.pkl", lambda: pickle.loads((path / "tuner.pkl").read_bytes()))]
    states = sorted(path.glob("experiment_state-*.json"))
    if states:
        checks.append((states[-1].name, lambda: _loads_with_cloudpickle(states[-1].read_bytes())))
    for pattern in STATE_FILES[2:]:
        newest = sorted(path.glob(pattern))
        if newest:
            checks.append((newest[-1].name,
                           lambda p=pattern: _load_newest_checkpoint(str(path), p)))
    for name, load in checks:
        try:
            load()
        except _DAMAGED as exc:
            why = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else \
                type(exc).__name__
            return f"{name}: {why}"
    return None


def _part_trials(study, run: str, records: Path, claimed: set[str]) -> dict[str, object]:
    """Tune trial id -> its Optuna trial, for the trials the run ``run`` started. A journal
    written before runs were tagged: every record not claimed by another run."""
    from explorer.search.tuning import DUPLICATE_ATTR, TUNE_ATTR

    trials = [t for t in study.get_trials(deepcopy=False) if DUPLICATE_ATTR not in t.user_attrs]
    if any(TUNE_ATTR in t.user_attrs for t in trials):
        return {t.user_attrs[TUNE_ATTR]["trial_id"]: t for t in trials
                if (t.user_attrs.get(TUNE_ATTR) or {}).get("run") == run
                and t.user_attrs[TUNE_ATTR].get("trial_id")}  # none: stage-stopped recipes
    by_params = {json.dumps(t.params, sort_keys=True): t for t in trials}
    out = {}
    for d in sorted(records.glob("*")):
        cfg = read_json(d / "config.json") or {}
        if d.name not in claimed and cfg.get("params") is not None:
            out[d.name] = by_params.get(json.dumps(cfg["params"], sort_keys=True))
    return out


def _outcome(trial_id: str, ot_trial, records: Path, tune_dir: Path) -> dict | None:
    """The trial's final state as ``stages.trial_states`` gives it, or None if it was
    interrupted (it has no outcome yet)."""
    from optuna.trial import TrialState

    from explorer.search.tuning import LOST_NOTE

    if TrialArtifacts(records / trial_id).path("done.json").is_file():
        return {"status": "TERMINATED", "error": None}
    state = getattr(ot_trial, "state", None)
    # COMPLETE without a record: stopped early by ASHA, told its last value; PRUNED: ended
    # without reporting a value (Ray's OptunaSearch). Tune calls both TERMINATED.
    if state in (TrialState.COMPLETE, TrialState.PRUNED):
        return {"status": "TERMINATED", "error": None}
    if state == TrialState.FAIL and ot_trial.user_attrs.get("note") != LOST_NOTE:
        err = tune_dir / trial_id / "error.txt"
        text = err.read_text(errors="replace").strip().splitlines() if err.is_file() else []
        return {"status": "ERROR", "error": (text[-1][:400] if text else
                                             "failed (its error text was in Tune's lost state)")}
    return None


def rebuild_run(run_dir: Path, exp_dir: Path, study_name: str, n: int, damage: str,
                claimed: set[str], shown: str) -> dict:
    """Move Tune's damaged state aside and record the run's trials from the journal and the
    records (``rebuilt.json``); returns that record. ``claimed``: trial ids other runs hold."""
    from explorer.search.study import load_study

    run_dir, exp_dir = Path(run_dir), Path(exp_dir)
    run = run_dir.relative_to(exp_dir).as_posix()
    aside = run_dir / f".tune-damaged-{time.strftime('%Y%m%d-%H%M%S')}"
    aside.mkdir(parents=True, exist_ok=True)
    for pattern in STATE_FILES:
        for f in run_dir.glob(pattern):
            f.replace(aside / f.name)
    records = exp_dir / "trials"
    trials, interrupted = [], 0
    for trial_id, ot_trial in _part_trials(load_study(exp_dir, study_name), run, records,
                                           claimed).items():
        outcome = _outcome(trial_id, ot_trial, records, run_dir)
        if outcome is None:
            interrupted += 1
        else:
            trials.append([trial_id, outcome])
    record = {"damaged": damage, "moved_to": aside.name, "trials": trials,
              "continued_in": CONTINUATION, "num_samples": max(0, n - len(trials)),
              "rebuilt": time.time()}
    atomic_write_json(run_dir / REBUILT, record)
    print(f"note: {shown}: Tune's state is damaged ({damage}); rebuilt the run from the "
          f"Optuna journal and the trial records: {len(trials)} trials kept, {interrupted} "
          f"interrupted one(s) replaced, {record['num_samples']} to run "
          f"(damaged files moved to {aside.name})", flush=True)
    return record


def unsaved_trials(run_dir: Path, exp_dir: Path, study_name: str, known: set[str],
                   shown: str) -> list[list]:
    """Trials of the run at ``run_dir`` that finished after Tune's last saved state (a search
    stopped by a fault, or killed, before its next save): unknown to the restored run, but in
    the journal with their outcome and in their records. They are kept, said in one line, and
    the searcher counted them (``tuning.ResumableOptunaSearch._run_full``), so the run has
    its ``num_samples`` trials. ``known``: the trial ids Tune and other runs hold. A journal
    from before runs were tagged has none."""
    from explorer.search.study import load_study
    from explorer.search.tuning import DUPLICATE_ATTR, TUNE_ATTR

    run_dir, exp_dir = Path(run_dir), Path(exp_dir)
    run = run_dir.relative_to(exp_dir).as_posix()
    kept = []
    for t in load_study(exp_dir, study_name).get_trials(deepcopy=False):
        tag = t.user_attrs.get(TUNE_ATTR) or {}
        if DUPLICATE_ATTR in t.user_attrs or tag.get("run") != run or tag["trial_id"] in known:
            continue
        if not tag["trial_id"]:  # a recipe the pre-training stage stopped: never a Tune trial
            continue
        outcome = _outcome(tag["trial_id"], t, exp_dir / "trials", run_dir)
        if outcome is not None:
            kept.append([tag["trial_id"], outcome])
    if kept:
        print(f"note: {shown}: {len(kept)} trial(s) finished after Tune last saved its state "
              f"(the search was stopped before its next save): "
              f"{', '.join(t for t, _ in kept)}; kept from the Optuna journal and their "
              f"records", flush=True)
    return kept
