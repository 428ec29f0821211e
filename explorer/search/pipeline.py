"""The stages of one run, in order, each safe to re-run after an interruption.

1. search      Ray Tune: Optuna TPE suggests recipes, ASHA stops weak ones (validation only)
2. baselines   CNN runs with the same data and budget, cached in ``<storage>/_baselines``
3. finalists   the top recipes scored once on the test split
4. results     the Parquet results store (``explorer.results``)
5. report      ``reports/<name>/index.html``

``prepare`` runs before Ray starts: bad data or weights fail there, before anything is written.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from explorer.names import CNN_ARCHS
from explorer.search.context import RunContext, RunInputs, absolute_paths


def prepare(inputs: RunInputs):
    """The run's data (``explorer.data.DataBundle``), checked; and every weights file it names
    loaded once into its model, so a file that cannot be read or does not fit fails now, in
    one line, not later inside every trial."""
    from explorer.data import load_data
    from explorer.models import create_cnn, create_vit_classifier
    from explorer.models.starts import weights_of
    from explorer.search.pools import pool_notes
    from explorer.search.preflight import check_trainable
    from explorer.train.common import check_plans
    from explorer.train.finetune import check_validation
    from explorer.train.starts import check_starts

    b = inputs.base
    data = load_data(b.data)
    check_validation(data)
    check_plans(b, len(data.train))  # an effective batch the workers cannot keep exactly
    check_trainable(inputs.loaded, len(data.train))
    n = len(data.findings)
    recipes = [b, *(b.model_validate(absolute_paths(r.model_dump(mode="json")))
                    for _, _, r in inputs.loaded.baseline_recipes())]
    seen = set()
    for r in recipes:
        arch, ckpt, weights = r.model.arch, r.pretrain.from_checkpoint, r.finetune.weights
        if ckpt and r.model.family == "vit" and (arch, ckpt) not in seen:
            seen.add((arch, ckpt))
            create_vit_classifier(arch, img_size=r.data.image_size,
                                  patch_size=r.model.patch_size, num_classes=n,
                                  global_pool=r.model.global_pool,
                                  encoder_state=weights_of(arch, ckpt,
                                                           "pretrain.from_checkpoint"))
        if weights and arch in CNN_ARCHS and (arch, weights) not in seen:
            seen.add((arch, weights))
            create_cnn(arch, num_classes=n, weights=weights)
        if r.pretrains and r.pretrain.init_from:   # continued pre-training's start fits
            check_starts(r)
    pool_notes(recipes)   # a pooled source that does not exist, or a pool the guard empties
    return data


class _Background:
    """Run ``fn`` in a daemon thread; ``result()`` joins and re-raises its exception."""

    def __init__(self, fn, name: str):
        self._out: dict = {}

        def target() -> None:
            try:
                self._out["value"] = fn()
            except BaseException as exc:  # re-raised in the caller's thread
                self._out["error"] = exc

        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)

    def result(self):
        self._thread.join()
        if "error" in self._out:
            raise self._out["error"]
        return self._out.get("value")


class Pipeline:
    """Runs the stages of ``ctx`` and writes the report under ``reports/<name>/``."""

    def __init__(self, ctx: RunContext, reports: Path):
        self.ctx = ctx
        self.report_path = Path(reports) / ctx.exp.name / "index.html"

    def run(self, extend: int = 0, retry_failed: bool = False) -> int:
        """0 when every stage finished, 130 when the search was interrupted."""
        # A remote storage gets the driver's own files (Tune's state, the Optuna journal,
        # results) every few seconds; trial records are pushed by the trials themselves.
        exp = self.ctx.exp
        with exp.store.syncing(exp.name, skip_dirs=("trials", "_train"),
                               last=("optuna.journal",)):
            return self._run(extend, retry_failed)

    def _run(self, extend: int, retry_failed: bool) -> int:
        from explorer.search.faults import FaultLog, FaultWatch

        # A storage fault in a trial or in Tune's own writes ends both Tune runs (faults.py).
        with FaultLog().attached() as log:
            halt = threading.Event()
            where = self.ctx.exp.where
            return self._stages(extend, retry_failed, FaultWatch(where, log),
                                FaultWatch(where, log, halt=halt), halt)

    def _stages(self, extend: int, retry_failed: bool, watch, baselines_watch, halt) -> int:
        from explorer.search.stages import run_baselines, run_search, score_finalists

        ctx = self.ctx
        # The baselines run beside the search (a second Tuner in a thread): the cluster's idle
        # slots, e.g. while the last search trials finish, go to them instead of waiting.
        started = threading.Event()
        baselines = _Background(
            lambda: self._timed("baselines",
                                lambda: run_baselines(ctx, started, baselines_watch)),
            "baselines")
        # Tune's trainable registry is not thread-safe: let the baselines register first.
        while not started.wait(0.2) and baselines.alive():
            pass
        try:
            states = self._timed("search", lambda: run_search(ctx, extend, retry_failed, watch))
        except BaseException:
            # The search stopped (a fault, Ctrl-C, SIGTERM): stop the baselines' Tune run too,
            # as a crash would (its last snapshot is resumed), before the process exits; a
            # daemon thread still printing at interpreter exit aborts it with a C stack dump.
            halt.set()
            baselines.wait(60)
            raise
        if states is None:
            return self._interrupted()
        runs = baselines.result()
        if runs is None:
            return self._interrupted()
        finalists = self._timed("test", lambda: score_finalists(ctx, states))
        self._timed("results", lambda: self.collect(states, runs, finalists))
        self._timed("report", self.report)
        # A trial that ASHA stopped finishes its queued writes on its way out, a resume state
        # among them, and may do so after the search stage pruned: prune once more at the end.
        from explorer.search.stages import prune_resume_states

        prune_resume_states(ctx.exp.store, ctx.exp.name, states)
        return 0

    def _timed(self, stage: str, fn):
        t0 = time.time()
        try:
            out = fn()
        except BaseException:
            # best effort: on a full or read-only disk this write fails too, and must not
            # replace the error that stopped the stage
            with contextlib.suppress(OSError):
                self.ctx.exp.add_stage_time(stage, time.time() - t0)
            raise
        self.ctx.exp.add_stage_time(stage, time.time() - t0)
        return out

    def _interrupted(self) -> int:
        print(f"search interrupted: run the same command with --resume to continue "
              f"({self.ctx.exp.where})", flush=True)
        return 130

    def collect(self, states, runs, finalists) -> None:
        from explorer.results.collect import collect
        from explorer.results.provenance import run_meta
        from explorer.search.pools import pool_notes
        from explorer.spec.recipes import build_recipe

        ctx = self.ctx
        pools = pool_notes([build_recipe(d) for d in (ctx.base_dict, *(r["recipe"] for r in runs))])
        meta = run_meta(ctx.exp.name, ctx.loaded, ctx.base_dict, ctx.data,
                        ctx.cluster.resources, ctx.exp.stage_times(), runs, pools)
        collect(ctx.exp.dir, ctx.exp.store, list(ctx.loaded.spec.search.params), ctx.data,
                states, runs, finalists, meta)

    def report(self) -> None:
        from explorer.names import BOOTSTRAP_SEED
        from explorer.report import build_report

        build_report(self.ctx.exp.dir, out_dir=self.report_path.parent, seed=BOOTSTRAP_SEED)
