"""Joining Ray, and the checks that need it: the settings Ray and Tune read from the process,
``ray.init``, whether one trial can ever fit, whether every node sees the storage.

The search's own process is configured here, explicitly and for the run only:
``ray_settings`` sets what Tune reads from the environment (and quietens Ray's output) and puts
everything back when the run ends, so nothing depends on which function ran first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

from explorer.errors import UserError, error_line

#: What Tune reads from the driver's environment, as a search needs it.
TUNE_ENV = {
    "RAY_CHDIR_TO_TRIAL_DIR": "0",   # trials work in the storage, never in a Tune folder
    "TUNE_GLOBAL_CHECKPOINT_S": "5",  # experiment state every 5 s: what a resume can know
}
#: Tune's own Ctrl-C handling stops running trials and records them as TERMINATED, the same
#: state as a finished trial, so a resume would never continue them. Without it, Ctrl-C is a
#: KeyboardInterrupt: the experiment state saved every few seconds is resumed exactly like
#: after a kill -9. Always set (not a default a user may override).
FORCED_ENV = {"TUNE_DISABLE_SIGINT_HANDLER": "1"}
QUIET_ENV = {"RAY_DEDUP_LOGS": "1", "RAY_AIR_NEW_OUTPUT": "0"}  # the new engine ignores verbose=0
QUIET_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.data")


@contextlib.contextmanager
def ray_settings(verbose: bool) -> Iterator[None]:
    """The process as a search needs it while the block runs: Tune's environment settings
    (a user's own values of the defaults win), and unless ``verbose`` no warnings and only
    Ray's errors. Restored when the block ends."""
    import optuna
    import ray  # noqa: F401  (sets its loggers' levels when first imported: before ours)

    env = {**TUNE_ENV, **({} if verbose else QUIET_ENV)}
    changed = {k: v for k, v in env.items() if k not in os.environ} | FORCED_ENV
    saved_env = {k: os.environ.get(k) for k in changed}
    loggers = {} if verbose else {n: logging.getLogger(n) for n in QUIET_LOGGERS}
    saved_levels = {n: lg.level for n, lg in loggers.items()}
    saved_optuna = optuna.logging.get_verbosity()
    os.environ.update(changed)
    try:
        with warnings.catch_warnings():
            if not verbose:
                warnings.simplefilter("ignore")
                for lg in loggers.values():
                    lg.setLevel(logging.ERROR)
                optuna.logging.set_verbosity(optuna.logging.WARNING)
            yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for n, level in saved_levels.items():
            loggers[n].setLevel(level)
        optuna.logging.set_verbosity(saved_optuna)


@dataclass(frozen=True)
class Cluster:
    """The Ray cluster a run uses: its total resources and its alive nodes."""

    resources: dict
    nodes: list[dict] = field(default_factory=list)

    @property
    def node_resources(self) -> list[dict]:
        return [n.get("Resources", {}) for n in self.nodes]


def node_env() -> dict[str, str]:
    """The environment every Ray worker gets from the driver (``explorer.train.environment``:
    our settings but not the mirror, each machine's own choice; ``NCCL_*``; named ones) and
    Tune's trial folder setting."""
    from explorer.train.environment import forwarded_env

    return forwarded_env()


def connect(address: str | None, verbose: bool) -> Cluster:
    """Start or join Ray; without ``address`` or ``RAY_ADDRESS``, a private local Ray, never a
    cluster someone happened to ``ray start`` on this machine (Ray's own default would join
    it). Run inside ``ray_settings``."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or "local"
    try:
        ray.init(address=address, log_to_driver=verbose,
                 logging_level=logging.INFO if verbose else logging.ERROR,
                 runtime_env={"env_vars": node_env()}, ignore_reinit_error=True)
    except ConnectionError as exc:
        raise UserError(
            f"could not connect to the Ray cluster at {address} ({error_line(exc, last=True)}): "
            "check the address and that this machine has the cluster's auth token "
            "(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)") from None
    return Cluster(resources=ray.cluster_resources(),
                   nodes=[n for n in ray.nodes() if n.get("Alive")])


def check_fit(recipe, cluster: Cluster) -> None:
    """One trial must fit on the cluster, or Ray Train would retry its worker group forever."""
    from explorer.search.resources import fits

    ok, why = fits(recipe, cluster.resources, cluster.node_resources)
    if not ok:
        raise UserError(f"resources: {why}; lower resources.workers / cpus_per_worker / "
                        f"gpus_per_worker with --set, or add nodes")


def _sees_file(store, rel: str, token: str) -> bool:
    try:
        return store.read_bytes(rel) == token.encode()
    except OSError:
        return False


def check_shared_storage(store, cluster: Cluster) -> None:
    """On a multi-node cluster, every node must reach the storage: a file-system path must be a
    shared mount at the same path on every node (trials on other nodes write there, and
    --resume reads it back); a remote storage must be readable from every node."""
    nodes = cluster.nodes
    if len(nodes) < 2:
        return
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from explorer.storage import atomic_write_text

    token = uuid.uuid4().hex
    rel = f".shared-check-{token}"
    atomic_write_text(store.path(rel), token)
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
        raise UserError(f"--storage {store.shown}: not visible from node {blind[0]} "
                        f"({len(blind)} of {len(nodes)} nodes): on a multi-node cluster use a "
                        "shared file system mounted at the same path on every node, or s3://")
