"""Section 1, the verdict: best recipe against the best DenseNet-121, in one quotable sentence.

The recipe and the baseline are both chosen on validation mean AUC (among the finalists scored
on test, when there are any). The comparison is on the test split, scored once; without test
predictions, or without baselines, the verdict says so and falls back to VALIDATION, which
also selected the recipe and so flatters it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from explorer.metrics import paired_comparison
from explorer.report._format import (
    arch_name,
    fmt_auc,
    fmt_ci,
    fmt_delta,
    fmt_int,
    fmt_p,
    fmt_value,
    param_name,
    split_name,
)
from explorer.report.budget import BudgetInfo, get_budget_info
from explorer.report.conditions import conditions_note
from explorer.report.scores import Evaluation, best_trial, model_scores, trial_params
from explorer.results import Results

BASELINE_ARCH = "densenet121"


class ModelRef(NamedTuple):
    trial_id: str
    label: str
    kind: str
    arch: str
    seed: int | None
    description: str  # "mask ratio 0.9, layer decay 0.55" (recipes) or "seed 1" (baselines)
    start: str | None = None  # "ImageNet supervised (timm densenet121.tv_in1k)", "MAE on ..."


class VerdictInfo(NamedTuple):
    split: str | None  # "test", "val", or None when there is nothing to compare
    fallback_reason: str | None  # why this is not the test comparison (None when it is)
    recipe: ModelRef | None
    baseline: ModelRef | None
    n_images: int | None
    n_patients: int | None
    recipe_auc: float | None
    recipe_ci: tuple[float, float] | None
    baseline_auc: float | None
    baseline_ci: tuple[float, float] | None
    delta: float | None  # recipe minus baseline (mean AUC)
    delta_ci: tuple[float, float] | None
    p_value: float | None
    n_resamples: int
    excluded: list[tuple[str, str]]  # (finding, reason) left out of every mean
    per_class: pd.DataFrame | None  # paired_comparison's per-class table (recipe = a)
    sentence: str
    notes: list[str]
    budget_note: str | None = None  # one sentence when a side was still learning (budget.py)


def _ref(row: pd.Series | None, searched_paths: list[str]) -> ModelRef | None:
    if row is None:
        return None
    seed = None if pd.isna(row.get("seed")) else int(row["seed"])
    if row["kind"] == "baseline":
        desc = f"seed {seed}" if seed is not None else ""
    else:
        params = trial_params(row)
        paths = [p for p in searched_paths if p in params] or list(params)  # meta.json order
        desc = ", ".join(f"{param_name(p, paths)} {fmt_value(params[p])}" for p in paths)
    start = row.get("start_text")
    return ModelRef(str(row["trial_id"]), str(row["label"]), str(row["kind"]), str(row["arch"]),
                    seed, desc, None if pd.isna(start) else str(start))


def _model_phrase(ref: ModelRef) -> str:
    # the start comes first: "DenseNet-121 (ImageNet supervised (timm ...), seed 0)"
    details = "; ".join(d for d in (ref.start, ref.description) if d)
    if ref.kind == "baseline":
        return f"{arch_name(ref.arch)} ({details})" if details else arch_name(ref.arch)
    return f"recipe '{ref.label}'" + (f" ({details})" if details else "")


def _no_test_reason(results: Results, ev: Evaluation, recipe: ModelRef,
                    baseline: ModelRef | None) -> str | None:
    labels = results.labels
    if labels.empty or not (labels["split"] == "test").any():
        return "there are no test predictions because the data has no test images"
    missing = [r for r in (recipe, baseline) if r is not None and ev.get(r.trial_id, "test")
               is None]
    if missing:
        names = " and ".join(f"'{r.label}'" for r in missing)
        return f"there are no test predictions for {names}"
    return None


def budget_sentence(results: Results, budget: BudgetInfo, recipe: ModelRef | None,
                    baseline: ModelRef | None) -> str | None:
    """One sentence naming which side of the verdict was still learning and what to raise."""
    said, raise_ = [], []
    for ref in (recipe, baseline):
        if ref is not None and ref.trial_id in budget.improving:
            said.append(f"{_model_phrase(ref)} was still improving at its last fine-tuning epoch "
                        f"(best validation mean AUC {budget.improving[ref.trial_id]:+.3f} over "
                        f"the last third of its epochs)")
            raise_.append("finetune.epochs")
    if recipe is not None and not results.trials.empty and "pretrain_key" in results.trials:
        keys = results.trials.loc[results.trials["trial_id"] == recipe.trial_id, "pretrain_key"]
        key = None if keys.empty or pd.isna(keys.iloc[0]) else str(keys.iloc[0])
        if key is not None and key in budget.learning:
            said.append(f"the MAE encoder of {_model_phrase(recipe)} was still learning "
                        f"steeply (the last third of pre-training brought "
                        f"{100 * budget.learning[key]:.0f}% of its fall in reconstruction loss)")
            raise_.append("pretrain.epochs")
    if not said:
        return None
    knobs = " and ".join(dict.fromkeys(raise_))
    return (f"This difference may reflect the training budget rather than the method: "
            f"{'; '.join(said)}; raise {knobs} (--set) and run again before reading it as a "
            f"property of the recipe.")


def _pick_baseline(results: Results, ev: Evaluation, ranked: pd.DataFrame, searched: list[str],
                   recipe: ModelRef | None, notes: list[str]) -> ModelRef | None:
    """The best DenseNet-121 (or, without one, the best baseline), with notes on the choice and
    on any condition in which it was trained apart from the recipe."""
    row = best_trial(ranked, ev, "baseline", BASELINE_ARCH)
    if row is None:
        row = best_trial(ranked, ev, "baseline")
        if row is not None:
            notes.append(f"No DenseNet-121 baseline ran; the best baseline is "
                         f"{arch_name(row['arch'])}.")
    baseline = _ref(row, searched)
    if recipe is not None and baseline is not None:
        unequal = conditions_note(results, recipe.trial_id, baseline.trial_id, "recipe",
                                  arch_name(baseline.arch))
        if unequal:
            notes.append(unequal)
    return baseline


def get_verdict_info(results: Results, ev: Evaluation, ranked: pd.DataFrame,
                     budget: BudgetInfo | None = None) -> VerdictInfo:
    """Pick the two models, compare them on test (or validation), and write the sentence."""
    searched = list(results.meta.get("searched") or {})
    recipe = _ref(best_trial(ranked, ev, "recipe"), searched)
    notes: list[str] = []
    baseline = _pick_baseline(results, ev, ranked, searched, recipe, notes)
    empty = dict(split=None, fallback_reason=None, recipe=recipe, baseline=baseline,
                 n_images=None, n_patients=None, recipe_auc=None, recipe_ci=None,
                 baseline_auc=None, baseline_ci=None, delta=None, delta_ci=None, p_value=None,
                 n_resamples=ev.n_resamples, excluded=[], per_class=None, notes=notes,
                 budget_note=budget_sentence(results, budget or get_budget_info(results),
                                             recipe, baseline))
    if recipe is None:
        n = len(results.trials[results.trials["kind"] == "recipe"]) if not results.trials.empty \
            else 0
        return VerdictInfo(**{**empty, "sentence": f"No recipe trial has validation predictions "
                              f"({n} recipe trial(s) in the results), so there is nothing to "
                              f"compare."})

    reason = _no_test_reason(results, ev, recipe, baseline)
    split = "val" if reason else "test"
    if baseline is None:
        reason = "this search ran no baseline, so there is no comparison with DenseNet-121" + (
            f"; also {reason}" if reason else "")
        split = "test" if ev.get(recipe.trial_id, "test") is not None else "val"
    r_sum = ev.get(recipe.trial_id, split)
    where = f"the {split_name(split)} split" if split == "test" else "the VALIDATION split"
    size = f"{fmt_int(r_sum.n_images)} images, {fmt_int(r_sum.n_patients)} patients"
    info = {**empty, "split": split, "fallback_reason": reason, "n_images": r_sum.n_images,
            "n_patients": r_sum.n_patients, "recipe_auc": r_sum.mean,
            "recipe_ci": r_sum.mean_ci, "excluded": list(r_sum.excluded)}
    if split == "val":
        notes.append("Validation scores also chose the recipe, so its validation AUC is "
                     "optimistic; only a test split scored once gives an unbiased comparison.")
    if baseline is None:
        sentence = (f"On {where} ({size}), {_model_phrase(recipe)} reached mean AUC "
                    f"{fmt_auc(r_sum.mean)} {fmt_ci(r_sum.mean_ci)}; there is no baseline to "
                    f"compare it with.")
        return VerdictInfo(**{**info, "sentence": sentence})

    b_sum = ev.get(baseline.trial_id, split)
    a, b = model_scores(results, recipe.trial_id, split), model_scores(results, baseline.trial_id,
                                                                        split)
    common, ia, ib = np.intersect1d(a.image_ids, b.image_ids, return_indices=True)
    if len(common) < max(len(a.image_ids), len(b.image_ids)):
        notes.append(f"The paired comparison uses the {len(common):,} images both models scored.")
    cmp = paired_comparison(a.y_true[ia], a.y_score[ia], b.y_score[ib], a.patient_ids[ia],
                            results.findings, n_resamples=ev.n_resamples, seed=ev.seed,
                            level=ev.level)
    if cmp.resamples_used < cmp.n_resamples:
        notes.append(f"{cmp.n_resamples - cmp.resamples_used:,} of {cmp.n_resamples:,} resamples "
                     f"lacked a positive or negative case of some finding and were left out of "
                     f"the interval and p-value (a rare finding carried by few patients).")
    sentence = (
        f"On {where} ({size}), {_model_phrase(recipe)} reached mean AUC {fmt_auc(r_sum.mean)} "
        f"{fmt_ci(r_sum.mean_ci)} vs {fmt_auc(b_sum.mean)} {fmt_ci(b_sum.mean_ci)} for "
        f"{_model_phrase(baseline)}: {fmt_delta(cmp.delta_mean)} {fmt_ci(cmp.delta_ci)}, "
        f"{fmt_p(cmp.p_value)} (paired patient bootstrap, {cmp.n_resamples:,} resamples; "
        f"{round(100 * ev.level)}% intervals in brackets)."
    )
    if r_sum.excluded:
        left = "; ".join(f"{f}: {why}" for f, why in r_sum.excluded)
        sentence += (f" Means are over {len(r_sum.included)} of {len(results.findings)} findings "
                     f"(left out: {left}).")
    return VerdictInfo(**{**info, "baseline_auc": b_sum.mean, "baseline_ci": b_sum.mean_ci,
                          "delta": cmp.delta_mean, "delta_ci": cmp.delta_ci,
                          "p_value": cmp.p_value, "per_class": cmp.per_class,
                          "sentence": sentence})
