"""Cost as a search objective: validation mean AUC against what the recipe costs.

With ``search.objective: [auc, cost]`` the Optuna searcher is multi-objective (Ray Tune's
``OptunaSearch`` with a list of metrics and modes: the notes' pitfall, no intermediate values
reach Optuna then) and every fine-tuning report carries ``COST_METRIC``: the recipe's
device-seconds at its full budget, as ``explorer.results.cost`` defines ``recipe_device_s``:
its encoder's whole pre-training (whoever paid for it) plus its fine-tuning, the epochs run so
far scaled to the planned epochs. A trial ASHA stops early is therefore told to Optuna with its
(partial) AUC and its full recipe's cost, not the little it spent: the cost is a property of the
recipe, so the front compares recipes, not the search's history. ASHA still stops trials on AUC
alone (Tune's schedulers take one metric).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from explorer.names import METRIC, MODE
from explorer.results.cost import devices
from explorer.storage import read_json

#: Reported by every fine-tuning epoch of a multi-objective search; minimised.
COST_METRIC = "recipe_device_s"


def searcher_objective(spec) -> tuple[Any, Any]:
    """(metric, mode) for the Optuna searcher of the search ``spec`` (a ``SearchSpec``)."""
    if spec.multi_objective:
        return [METRIC, COST_METRIC], [MODE, "min"]
    return METRIC, MODE


def encoder_device_s(encoder, recipe: dict) -> float:
    """An encoder's whole pre-training in device-seconds (0 without one, or an imported file:
    its cost is unknown here)."""
    if encoder.key is None or encoder.key.startswith("file:") or not encoder.path:
        return 0.0
    meta = read_json(Path(encoder.path).parent / "meta.json", {}) or {}
    return float(meta.get("wall_time_s") or 0.0) * devices(recipe)[1]


class CostReporting:
    """A worker session whose reports also carry ``COST_METRIC`` (rank 0 reports metrics; the
    other ranks report empty dicts, left as they are)."""

    def __init__(self, session, recipe: dict, encoder, planned_epochs: int):
        self._session = session
        self._pre_s = encoder_device_s(encoder, recipe)
        self._n = devices(recipe)[1]
        self._planned = planned_epochs

    def __getattr__(self, name: str):
        return getattr(self._session, name)

    def report(self, metrics: dict) -> None:
        if metrics.get("epoch") and "finetune_s" in metrics:
            per_epoch = metrics["finetune_s"] / metrics["epoch"]
            metrics = {**metrics,
                       COST_METRIC: self._pre_s + per_epoch * self._planned * self._n}
        self._session.report(metrics)
