"""Which driver variables reach the cluster's workers (explorer.train.environment)."""

from __future__ import annotations

import pytest

from explorer.errors import UserError
from explorer.train.environment import forwarded_env


def test_project_nccl_and_listed_variables_are_forwarded_and_nothing_else():
    env = {"CXR_EXPLORER_CACHE": "/c", "CXR_EXPLORER_MIRROR": "/m", "NCCL_SOCKET_IFNAME": "eth0",
           "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1", "GLOO_SOCKET_IFNAME": "eth0",
           "HF_HOME": "/hf", "WANDB_PROJECT": "x", "WANDB_MODE": "offline", "HOME": "/home/u",
           "CUDA_VISIBLE_DEVICES": "0", "PATH": "/bin",
           "CXR_EXPLORER_FORWARD_ENV": "HF_HOME, WANDB_*"}
    assert forwarded_env(env) == {
        "CXR_EXPLORER_CACHE": "/c", "NCCL_SOCKET_IFNAME": "eth0",
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1", "GLOO_SOCKET_IFNAME": "eth0", "HF_HOME": "/hf",
        "WANDB_PROJECT": "x", "WANDB_MODE": "offline",
        "CXR_EXPLORER_FORWARD_ENV": "HF_HOME, WANDB_*"}


@pytest.mark.parametrize("name", ["CUDA_VISIBLE_DEVICES", "RAY_ADDRESS", "RAY_*", "RANK", "*"])
def test_variables_ray_sets_per_worker_are_refused_in_one_line(name):
    with pytest.raises(UserError, match="Ray sets it for each worker") as err:
        forwarded_env({"CXR_EXPLORER_FORWARD_ENV": name})
    assert "\n" not in str(err.value)
