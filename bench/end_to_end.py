"""End to end: README command 1 at the default (cpu) scale, its wall time, and the share training.

    python -m bench.end_to_end                    # runs the search (~7 min on 2 cores)
    python -m bench.end_to_end --run-dir DIR      # account an earlier run again (no search)

Runs ``python -m explorer.search search_spaces/mask_ratio.yaml --storage DIR/runs --reports
DIR/reports`` in a subprocess, as a user would from a fresh clone (a private, cold data cache in
``DIR/cache``; ``--warm-cache`` uses the default one), times it, writes ``DIR/bench_run.json``
and keeps DIR (``bench.orchestration --run-dir DIR`` reuses it).

Accounting, in slot-seconds. A slot is one trial's worth of the cluster: Ray's CPUs /
``resources.cpus_per_worker`` (2 / 1 here: the search runs 2 trials at a time and the baselines
fill free slots beside it). Available = wall time of the command x slots. Training = from the
artifacts the worker loops write, summed over everything trained in this run:

- MAE pre-training: ``<storage>/_encoders/*/losses.json`` ``time_s`` per epoch (encoders trained
  by this run's trials; a cache hit from an earlier run costs nothing and counts nothing);
- ViT fine-tuning: ``<storage>/mask_ratio/trials/*/history.json`` ``epoch_time_s``;
- DenseNet-121 baselines: ``<storage>/_baselines/*/history.json`` ``epoch_time_s`` (runs started
  after this experiment was created).

An epoch's time covers its training steps (data loading included) and the per-epoch validation
pass that ASHA and the selection need; it excludes building the model, loading data, writing
checkpoints and Tune's reporting. Training share = training / available. The rest is split into
"in trials, outside epochs" (trial start to finish, from ``config.json`` ``started`` to
``done.json`` ``finished`` or the last ``summary.json`` update for a trial ASHA stopped, minus its
epochs; it also holds the baselines' one-time test scoring and the encoders' reconstruction
panels), "outside trials, serial stages" (start-up before the Tuners: data check, ``ray.init``;
finalists' test scoring, results store and report after them; each x slots, as the slots idle),
and "idle slots while the Tuners run" (the remainder: trial start-up, scheduling gaps, a slot
with nothing left to run). Target (from ``bench.orchestration``): training share >= 85%.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import machine_line, print_table

REPO = Path(__file__).resolve().parents[1]
SPEC = "search_spaces/mask_ratio.yaml"
NAME = "mask_ratio"
TARGET = 0.85


def run_search(root: Path, warm_cache: bool = False, spec: str = SPEC,
               extra: tuple[str, ...] = ()) -> dict:
    """Run README command 1 into ``root`` and record its wall time in ``root/bench_run.json``."""
    root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "explorer.search", spec, "--storage", str(root / "runs"),
           "--reports", str(root / "reports"), *extra]
    env = dict(os.environ)
    if not warm_cache:
        env["CXR_EXPLORER_CACHE"] = str(root / "cache")
    print(f"running: {' '.join(cmd[1:])} (log: {root / 'search.log'})", file=sys.stderr,
          flush=True)
    t0 = time.time()
    with open(root / "search.log", "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.time() - t0
    rec = {"cmd": " ".join(cmd[1:]), "returncode": proc.returncode, "wall_s": wall,
           "started": t0, "finished": t0 + wall, "cold_cache": not warm_cache,
           "cores": len(os.sched_getaffinity(0))}
    (root / "bench_run.json").write_text(json.dumps(rec, indent=2))
    if proc.returncode != 0:
        tail = (root / "search.log").read_text().splitlines()[-15:]
        raise SystemExit(f"the search failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return rec


def _json(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _storage_of(root: Path, name: str) -> Path:
    for cand in (root / "runs", root):
        if (cand / name / "experiment.json").is_file():
            return cand
    raise SystemExit(f"{root}: no {name}/experiment.json under it or under its runs/ folder")


def _trial_span(d: Path) -> tuple[float, float] | None:
    cfg = _json(d / "config.json", {})
    end = (_json(d / "done.json") or {}).get("finished")
    end = end or (_json(d / "summary.json") or {}).get("updated")
    if "started" not in cfg or end is None:
        return None
    return float(cfg["started"]), float(end)


def account(root: Path, name: str = NAME) -> dict:
    """Wall, slots and the slot-second accounting of one run (see the module docstring)."""
    storage = _storage_of(root, name)
    exp = storage / name
    created = float(_json(exp / "experiment.json", {}).get("created", 0))
    meta = _json(exp / "results" / "meta.json", {})
    stages = _json(exp / "stages.json", {})
    run = _json(root / "bench_run.json")
    if run:
        wall, wall_note = float(run["wall_s"]), "timed by bench"
    else:  # an experiment made elsewhere: from its creation to the last file it wrote
        written = [p.stat().st_mtime for p in (exp / "results").glob("*")]
        if not written:
            raise SystemExit(f"{exp}: the run did not finish (no results/); run it again")
        last = max(written)
        wall, wall_note = last - created + stages.get("report", 0.0), "from file times"
    cluster_cpu = float((meta.get("hardware") or {}).get("ray_cluster", {}).get("CPU", 0)) or (
        float(run["cores"]) if run else float(os.cpu_count() or 1))
    cpus_per = float(((meta.get("base_recipe") or {}).get("resources") or {})
                     .get("cpus_per_worker", 1))
    slots = max(1, int(cluster_cpu // cpus_per))

    out = {"wall": wall, "wall_note": wall_note, "slots": slots, "stages": stages,
           "pretrain": [0, 0, 0.0], "finetune": [0, 0, 0.0], "baselines": [0, 0, 0.0],
           "in_trials": 0.0, "trial_ids": []}
    spans = []
    for d in sorted((exp / "trials").glob("*")):
        hist = _json(d / "history.json", [])
        out["trial_ids"].append(d.name)
        out["finetune"][0] += 1
        out["finetune"][1] += len(hist)
        out["finetune"][2] += sum(h["epoch_time_s"] for h in hist)
        if span := _trial_span(d):
            spans.append(span[1] - span[0])
    for d in sorted((storage / "_encoders").glob("*")):
        if (_json(d / "meta.json", {}) or {}).get("trained_by") not in out["trial_ids"]:
            continue
        losses = _json(d / "losses.json", [])
        out["pretrain"][0] += 1
        out["pretrain"][1] += len(losses)
        out["pretrain"][2] += sum(e["time_s"] for e in losses)
    for d in sorted((storage / "_baselines").glob("*")):
        span = _trial_span(d)
        if span is None or span[0] < created:
            continue
        hist = _json(d / "history.json", [])
        out["baselines"][0] += 1
        out["baselines"][1] += len(hist)
        out["baselines"][2] += sum(h["epoch_time_s"] for h in hist)
        spans.append(span[1] - span[0])
    out["training"] = out["pretrain"][2] + out["finetune"][2] + out["baselines"][2]
    out["trial_wall"] = sum(spans)
    out["available"] = wall * slots
    out["share"] = out["training"] / out["available"]
    serial_after = sum(stages.get(k, 0.0) for k in ("test", "results", "report"))
    tuners = max(stages.get("search", 0.0), stages.get("baselines", 0.0))
    out["startup"] = max(0.0, wall - tuners - serial_after)
    out["serial_after"] = serial_after
    return out


def rows_for(a: dict) -> list[list[object]]:
    av = a["available"]

    def pct(x: float) -> str:
        return f"{x / av:.1%}"

    in_trials = a["trial_wall"] - a["training"]
    serial = (a["startup"] + a["serial_after"]) * a["slots"]
    idle = av - a["trial_wall"] - serial
    p, f, b = a["pretrain"], a["finetune"], a["baselines"]
    st = a["stages"]
    verdict = "met" if a["share"] >= TARGET else f"MISSED by {TARGET - a['share']:.1%}"
    return [
        ["README command 1, wall", a["wall_note"], f"{a['wall']:.0f}", "-"],
        [f"available: wall x {a['slots']} slots", "", f"{av:.0f}", "100%"],
        ["MAE pre-training epochs", f"{p[0]} encoders, {p[1]} epochs", f"{p[2]:.0f}", pct(p[2])],
        ["ViT fine-tuning epochs (incl. validation)", f"{f[0]} trials, {f[1]} epochs",
         f"{f[2]:.0f}", pct(f[2])],
        ["DenseNet-121 baseline epochs (incl. validation)", f"{b[0]} runs, {b[1]} epochs",
         f"{b[2]:.0f}", pct(b[2])],
        ["TRAINING (sum of the three)", f"target >= {TARGET:.0%}: {verdict}",
         f"{a['training']:.0f}", pct(a["training"])],
        ["in trials, outside epochs", "data, models, checkpoints, test scoring",
         f"{in_trials:.0f}", pct(in_trials)],
        ["outside trials, serial stages (x slots)",
         f"start-up {a['startup']:.0f} s, test {st.get('test', 0):.0f} s, results+report "
         f"{st.get('results', 0) + st.get('report', 0):.0f} s", f"{serial:.0f}", pct(serial)],
        ["idle slots while the Tuners run", f"search {st.get('search', 0):.0f} s, baselines "
         f"{st.get('baselines', 0):.0f} s (in parallel)", f"{idle:.0f}", pct(idle)],
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, help="account this earlier run instead of running")
    ap.add_argument("--warm-cache", action="store_true",
                    help="use the default data cache (a second run) instead of a cold one")
    args = ap.parse_args(argv)
    print(machine_line(threads="1 per trial"))
    root = args.run_dir
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="cxr-bench-e2e-"))
        run_search(root, warm_cache=args.warm_cache)
    a = account(root)
    cold = (_json(root / "bench_run.json") or {}).get("cold_cache")
    print(f"run: {root} ({'cold' if cold else 'warm or unknown'} data cache)")
    print_table(["what", "detail", "slot-seconds", "share of wall x slots"], rows_for(a))


if __name__ == "__main__":
    main()
