"""The stages of one experiment, in order, each safe to re-run after an interruption.

1. search      Ray Tune: Optuna TPE suggests recipes, ASHA stops weak ones (validation only)
2. baselines   CNN runs with the same data and budget, cached in ``<storage>/_baselines``
3. finalists   the top recipes scored once on the test split
4. results     the Parquet results store (``explorer.results``)
5. report      ``reports/<name>/index.html``
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from pathlib import Path

from explorer.errors import UserError
from explorer.experiment import Experiment
from explorer.recipes import config_hash
from explorer.spec import LoadedSpec
from explorer.storage import BASELINES
from explorer.train.finetune import METRIC
from explorer.tuning import MODE

PATH_FIELDS = (("data", "root"), ("pretrain", "from_checkpoint"), ("pretrain", "init_from"),
               ("finetune", "weights"))


def absolute_paths(recipe_dict: dict) -> dict:
    """User paths resolved against the current directory (trials run elsewhere); named starts
    (``imagenet``) stay names."""
    from explorer.models.starts import is_named

    for section, key in PATH_FIELDS:
        value = recipe_dict.get(section, {}).get(key)
        if value and not is_named(value):
            recipe_dict[section][key] = str(Path(value).expanduser().resolve())
    for entry in recipe_dict.get("pretrain", {}).get("data") or []:   # pooled sources
        if entry.get("root"):
            entry["root"] = str(Path(entry["root"]).expanduser().resolve())
    return recipe_dict


def _sees_file(store, rel: str, token: str) -> bool:
    try:
        return store.read_bytes(rel) == token.encode()
    except OSError:
        return False


def check_shared_storage(store, nodes: list[dict]) -> None:
    """On a multi-node cluster, every node must reach the storage: a file-system path must be a
    shared mount at the same path on every node (trials on other nodes write there, and
    --resume reads it back); a remote storage must be readable from every node."""
    if len(nodes) < 2:
        return
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex
    rel = f".shared-check-{token}"
    store.path().mkdir(parents=True, exist_ok=True)
    store.path(rel).write_text(token)
    store.push(rel)
    try:
        probe = ray.remote(num_cpus=0)(_sees_file)
        refs = {n["NodeManagerAddress"] + " " + n["NodeID"][:8]: probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(store, rel, token) for n in nodes}
        blind = [name for name, ok in zip(refs, ray.get(list(refs.values()), timeout=120))
                 if not ok]
    finally:
        store.delete(rel)
    if blind:
        shown = store.root.split("?", 1)[0]
        raise UserError(f"--storage {shown}: not visible from node {blind[0]} "
                        f"({len(blind)} of {len(nodes)} nodes): on a multi-node cluster use a "
                        "shared file system mounted at the same path on every node, or s3://")


def _last_line(err: object) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else repr(err))[:400]


def trial_states(grid) -> list[tuple[str, dict]]:
    """(trial id, {status, error}) for every trial of a Tune run, in creation order."""
    out = []
    for t in grid._experiment_analysis.trials:  # ResultGrid has no public per-trial status
        err = t.get_error() if t.status == "ERROR" else None
        out.append((t.trial_id, {"status": t.status, "error": _last_line(err) if err else None}))
    return out


class _Background:
    """Run ``fn`` in a daemon thread; ``result()`` joins and re-raises its exception."""

    def __init__(self, fn):
        self._out: dict = {}

        def target() -> None:
            try:
                self._out["value"] = fn()
            except BaseException as exc:  # re-raised in the caller's thread
                self._out["error"] = exc

        self._thread = threading.Thread(target=target, name="baselines", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def result(self):
        self._thread.join()
        if "error" in self._out:
            raise self._out["error"]
        return self._out.get("value")


def baseline_rel(key: str) -> str:
    return f"{BASELINES}/{key}"


def _weights_of(recipe, value: str, key: str) -> str:
    from explorer.models.starts import is_named, resolve_start

    return str(resolve_start(recipe.model.arch, value, key)) if is_named(value) else value


class Pipeline:
    def __init__(self, loaded: LoadedSpec, exp: Experiment, verbose: bool, reports: Path):
        self.loaded, self.exp, self.verbose = loaded, exp, verbose
        self.report_path = reports / exp.name / "index.html"
        self.base_dict = absolute_paths(loaded.base.model_dump(mode="json"))
        self.base = loaded.base.model_validate(self.base_dict)

    # -- set-up ---------------------------------------------------------------------------
    def prepare_data(self) -> None:
        from explorer.data import load_data
        from explorer.train.finetune import check_validation

        self.data = load_data(self.base.data)
        check_validation(self.data)
        self._check_weights()
        self.pools = self._check_pools()

    def _check_pools(self) -> dict[str, dict]:
        """Every pre-training pool of the search and its baselines, planned now: a pooled source
        that does not exist, or a pool the leakage guard empties, fails here in one line.
        Returns pool notes by fingerprint (for the record and the report)."""
        from explorer.recipes import build_recipe
        from explorer.stages import baseline_runs

        pools = {}
        for run in [{"recipe": self.base_dict}, *baseline_runs(self)]:
            r = build_recipe(run["recipe"])
            if r.pretrains and r.pretrain.data:
                pool = self._pool(r)
                pools[pool.fingerprint] = {"describe": pool.describe(), **pool.notes()}
        return pools

    def _check_weights(self) -> None:
        """A weights file that cannot be read or does not fit fails now, in one line, not later
        inside every trial."""
        from explorer.models import create_cnn, create_vit_classifier
        from explorer.models.starts import check_starts
        from explorer.recipes import build_recipe
        from explorer.stages import baseline_runs

        n = len(self.data.findings)
        seen = set()
        for run in [{"recipe": self.base_dict}, *baseline_runs(self)]:
            r = build_recipe(run["recipe"])
            if r.model.family == "vit" and r.pretrain.from_checkpoint and \
                    (r.model.arch, r.pretrain.from_checkpoint) not in seen:
                seen.add((r.model.arch, r.pretrain.from_checkpoint))
                create_vit_classifier(r.model.arch, img_size=r.data.image_size,
                                      patch_size=r.model.patch_size, num_classes=n,
                                      global_pool=r.model.global_pool,
                                      encoder_state=_weights_of(r, r.pretrain.from_checkpoint,
                                                                "pretrain.from_checkpoint"))
            weights = r.finetune.weights
            if weights and r.model.family == "cnn" and (r.model.arch, weights) not in seen:
                seen.add((r.model.arch, weights))
                create_cnn(r.model.arch, num_classes=n, weights=weights)
            if r.pretrains and r.pretrain.init_from:
                check_starts(r)

    def connect(self, address: str | None) -> None:
        import ray

        os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")
        # Tune's own Ctrl-C handling stops running trials and records them as TERMINATED, the
        # same state as a finished trial, so a resume would never continue them. Without it,
        # Ctrl-C is a KeyboardInterrupt: the experiment state saved every few seconds is
        # resumed exactly like after a kill -9.
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        if not self.verbose:
            warnings.filterwarnings("ignore")
            os.environ.setdefault("RAY_DEDUP_LOGS", "1")
            os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the new engine ignores verbose=0
        from explorer.remote import MIRROR_ENV

        env = {k: v for k, v in os.environ.items()  # the mirror is each machine's own choice
               if (k.startswith("CXR_EXPLORER_") and k != MIRROR_ENV)
               or k in ("RAY_CHDIR_TO_TRIAL_DIR",)}
        # Without --address or RAY_ADDRESS: a private local Ray, never a cluster that someone
        # happened to `ray start` on this machine (Ray's own default would join it).
        address = address or os.environ.get("RAY_ADDRESS") or "local"
        try:
            ray.init(address=address, log_to_driver=self.verbose,
                     logging_level=logging.INFO if self.verbose else logging.ERROR,
                     runtime_env={"env_vars": env}, ignore_reinit_error=True)
        except ConnectionError as exc:
            raise UserError(
                f"could not connect to the Ray cluster at {address} ({_last_line(exc)}): check "
                "the address and that this machine has the cluster's auth token "
                "(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)") from None
        if not self.verbose:
            for name in ("ray", "ray.tune", "ray.train", "ray.data"):
                logging.getLogger(name).setLevel(logging.ERROR)
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.cluster = ray.cluster_resources()
        self.nodes = [n for n in ray.nodes() if n.get("Alive")]
        self._check_fit()
        check_shared_storage(self.exp.store, self.nodes)

    def _check_fit(self) -> None:
        from explorer.tuning import fits

        ok, why = fits(self.base, self.cluster, [n.get("Resources", {}) for n in self.nodes])
        if not ok:
            raise UserError(f"resources: {why}; lower resources.workers / cpus_per_worker / "
                            f"gpus_per_worker with --set, or add nodes")

    # -- stages ---------------------------------------------------------------------------
    def run(self, extend: int = 0, retry_failed: bool = False) -> int:
        # A remote storage gets the driver's own files (Tune's state, the Optuna journal,
        # results) every few seconds; trial records are pushed by the trials themselves.
        with self.exp.store.syncing(self.exp.name, skip_dirs=("trials", "_train"),
                                    last=("optuna.journal",)):
            return self._run(extend, retry_failed)

    def _run(self, extend: int, retry_failed: bool) -> int:
        from explorer.progress import STARTED
        from explorer.stages import run_baselines, run_search, score_finalists

        # The baselines run beside the search (a second Tuner in a thread): the cluster's idle
        # slots, e.g. while the last search trials finish, go to them instead of waiting.
        started = STARTED["baselines"] = threading.Event()
        baselines = _Background(lambda: self._timed("baselines", lambda: run_baselines(self)))
        # Tune's trainable registry is not thread-safe: let the baselines register first.
        while not started.wait(0.2) and baselines.alive():
            pass
        states = self._timed("search", lambda: run_search(self, extend, retry_failed))
        if states is None:
            return self._interrupted()
        runs = baselines.result()
        if runs is None:
            return self._interrupted()
        finalists = self._timed("test", lambda: score_finalists(self, states))
        self._timed("results", lambda: self.collect(states, runs, finalists))
        self._timed("report", self.report)
        return 0

    def _timed(self, stage: str, fn):
        t0 = time.time()
        try:
            return fn()
        finally:
            self.exp.add_stage_time(stage, time.time() - t0)

    def _interrupted(self) -> int:
        print(f"search interrupted: run the same command with --resume to continue "
              f"({self.exp.where})", flush=True)
        return 130

    def collect(self, states, runs, finalists) -> None:
        from explorer.collect import collect
        from explorer.provenance import run_meta

        meta = run_meta(self, runs)
        collect(self.exp.dir, self.exp.store, list(self.loaded.spec.search.params), self.data,
                states, runs, finalists, meta)

    def report(self) -> None:
        from explorer.report import build_report

        build_report(self.exp.dir, out_dir=self.report_path.parent)

    def baseline_dir(self, key: str) -> Path:
        return self.exp.storage / baseline_rel(key)

    def baseline_key(self, recipe) -> str:
        d = recipe.model_dump(mode="json")
        for key in ("root", "loader_workers"):  # where the data is mounted changes nothing
            d["data"].pop(key)
        parts = {"recipe": d, "data": self.data.fingerprint, "scale": self.loaded.spec.scale}
        if recipe.pretrains and recipe.pretrain.data:   # a pool: what it holds, not where
            for entry in d["pretrain"]["data"]:
                entry.pop("root", None)
            parts["pool"] = self._pool(recipe).fingerprint
        return config_hash(parts)

    def _pool(self, recipe):
        """The recipe's pre-training pool, planned once per (data, pool) config."""
        from explorer.data.pool import plan_pool

        cache = self.__dict__.setdefault("_pools", {})
        what = config_hash([recipe.data.model_dump(mode="json"),
                            [e.model_dump(mode="json") for e in recipe.pretrain.data]])
        if what not in cache:
            cache[what] = plan_pool(recipe.data, recipe.pretrain.data)
        return cache[what]

    @property
    def metric(self) -> tuple[str, str]:
        return METRIC, MODE
