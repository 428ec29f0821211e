"""CNN baselines: the same data, split, image size, fine-tuning budget and seeds as the search.

A baseline run is never part of the search (the searcher never sees it). Its resolved recipe is
the baseline recipe at the search's scale, with the search's ``data`` section and fine-tuning
budget (epochs, warm-up, batch) copied over, so the comparison is like for like. A baseline
that pre-trains (MoCo v2) also takes the search's pre-training data (``pretrain.data``: the
same X-rays as the MAE), and pre-trains with the search's seed whatever its fine-tuning seed,
so its seeds share one encoder.
"""

from __future__ import annotations

from typing import Any

from explorer.spec.config import Recipe
from explorer.spec.recipes import build_recipe, deep_merge, resolve_recipe_dict

#: Fine-tuning fields that define the training budget; baselines copy them from the search.
BUDGET_FIELDS = ("epochs", "warmup_epochs", "batch_size", "effective_batch", "batch_policy")


def baseline_recipe(search_base: Recipe, scale: str, recipe: str, overrides: dict[str, Any],
                    seed: int, where: str) -> Recipe:
    """The baseline ``recipe`` at ``scale``, with the search's data, fine-tuning budget and
    resources (``search_base``: the search's base recipe), this ``seed``, then ``overrides``."""
    d = resolve_recipe_dict(recipe, scale)
    d = deep_merge(d, {
        "data": search_base.data.model_dump(mode="json"),
        "finetune": {k: getattr(search_base.finetune, k) for k in BUDGET_FIELDS},
        "resources": search_base.resources.model_dump(mode="json"),
        "seed": seed,
    })
    pre = d.get("pretrain", {})
    if pre.get("enabled", True) and pre.get("method") == "mocov2":
        d["pretrain"] = {**pre, "data": search_base.model_dump(mode="json")["pretrain"]["data"],
                         "seed": search_base.seed}
    return build_recipe(deep_merge(d, overrides), where=where)
