"""The run's pre-training pools (``pretrain.data``), planned in the driver: checked before
anything is written, keyed into baseline caches, and described in ``meta.json``."""

from __future__ import annotations

import json
from functools import lru_cache

from explorer.spec.config import Recipe


@lru_cache(maxsize=16)
def _plan(data_json: str, pool_json: str):
    from explorer.data.config import DataConfig, PoolSourceConfig
    from explorer.data.pool import plan_pool

    return plan_pool(DataConfig.model_validate(json.loads(data_json)),
                     [PoolSourceConfig.model_validate(e) for e in json.loads(pool_json)])


def planned_pool(recipe: Recipe):
    """The recipe's pool, planned once per (data, pool) config in this process (planning
    stats every pooled file: seconds for NIH, done once)."""
    return _plan(json.dumps(recipe.data.model_dump(mode="json"), sort_keys=True),
                 json.dumps([e.model_dump(mode="json") for e in recipe.pretrain.data],
                            sort_keys=True))


def pool_notes(recipes: list[Recipe]) -> dict[str, dict]:
    """Every pool among ``recipes`` by fingerprint: what it holds, what the leakage guard left
    out and why. A pooled source that does not exist, or a pool the guard empties, raises
    ``DataError`` (one line)."""
    out = {}
    for r in recipes:
        if r.pretrains and r.pretrain.data:
            pool = planned_pool(r)
            out[pool.fingerprint] = {"describe": pool.describe(), **pool.notes()}
    return out
