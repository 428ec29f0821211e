"""Sections 2 and 3: the leaderboard, the baselines' seed spread, per-class AUCs and the
findings without an AUC.

Every AUC here is recomputed from the predictions (``data.evaluate``); each is labelled with its
split. A finding without an AUC is NaN with its reason, never 0.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from explorer.report._format import is_missing, split_name
from explorer.report.budget import BudgetInfo, get_budget_info
from explorer.report.scores import Evaluation, data_source, trial_params
from explorer.results import Results

#: Xiao et al., "Delving into Masked Autoencoders for Multi-Label Thorax Disease
#: Classification", WACV 2023 (arXiv 2210.12843), Table: mean AUC x100 on the official NIH
#: ChestX-ray14 test list at 224 px. Published numbers, not computed by this tool.
PAPER_CITATION = "Xiao et al., WACV 2023"
PAPER_REFERENCE = (
    # model, pre-trained on, how, test mean AUC
    ("DenseNet-121", "ImageNet", "supervised", 0.822),
    ("DenseNet-121", "X-rays (0.3M)", "MoCo v2", 0.806),
    ("DenseNet-121", "X-rays (0.3M)", "MAE (U-Net style)", 0.812),
    ("ResNet-50", "ImageNet", "MoCo v2", 0.809),
    ("ResNet-50", "ImageNet", "BYOL", 0.810),
    ("ResNet-50", "ImageNet", "SwAV", 0.815),
    ("ViT-S/16", "ImageNet", "DeiT supervised", 0.796),
    ("ViT-S/16", "ImageNet", "MAE", 0.786),
    ("ViT-S/16", "X-rays (0.3M)", "MAE", 0.823),
    ("ViT-B/16", "X-rays (0.5M)", "MAE", 0.830),
)


class LeaderRow(NamedTuple):
    trial_id: str
    label: str
    kind: str  # "recipe" | "baseline"
    arch: str
    status: str
    error: str | None
    epochs_run: int | None
    epochs_planned: int | None
    best_epoch: int | None
    finalist: bool
    seed: int | None
    val_auc: float  # NaN when the trial has no validation score
    val_ci: tuple[float, float] | None  # None when not recomputed from predictions
    test_auc: float | None
    test_ci: tuple[float, float] | None
    params: dict[str, object]
    pretrain_key: str | None
    pretrain_role: str | None
    shares_encoder_with: list[str]  # labels of the other trials using the same encoder
    wall_time_s: float | None
    resumes: int = 0  # restarts from a checkpoint (a killed worker, a retried trial, --resume)
    still_improving: bool = False  # best epoch = last and still rising (report.budget)
    encoder_learning: bool = False  # its MAE encoder's loss was still falling steeply
    start: str | None = None  # what it started from, on which data ("MoCo v2 on ...")


class SeedSpread(NamedTuple):
    arch: str
    seeds: list[int | None]
    val: list[float]
    test: list[float | None]
    val_mean: float
    val_sd: float  # sample sd (ddof=1); NaN with one seed
    test_mean: float
    test_sd: float
    start: str | None = None  # baselines of one architecture but different starts spread apart


class LeaderboardInfo(NamedTuple):
    rows: list[LeaderRow]  # by validation mean AUC, best first
    param_paths: list[str]
    spreads: list[SeedSpread]
    reference: tuple | None  # PAPER_REFERENCE when the data is ChestX-ray14 at paper scale
    has_test: bool  # whether labels.parquet holds any test image
    fragile: list[str]  # mean-AUC intervals that lost resamples to an undefined class
    n_resamples: int
    level: float


def _opt_int(v) -> int | None:
    return None if is_missing(v) else int(v)


def _opt_str(v) -> str | None:
    return None if is_missing(v) else str(v)


def get_leaderboard_info(results: Results, ev: Evaluation, ranked: pd.DataFrame,
                         budget: BudgetInfo | None = None) -> LeaderboardInfo:
    budget = budget or get_budget_info(results)
    rows = []
    searched = list(results.meta.get("searched") or {})
    keys = ranked.get("pretrain_key", pd.Series([None] * len(ranked)))
    for i, r in ranked.iterrows():
        val, test = ev.get(r["trial_id"], "val"), ev.get(r["trial_id"], "test")
        if test is None and not is_missing(r.get("test_mean_auc")):
            test_auc = float(r["test_mean_auc"])  # scored, but predictions not stored
        else:
            test_auc = test.mean if test is not None else None
        key = _opt_str(r.get("pretrain_key"))
        shared = [str(ranked.at[j, "label"]) for j in ranked.index
                  if j != i and key is not None and keys.iloc[j] == key]
        rows.append(LeaderRow(
            trial_id=str(r["trial_id"]), label=str(r["label"]), kind=str(r["kind"]),
            arch=str(r.get("arch", "")), status=str(r["status"]), error=_opt_str(r.get("error")),
            epochs_run=_opt_int(r.get("epochs_run")),
            epochs_planned=_opt_int(r.get("epochs_planned")),
            best_epoch=_opt_int(r.get("best_epoch")), finalist=bool(r.get("finalist", False)),
            seed=_opt_int(r.get("seed")), val_auc=float(r["_val"]),
            val_ci=val.mean_ci if val is not None else None, test_auc=test_auc,
            test_ci=test.mean_ci if test is not None else None, params=trial_params(r),
            pretrain_key=key, pretrain_role=_opt_str(r.get("pretrain_role")),
            shares_encoder_with=shared, wall_time_s=None if is_missing(r.get("wall_time_s"))
            else float(r["wall_time_s"]), resumes=_opt_int(r.get("resumes")) or 0,
            still_improving=str(r["trial_id"]) in budget.improving,
            encoder_learning=key is not None and key in budget.learning,
            start=_opt_str(r.get("start_text"))))
    paths = searched + [p for row in rows for p in row.params if p not in searched]
    labels = results.labels
    has_test = not labels.empty and bool((labels["split"] == "test").any())
    # bootstrap_auc leaves out resamples where an included class has no positive (or no
    # negative) case; many such resamples mean a rare class rests on a few patients.
    fragile = [f"{r.label} ({split_name(split)}): {s.mean_resamples_used:,} of "
               f"{s.n_resamples:,} resamples"
               for r in rows for split in ("val", "test")
               if (s := ev.get(r.trial_id, split)) is not None
               and s.mean_resamples_used < s.n_resamples]
    return LeaderboardInfo(rows, list(dict.fromkeys(paths)), _spreads(rows),
                           PAPER_REFERENCE if shows_paper_reference(results.meta) else None,
                           has_test, fragile, ev.n_resamples, ev.level)


def shows_paper_reference(meta: dict) -> bool:
    return data_source(meta) == "chestxray14" and meta.get("scale") == "paper"


def _mean_sd(values: list) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None and not is_missing(x)], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def _spreads(rows: list[LeaderRow]) -> list[SeedSpread]:
    out = []
    base = [r for r in rows if r.kind == "baseline" and not is_missing(r.val_auc)]
    for arch, start in dict.fromkeys((r.arch, r.start) for r in base):
        group = sorted((r for r in base if (r.arch, r.start) == (arch, start)),
                       key=lambda r: (r.seed is None, r.seed or 0))
        val = [r.val_auc for r in group]
        test = [r.test_auc for r in group]
        out.append(SeedSpread(arch, [r.seed for r in group], val, test, *_mean_sd(val),
                              *_mean_sd(test), start))
    return out


class HeatmapInfo(NamedTuple):
    """Per-class AUC of every model scored on one split. Matrices are ``[models, findings]``."""

    split: str
    labels: list[str]  # model labels, leaderboard order
    kinds: list[str]
    findings: list[str]
    auc: list[list[float]]  # NaN where undefined
    positives: list[list[int]]
    negatives: list[list[int]]
    reasons: list[list[str | None]]
    hover: list[list[str]]


def _hover(label: str, finding: str, split: str, auc: float, pos: int, neg: int,
           reason: str | None) -> str:
    counts = f"{pos:,} positive, {neg:,} negative of {pos + neg:,} images"
    if reason:
        return (f"{label} / {finding}: no AUC: {reason} in {split_name(split)} "
                f"({pos:,} of {pos + neg:,} images positive)")
    return f"{label} / {finding}: {split_name(split)} AUC {auc:.3f} ({counts})"


def get_heatmap_infos(results: Results, ev: Evaluation, ranked: pd.DataFrame
                      ) -> list[HeatmapInfo]:
    out = []
    for split in ("val", "test"):
        models = [r for _, r in ranked.iterrows() if ev.get(r["trial_id"], split) is not None]
        if not models:
            continue
        tables = [ev.get(r["trial_id"], split).per_class for r in models]
        labels = [str(r["label"]) for r in models]
        out.append(HeatmapInfo(
            split=split, labels=labels, kinds=[str(r["kind"]) for r in models],
            findings=list(results.findings),
            auc=[t["auc"].astype(float).tolist() for t in tables],
            positives=[t["positives"].astype(int).tolist() for t in tables],
            negatives=[t["negatives"].astype(int).tolist() for t in tables],
            reasons=[[None if is_missing(x) else str(x) for x in t["reason"]] for t in tables],
            hover=[[_hover(lab, str(f), split, a, int(p), int(n),
                           None if is_missing(why) else str(why))
                    for f, a, p, n, why in zip(t["finding"], t["auc"], t["positives"],
                                               t["negatives"], t["reason"])]
                   for lab, t in zip(labels, tables)],
        ))
    return out


class MissingAuc(NamedTuple):
    split: str
    finding: str
    reason: str
    positives: int
    negatives: int
    models: list[str]  # labels of the models without this AUC (usually all on the split)


def get_missing_auc_info(results: Results, ev: Evaluation, ranked: pd.DataFrame
                         ) -> list[MissingAuc]:
    """Every (split, finding) without an AUC, with its reason and counts (split, then finding
    order of ``meta.json``)."""
    groups: dict[tuple, list[str]] = {}
    for split in ("val", "test"):
        for _, r in ranked.iterrows():
            s = ev.get(r["trial_id"], split)
            if s is None:
                continue
            t = s.per_class
            for f, p, n, ok, why in zip(t["finding"], t["positives"], t["negatives"],
                                        t["defined"], t["reason"]):
                if not ok:
                    key = (split, str(f), str(why), int(p), int(n))
                    groups.setdefault(key, []).append(str(r["label"]))
    order = {f: i for i, f in enumerate(results.findings)}
    keys = sorted(groups, key=lambda k: (k[0] != "val", order.get(k[1], 1 << 30), k[2:]))
    return [MissingAuc(*k, models=groups[k]) for k in keys]
