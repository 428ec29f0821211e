"""Was the budget the limit? Learning curves that were still rising when training stopped.

A verdict can report the budget instead of the method: a ViT fine-tuned for too few updates
loses to a DenseNet for that reason alone. So every trial's validation curve and every MAE
encoder's loss curve is read for one question, "was it still learning at its last epoch?", and
the verdict names what to raise when either side of it was.

- A trial is **still improving** when it ran all its planned epochs (ASHA did not stop it), its
  best epoch is its last, and its best validation mean AUC rose by at least ``AUC_GAIN`` during
  the last third of its epochs (``final_third_gain``).
- An encoder is **still learning steeply** when the last third of its pre-training epochs
  brought at least ``LOSS_SHARE`` of its whole fall in reconstruction loss
  (``final_third_share``). A curve that is levelling off brings little in its last third
  (MAE's loss keeps creeping down for hundreds of epochs, so "still falling at all" would flag
  every encoder); a straight line brings a third.

Pure functions of the results store, like the rest of the data step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import pandas as pd

from explorer.results import Results

#: Mean-AUC gain of the best-so-far validation score over the last third of the epochs at
#: which a curve counts as still rising (the budget target is a gain under this).
AUC_GAIN = 0.01
#: Share of the MAE loss's whole fall that came in the last third of pre-training at which
#: the encoder counts as still learning steeply.
LOSS_SHARE = 0.2


def _third(n: int) -> int:
    """Epochs in the last third of ``n`` (at least one)."""
    return max(1, math.ceil(n / 3))


def final_third_gain(values: Sequence[float]) -> float:
    """How much the best-so-far score rose during the last third of the epochs.

    ``max(last third) - max(everything before)``; NaN with fewer than two finite epochs. The
    best-so-far (not the last value) is used so a noisy last epoch neither hides nor fakes a
    trend; negative when the curve peaked earlier.
    """
    v = [float(x) for x in values]
    if len(v) < 2:
        return float("nan")
    k = min(_third(len(v)), len(v) - 1)
    before = [x for x in v[:-k] if math.isfinite(x)]
    after = [x for x in v[-k:] if math.isfinite(x)]
    if not before or not after:
        return float("nan")
    return max(after) - max(before)


def final_third_share(losses: Sequence[float]) -> float:
    """Share of a loss's whole fall (first epoch to last) that came in the last third of the
    epochs; NaN with fewer than three epochs or a loss that did not fall."""
    v = [float(x) for x in losses]
    if len(v) < 3 or not all(math.isfinite(x) for x in v):
        return float("nan")
    k = min(_third(len(v)), len(v) - 1)
    total = v[0] - v[-1]
    if total <= 0:
        return float("nan")
    return (v[-1 - k] - v[-1]) / total


def still_improving(curve: Sequence[float], best_epoch: int | None, epochs_planned: int | None
                    ) -> bool:
    """A completed trial whose best epoch is its last and whose curve still rose."""
    n = len(curve)
    if n < 2 or best_epoch is None or epochs_planned is None or n < epochs_planned:
        return False
    return best_epoch == n and final_third_gain(curve) >= AUC_GAIN


def still_learning(losses: Sequence[float]) -> bool:
    return final_third_share(losses) >= LOSS_SHARE


class BudgetInfo(NamedTuple):
    improving: dict[str, float]  # trial_id -> final-third gain, for trials still improving
    learning: dict[str, float]  # pretrain_key -> final-third share of the loss's fall
    gains: dict[str, float]  # trial_id -> final-third gain for every trial with a curve


def get_budget_info(results: Results) -> BudgetInfo:
    """Which trials and encoders were still learning when their budget ran out."""
    gains: dict[str, float] = {}
    improving: dict[str, float] = {}
    ep = results.epochs
    if not ep.empty and not results.trials.empty:
        curves = {t: g.sort_values("epoch")["val_mean_auc"].tolist()
                  for t, g in ep.groupby("trial_id")}
        for _, row in results.trials.iterrows():
            curve = curves.get(str(row["trial_id"]))
            if not curve:
                continue
            gain = final_third_gain(curve)
            gains[str(row["trial_id"])] = gain
            if row.get("status") == "completed" and still_improving(
                    curve, _int(row.get("best_epoch")), _int(row.get("epochs_planned"))):
                improving[str(row["trial_id"])] = gain
    learning: dict[str, float] = {}
    ee = results.encoder_epochs
    if not ee.empty:
        for key, g in ee.groupby("pretrain_key"):
            losses = g.sort_values("epoch")["loss"].tolist()
            if still_learning(losses):
                learning[str(key)] = final_third_share(losses)
    return BudgetInfo(improving, learning, gains)


def _int(v) -> int | None:
    return None if v is None or pd.isna(v) else int(v)

