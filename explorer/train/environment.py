"""Which of the driver's environment variables reach the cluster's workers.

Ray starts workers with the raylet's environment, not the driver's. The driver forwards, via
the job's ``runtime_env``:

- ``CXR_EXPLORER_*`` (the data cache, the storage; not the mirror folder, each machine's own);
- ``NCCL_*`` and ``TORCH_NCCL_*`` (network interface, InfiniBand, debug: the DDP set-up of a
  multi-node cluster often needs them) and ``GLOO_SOCKET_IFNAME``;
- any names listed in ``CXR_EXPLORER_FORWARD_ENV`` (comma-separated; ``NAME*`` is a prefix).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from explorer.errors import UserError

LIST_VAR = "CXR_EXPLORER_FORWARD_ENV"
PREFIXES = ("CXR_EXPLORER_", "NCCL_", "TORCH_NCCL_")
NAMES = ("GLOO_SOCKET_IFNAME", "TORCH_DISTRIBUTED_DEBUG", "RAY_CHDIR_TO_TRIAL_DIR")
#: Set per worker by Ray itself: a forwarded value would give every worker the same one.
RAY_MANAGED = ("CUDA_VISIBLE_DEVICES", "RAY_", "LOCAL_RANK", "RANK", "WORLD_SIZE",
               "MASTER_ADDR", "MASTER_PORT")


def _patterns(environ: Mapping[str, str]) -> list[str]:
    names = [n.strip() for n in environ.get(LIST_VAR, "").split(",") if n.strip()]
    for n in names:
        stem = n.rstrip("*")
        if any(stem == m or (m.endswith("_") and stem.startswith(m)) for m in RAY_MANAGED) \
                or not stem:
            raise UserError(f"{LIST_VAR} names {n!r}: Ray sets it for each worker itself; "
                            "leave it out")
    return names


def forwarded_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of ``environ`` (default: this process') that workers should see."""
    from explorer.storage.remote import MIRROR_ENV

    env = os.environ if environ is None else environ
    listed = _patterns(env)

    def wanted(k: str) -> bool:
        if k == MIRROR_ENV:
            return False
        return (k.startswith(PREFIXES) or k in NAMES
                or any(k.startswith(p[:-1]) if p.endswith("*") else k == p for p in listed))

    return {k: v for k, v in env.items() if wanted(k)}
