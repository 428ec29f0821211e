"""Orchestration overhead: the same trials through Ray Tune (inline, TorchTrainer) and in-process.

    python -m bench.orchestration --run-dir DIR   # part B from an earlier bench.end_to_end run
    python -m bench.orchestration                 # also runs README command 1 (~7 min) for part B
    python -m bench.orchestration --skip-search   # part A only (~3 min)

Part A. N trials (default 4) of ``search_spaces/layer_decay.yaml`` at ``scale=smoke``, with fixed
layer-decay values (a grid, no Optuna/ASHA, so every mode runs the same work: one shared MAE
pre-training, then N fine-tunings of 3 epochs), one trial at a time, run

- (c) in one process: ``explorer.search.trial.run_worker`` with a ``LocalSession`` per trial, called
  in a loop (after one untimed warm-up trial: imports and first-call set-up are paid);
- (a) through Ray Tune, inline mode: ``explorer.search.trial.search_trainable`` in a ``tune.Tuner``
  as ``explorer.search.stages.run_search`` built it before actor reuse (a new actor per trial;
  ``resources.trainer=inline``);
- (b) through Ray Tune with a Ray Train ``TorchTrainer`` per trial, 1 worker
  (``resources.trainer=torch_trainer``).

Ray is started once, as ``explorer.search.cluster.connect`` does, and its start-up is shown
on its own row (a search pays it once). A mode's wall is ``Tuner.fit()`` (or the loop);
overhead per trial = (wall of the mode - wall of (c)) / N; overhead share = that / the mode's
wall. Training share = the epochs' time from the artifacts (as in ``bench.end_to_end``) / wall.
A fourth mode, (a'), is (a) with ``TuneConfig(reuse_actors=True)`` (one trial actor process
reused for the next trial instead of a new process that imports torch again): what
``explorer.search.stages`` does since this benchmark measured it. "outside run_worker per trial" =
(wall - sum of each trial's ``config.json`` started -> ``done.json`` finished) / N: actor
start-up, imports, Tune's bookkeeping between trials. ``--repeats R`` runs the modes R times
in the order c, a, a', b, c, ... and takes medians.

Part B. The default cpu search (README command 1) must spend >= 85% of its wall time x slots
training: ``bench.end_to_end`` runs it (or ``--run-dir`` reuses its folder) and does the
accounting, described in its docstring; the last row of the table is its total.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench._common import machine_line, print_table
from bench.end_to_end import REPO, account, run_search

SPEC = REPO / "search_spaces" / "layer_decay.yaml"
NAME = "layer_decay"
PARAM = "finetune.layer_decay"
VALUES = (0.45, 0.55, 0.65, 0.75, 0.85, 0.35, 0.95, 0.5)
MODES = "carb"
TRAINERS = {"c": "inline", "a": "inline", "r": "inline", "b": "torch_trainer"}
LABELS = {"c": "(c) same loop, one process (LocalSession)",
          "a": "(a) Ray Tune, inline trials",
          "r": "(a') as (a) + TuneConfig(reuse_actors=True)",
          "b": "(b) Ray Tune + TorchTrainer (1 worker)"}


def _loaded(trainer: str):
    from explorer.spec import load_spec

    return load_spec(SPEC, ["scale=smoke", f"resources.trainer={trainer}"])


def _json(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def training_seconds(storage: Path) -> float:
    """Pre-training + fine-tuning epoch time recorded by the loops under ``storage``."""
    total = 0.0
    for f in (storage / "_encoders").glob("*/losses.json"):
        total += sum(e["time_s"] for e in _json(f, []))
    for f in (storage / NAME / "trials").glob("*/history.json"):
        total += sum(h["epoch_time_s"] for h in _json(f, []))
    return total


def run_local(storage: Path, n: int) -> float:
    from explorer.search.context import absolute_paths
    from explorer.search.trial import run_worker, trial_recipe_dict
    from explorer.storage import Store
    from explorer.train.session import LocalSession

    base = absolute_paths(_loaded("inline").base.model_dump(mode="json"))
    t0 = time.perf_counter()
    for i, v in enumerate(VALUES[:n]):
        tid = f"local_{i:05d}"
        job = {"kind": "recipe", "trial_id": tid, "params": {PARAM: v},
               "recipe": trial_recipe_dict(base, {PARAM: v}),
               "artifacts": f"{NAME}/trials/{tid}", "store": Store(storage),
               "score_test": False}
        run_worker(job, LocalSession(trial_id=tid))
    return time.perf_counter() - t0


def connect() -> float:
    """Start Ray exactly as a search does (inside ``cluster.ray_settings``); the seconds it
    took."""
    from explorer.search import cluster

    t0 = time.perf_counter()
    cluster.connect(None, verbose=False)
    return time.perf_counter() - t0


def trial_seconds(storage: Path) -> float:
    """Sum over trials of ``run_worker``'s own span (config.json started -> done.json finished)."""
    total = 0.0
    for d in (storage / NAME / "trials").glob("*"):
        started = (_json(d / "config.json") or {}).get("started")
        finished = (_json(d / "done.json") or {}).get("finished")
        if started and finished:
            total += finished - started
    return total


def run_tune(storage: Path, n: int, trainer: str, reuse: bool = False) -> float:
    from ray import tune

    from explorer.search.context import absolute_paths
    from explorer.search.resources import trial_resources
    from explorer.search.trial import search_trainable
    from explorer.search.tuning import trial_dirname
    from explorer.storage import Store

    base = _loaded(trainer).base
    ctx = {"run": NAME, "store": Store(storage),
           "base_recipe": absolute_paths(base.model_dump(mode="json"))}
    trainable = tune.with_resources(tune.with_parameters(search_trainable, context=ctx),
                                    trial_resources(base))
    tuner = tune.Tuner(
        trainable,
        param_space={PARAM: tune.grid_search(list(VALUES[:n]))},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, trial_dirname_creator=trial_dirname,
                                    reuse_actors=reuse),
        run_config=tune.RunConfig(name=NAME, storage_path=str(storage), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0)))
    t0 = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - t0
    if grid.errors:
        raise SystemExit(f"{trainer}: {len(grid.errors)} trial(s) failed: {grid.errors[0]}")
    return wall


def part_a(n: int, repeats: int) -> list[list[object]]:
    from explorer.search import cluster

    with cluster.ray_settings(verbose=False):  # the process as a search runs it
        return _part_a(n, repeats)


def _part_a(n: int, repeats: int) -> list[list[object]]:
    import ray

    tmp = Path(tempfile.mkdtemp(prefix="cxr-bench-orch-"))
    walls: dict[str, list[float]] = {k: [] for k in MODES}
    train: dict[str, list[float]] = {k: [] for k in MODES}
    inside: dict[str, list[float]] = {k: [] for k in MODES}
    try:
        run_local(tmp / "warm-up", 1)  # untimed: the process's first trial pays one-off costs
        t_init = connect()
        for r in range(repeats):
            for mode in MODES:
                storage = tmp / f"{mode}{r}"
                if mode == "c":
                    wall = run_local(storage, n)
                else:
                    wall = run_tune(storage, n, TRAINERS[mode], reuse=mode == "r")
                walls[mode].append(wall)
                train[mode].append(training_seconds(storage))
                inside[mode].append(trial_seconds(storage))
                print(f"  {LABELS[mode]}: {wall:.1f} s", flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    rows = [["ray.init (once per search)", "-", f"{t_init:.1f}", "-", "-", "-", "-", "-", "-"]]
    for mode in MODES:
        w = med[mode]
        over = (w - med["c"]) / n
        between = (w - statistics.median(inside[mode])) / n
        rows.append([LABELS[mode], n, f"{w:.1f}", f"{w / n:.1f}",
                     "-" if mode == "c" else f"{over:.1f}",
                     "-" if mode == "c" else f"{over * n / w:.0%}", f"{between:.1f}",
                     f"{statistics.median(train[mode]) / w:.0%}", "-"])
    return rows


def part_b(root: Path) -> list[object]:
    a = account(root)
    n = a["finetune"][0] + a["baselines"][0]
    verdict = "met" if a["share"] >= 0.85 else f"MISSED by {0.85 - a['share']:.1%}"
    non_training = a["available"] - a["training"]
    return [f"default cpu search, README command 1 ({a['slots']} slots)",
            f"{a['finetune'][0]}+{a['baselines'][0]} baselines", f"{a['wall']:.0f}",
            f"{a['available'] / n:.0f} slot-s", f"{non_training / n:.0f} slot-s (all non-training)",
            f"{1 - a['share']:.0%} (all non-training)", "-",
            f"{a['share']:.0%} of wall x slots", f">= 85%: {verdict}"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4, choices=range(1, len(VALUES) + 1),
                    metavar=f"1..{len(VALUES)}")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--run-dir", type=Path, help="a bench.end_to_end folder to account for part B")
    ap.add_argument("--skip-search", action="store_true", help="part A only")
    ap.add_argument("--skip-trials", action="store_true", help="part B only")
    args = ap.parse_args(argv)
    print(machine_line(threads="1 per trial"))
    rows = []
    if not args.skip_search:
        root = args.run_dir
        if root is None:
            root = Path(tempfile.mkdtemp(prefix="cxr-bench-e2e-"))
            run_search(root)
        print(f"part B run: {root}", flush=True)
        row_b = part_b(root)
    if not args.skip_trials:
        rows += part_a(args.trials, args.repeats)
    if not args.skip_search:
        rows.append(row_b)
    print_table(["what", "trials", "wall s", "per trial", "overhead per trial (vs c)",
                 "overhead share of wall", "outside run_worker per trial", "training share",
                 "target"], rows)


if __name__ == "__main__":
    main()
