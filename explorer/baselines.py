"""CNN baselines: the same data, split, image size, fine-tuning budget and seeds as the search.

A baseline run is never part of the search (the searcher never sees it). Its resolved recipe is
the baseline recipe at the search's scale, with the search's ``data`` section and fine-tuning
budget (epochs, warm-up, batch) copied over, so the comparison is like for like. A baseline
that pre-trains (MoCo v2) also takes the search's pre-training data (``pretrain.data``: the
same X-rays as the MAE), and pre-trains with the search's seed whatever its fine-tuning seed,
so its seeds share one encoder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from explorer.config import Recipe
from explorer.recipes import build_recipe, deep_merge, resolve_recipe_dict

if TYPE_CHECKING:
    from explorer.spec import BaselineSpec, LoadedSpec

#: Fine-tuning fields that define the training budget; baselines copy them from the search.
BUDGET_FIELDS = ("epochs", "warmup_epochs", "batch_size", "effective_batch", "batch_policy")


def baseline_recipe(loaded: LoadedSpec, b: BaselineSpec, seed: int, where: str) -> Recipe:
    base = loaded.base
    d = resolve_recipe_dict(b.recipe, loaded.spec.scale)
    d = deep_merge(d, {
        "data": base.data.model_dump(mode="json"),
        "finetune": {k: getattr(base.finetune, k) for k in BUDGET_FIELDS},
        "resources": base.resources.model_dump(mode="json"),
        "seed": seed,
    })
    pre = d.get("pretrain", {})
    if pre.get("enabled", True) and pre.get("method") == "mocov2":
        d["pretrain"] = {**pre, "data": base.model_dump(mode="json")["pretrain"]["data"],
                         "seed": base.seed}
    d = deep_merge(d, b.overrides)
    d["name"] = f"{d['name']}"
    return build_recipe(d, where=where)
