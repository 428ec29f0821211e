"""How many loader processes a worker gets, and what fits in shared memory
(explorer.train.inputs); the dry run states it."""

from __future__ import annotations

import pytest

from explorer.errors import DataError
from explorer.spec.recipes import resolve_recipe
from explorer.train.inputs import PREFETCH, describe, loader_plan, shard_indices

MB = 2**20


def test_gpu_workers_get_all_their_cpus_but_one_cpu_workers_none():
    paper = resolve_recipe("mae_vit_small_xray", "paper")   # 8 CPUs and 1 GPU per worker
    lp = loader_plan(paper, 256, on_gpu=True, shm_free=10_000 * MB)
    assert (lp.workers, lp.prefetch, lp.pin_memory) == (7, PREFETCH, True)
    cpu = resolve_recipe("mae_vit_small_xray", "cpu")
    assert loader_plan(cpu, 64, on_gpu=False).workers == 0
    pinned = paper.model_copy(update={"data": paper.data.model_copy(
        update={"loader_workers": 2})})
    assert loader_plan(pinned, 256, on_gpu=True, shm_free=10_000 * MB).workers == 2


def test_prefetch_shrinks_to_fit_shared_memory_or_the_trial_stops_in_one_line():
    paper = resolve_recipe("mae_vit_small_xray", "paper")
    batch = 256 * 224 * 224   # bytes of one uint8 MAE batch, 12.8 MB
    lp = loader_plan(paper, 256, on_gpu=True, shm_free=2 * 7 * 2 * batch)
    assert lp.workers == 7 and lp.prefetch == 2   # 7 processes x 2 batches = half of it
    with pytest.raises(DataError, match=r"/dev/shm has 64 MiB free.*--shm-size") as err:
        loader_plan(paper, 256, on_gpu=True, shm_free=64 * MB)   # a container's default
    assert "\n" not in str(err.value)


def test_evaluation_shards_are_whole_batches_dealt_in_turn():
    shards = [shard_indices(90, 16, r, 2) for r in range(2)]
    assert shards[0] == [*range(0, 16), *range(32, 48), *range(64, 80)]
    assert shards[1] == [*range(16, 32), *range(48, 64), *range(80, 90)]
    for world in (1, 3, 7, 64):
        every = sorted(i for r in range(world) for i in shard_indices(90, 16, r, world))
        assert every == list(range(90))   # no item padded, repeated or lost


def test_the_dry_run_states_batches_loader_and_checkpoints():
    lines = "\n".join(describe(resolve_recipe("mae_vit_small_xray", "paper")))
    assert "effective batch 2048 = 1 worker(s) x 256 images x 8 accumulation step(s)" in lines
    assert "7 loader processes" in lines and "normalised on the GPU" in lines
    assert "resume state every 15 minutes" in lines
