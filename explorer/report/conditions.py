"""Were the two models of the verdict trained under the same conditions?

The study's claim is a comparison under equal conditions, so the verdict names every condition
in which the recipe and the baseline differed: the images they were fine-tuned on, the budget
(epochs, effective batch), the augmentation. Knobs that belong to one family only
(layer decay and drop path for ViTs) are not conditions and are not compared; the start (what
each model was pre-trained on) and the seed are named in the verdict sentence itself (a
baseline run with several seeds is compared by its best one, on purpose).

Read from each trial's ``config_json`` (the resolved recipe it ran), so a spec overlay, a
``--set`` or a scale's family section that made the two differ is caught wherever it came from.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from explorer.results import Results

#: (dotted path in the resolved recipe, how the report names it)
CONDITIONS: tuple[tuple[str, str], ...] = (
    ("data.source", "data source"),
    ("data.images.train", "training images"),
    ("data.image_size", "image size"),
    ("finetune.epochs", "fine-tuning epochs"),
    ("finetune.effective_batch", "effective batch"),
    ("finetune.crop_scale", "crop scale"),
    ("finetune.hflip", "horizontal flips"),
    ("finetune.randaug_magnitude", "RandAugment magnitude"),
    ("finetune.mix", "Mixup/CutMix"),
    ("finetune.random_erasing", "random erasing"),
)


def _get(recipe: dict, path: str) -> Any:
    node: Any = recipe
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return tuple(node) if isinstance(node, list) else node


def _show(value: Any) -> str:
    if value is None:
        return "off"
    if isinstance(value, tuple):
        return "-".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _recipe(trials: pd.DataFrame, trial_id: str) -> dict | None:
    if trials.empty or "config_json" not in trials:
        return None
    rows = trials.loc[trials["trial_id"] == trial_id, "config_json"]
    if rows.empty or not isinstance(rows.iloc[0], str):
        return None
    try:
        recipe = json.loads(rows.iloc[0])
    except ValueError:
        return None
    return recipe if isinstance(recipe, dict) and recipe else None


def differences(a: dict, b: dict) -> list[tuple[str, Any, Any]]:
    """(condition name, value in a, value in b) for each condition the two recipes differ in."""
    return [(name, _get(a, path), _get(b, path)) for path, name in CONDITIONS
            if _get(a, path) != _get(b, path)]


def conditions_note(results: Results, recipe_id: str, baseline_id: str, recipe_name: str,
                    baseline_name: str) -> str | None:
    """One sentence naming the conditions in which the two compared models differed."""
    a, b = _recipe(results.trials, recipe_id), _recipe(results.trials, baseline_id)
    if a is None or b is None:
        return None
    diff = differences(a, b)
    if not diff:
        return None
    listed = "; ".join(f"{name} ({recipe_name} {_show(x)}, {baseline_name} {_show(y)})"
                       for name, x, y in diff)
    return (f"The two models were not fine-tuned under equal conditions: {listed}. Part of the "
            f"difference may come from these rather than from the method.")
