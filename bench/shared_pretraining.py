"""Shared pre-training: layer_decay.yaml's trials with one shared MAE encoder vs one each.

    python -m bench.shared_pretraining [--scale cpu] [--trials 3] [--repeats 1]

``search_spaces/layer_decay.yaml`` searches a fine-tuning knob only, so all its trials hash to
the same pre-training key and share one encoder in ``<storage>/_encoders/<key>/``. Method: the
trial body itself (``explorer.search.trial.run_worker`` with a ``LocalSession``: load data,
``ensure_encoder``, ``finetune_loop``, exactly what a Tune trial runs), called for N trials with
different layer-decay values, one after another in this process:

- with reuse: all N trials share one storage folder: the first pre-trains, the others find the
  encoder and go straight to fine-tuning (what the search does);
- without reuse: every trial gets a fresh storage folder, so each pre-trains its own encoder
  (what a search would cost if the cache did not exist).

The two arms alternate trial by trial (with 0, without 0, with 1, ...) and each arm's wall is
the sum of its trials' times, so a busy spell on the shared machine hits both arms alike.

Ray is left out on purpose: its per-trial cost is the same in both arms (``bench.orchestration``
measures it) and would only add noise. Speed-up = wall without / wall with. The default is the
cpu scale with 3 trials (~5 min; the spec's 6 trials take twice that); the table also projects
the speed-up for the spec's ``num_samples`` from the measured per-trial pre-training and
fine-tuning times: N (P + F) / (P + N F). In the real search (2 trials at a time) a second trial
that starts while the first pre-trains waits for the encoder, so part of the saving is idle
time on that slot; ``bench.end_to_end`` sees that.
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
from bench.end_to_end import REPO

SPEC = REPO / "search_spaces" / "layer_decay.yaml"
PARAM = "finetune.layer_decay"
VALUES = (0.55, 0.45, 0.65, 0.75, 0.35, 0.85)


def _json(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def run_trial(root: Path, base: dict, i: int, shared: bool) -> float:
    """Trial i in this process: storage ``root`` if ``shared``, else a fresh folder of its own."""
    from explorer.search.trial import run_worker, trial_recipe_dict
    from explorer.storage import Store
    from explorer.train.session import LocalSession

    v = VALUES[i]
    storage = root if shared else root / f"storage{i}"
    tid = f"t{i}"
    job = {"kind": "recipe", "trial_id": tid, "params": {PARAM: v},
           "recipe": trial_recipe_dict(base, {PARAM: v}),
           "artifacts": f"trials/{tid}", "store": Store(storage), "score_test": False}
    t0 = time.perf_counter()
    run_worker(job, LocalSession(trial_id=tid))
    return time.perf_counter() - t0


def epoch_times(root: Path) -> tuple[int, float, float]:
    """(encoders trained, pre-training s, fine-tuning s) from the artifacts under ``root``."""
    encoders = list(root.glob("**/_encoders/*/losses.json"))
    pre = sum(e["time_s"] for f in encoders for e in _json(f, []))
    fine = sum(h["epoch_time_s"] for f in root.glob("**/trials/*/history.json")
               for h in _json(f, []))
    return len(encoders), pre, fine


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=("smoke", "cpu"), default="cpu")
    ap.add_argument("--trials", type=int, default=3, choices=range(2, len(VALUES) + 1),
                    metavar=f"2..{len(VALUES)}")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)

    from explorer.data import load_data
    from explorer.search.context import absolute_paths
    from explorer.spec import load_spec

    loaded = load_spec(SPEC, [f"scale={args.scale}"])
    base = absolute_paths(loaded.base.model_dump(mode="json"))
    load_data(loaded.base.data)  # fill the data cache outside the timed runs
    print(machine_line(threads="1 (setup_worker: cpus_per_worker)"))
    n = args.trials
    warm = Path(tempfile.mkdtemp(prefix="cxr-bench-share-warm-"))
    try:  # untimed: the process's first trial pays one-off costs (imports, oneDNN set-up)
        run_trial(warm, base, 0, shared=True)
    finally:
        shutil.rmtree(warm, ignore_errors=True)
    walls: dict[bool, list[float]] = {True: [], False: []}
    parts: dict[bool, tuple[int, float, float]] = {}
    for _ in range(args.repeats):
        roots = {s: Path(tempfile.mkdtemp(prefix="cxr-bench-share-")) for s in (True, False)}
        try:
            spent = {True: 0.0, False: 0.0}
            for i in range(n):  # the two arms alternate trial by trial: load drifts hit both
                for shared in (True, False):
                    spent[shared] += run_trial(roots[shared], base, i, shared)
            for shared in (True, False):
                walls[shared].append(spent[shared])
                parts[shared] = epoch_times(roots[shared])
                print(f"  {'with' if shared else 'without'} reuse: {spent[shared]:.0f} s",
                      flush=True)
        finally:
            for r in roots.values():
                shutil.rmtree(r, ignore_errors=True)

    w_with, w_without = (statistics.median(walls[s]) for s in (True, False))
    n_enc, pre_all, fine_all = parts[False]
    p, f = pre_all / n_enc, fine_all / n  # per-trial pre-training and fine-tuning epochs
    n_spec = loaded.spec.search.num_samples
    projected = n_spec * (p + f) / (p + n_spec * f)
    rows = []
    for shared, w in ((True, w_with), (False, w_without)):
        enc, pre, fine = parts[shared]
        rows.append([f"{'with' if shared else 'without'} reuse", n, enc, f"{pre:.0f}",
                     f"{fine:.0f}", f"{w:.0f}", "1.00x" if not shared else
                     f"{w_without / w_with:.2f}x", "-"])
    rows[0][-1] = f"{projected:.2f}x (P={p:.0f} s, F={f:.0f} s)"
    print(f"layer_decay.yaml at scale={args.scale}: {n} trials, one after another")
    print_table(["run", "trials", "encoders trained", "pre-training s", "fine-tuning s",
                 "wall s", "speed-up (wall without / with)",
                 f"projected for num_samples={n_spec}"], rows)


if __name__ == "__main__":
    main()
