"""Section 9, the study's table: architecture x pre-training data x method, our mean AUC beside
the published one (Xiao et al.'s table, ``leaderboard.PAPER_REFERENCE``).

One row per (architecture, start, pre-training data) among the models of the run (search
trials and baselines). A row reports the model its group would select: the best on validation
mean AUC, scored on test when it was (else on validation, labelled). The published number is
shown only where the comparison holds: NIH ChestX-ray14 with every image, the official test
list scored, 224 px, and (for the X-ray rows) pre-training on the study's pool of NIH train +
CheXpert train (0.3M images; 0.5M with MIMIC-CXR for ViT-B). Otherwise the row says "not
comparable" and the first reason.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import pandas as pd

from explorer.report._format import arch_name, is_missing
from explorer.report.leaderboard import PAPER_CITATION, PAPER_REFERENCE
from explorer.report.scores import Evaluation
from explorer.results import Results

HOW = {"random": "random init", "imagenet": "supervised", "imagenet_mae": "MAE",
       "mocov2": "MoCo v2", "mae": "MAE", "continued_mae": "continued MAE",
       "weights_file": "weights file", "imported": "imported encoder"}
#: (arch, start method) -> index in PAPER_REFERENCE, and the pool size the study used (None:
#: an ImageNet row, no X-ray pre-training).
PUBLISHED = {
    ("densenet121", "imagenet"): (0, None),
    ("densenet121", "mocov2"): (1, 250_000),
    ("vit_small", "imagenet"): (6, None),
    ("vit_small", "imagenet_mae"): (7, None),
    ("vit_small", "mae"): (8, 250_000),
    ("vit_base", "mae"): (9, 450_000),
}
STUDY_POOL = {"chestxray14", "chexpert"}
ORDER = ("densenet121", "resnet50", "vit_nano", "vit_micro", "vit_tiny", "vit_small", "vit_base")
METHOD_ORDER = ("random", "imagenet", "weights_file", "mocov2", "imagenet_mae", "imported", "mae",
                "continued_mae")


class StudyRow(NamedTuple):
    arch: str
    model: str             # "DenseNet-121"
    pretrained_on: str     # "ImageNet", the pool in words, or "none"
    how: str               # "supervised", "MoCo v2", "MAE", "random init", ...
    start: str             # the chosen model's start in full
    models: list[str]      # labels of the run's models in this row
    chosen: str            # the one reported (best on validation)
    split: str | None      # "test" or "val" (None: no predictions)
    auc: float | None
    ci: tuple[float, float] | None
    published_as: str | None   # "DenseNet-121 / ImageNet / supervised" (None: no such row)
    published: float | None    # shown only when comparable
    note: str              # "comparable: ..." or "not comparable: ..." or "no published row"


class StudyTableInfo(NamedTuple):
    rows: list[StudyRow]
    pools: list[str]       # each pre-training pool in words, with what the guard left out
    citation: str


def _recipe(row: pd.Series) -> dict:
    try:
        return json.loads(row.get("config_json") or "{}")
    except (TypeError, ValueError):
        return {}


def _method(row: pd.Series) -> str:
    m = row.get("start_method")
    if not is_missing(m):
        return str(m)
    return "mae" if str(row.get("kind")) == "recipe" else "random"   # a run from before starts


def _why_not(arch: str, method: str, row: pd.Series, recipe: dict, has_test: bool,
             min_pool: int | None) -> str | None:
    """The first reason the published number does not apply (None: it does)."""
    data = recipe.get("data", {})
    if data.get("source") != "chestxray14":
        return f"fine-tuned on {data.get('source', 'unknown data')}, not NIH ChestX-ray14"
    caps = {k: v for k, v in (data.get("images") or {}).items() if v is not None}
    if caps:
        return ("a capped subset of ChestX-ray14 ("
                + ", ".join(f"{k} {v:,}" for k, v in caps.items()) + " images)")
    if not has_test:
        return "not scored on the test split (the study reports the official test list)"
    if data.get("image_size") != 224:
        return f"at {data.get('image_size')} px, not the study's 224 px"
    if min_pool is not None:
        sources = set(str(row.get("start_sources") or "").split(","))
        images = row.get("start_images")
        images = 0 if is_missing(images) else int(images)
        if not sources >= STUDY_POOL or images < min_pool:
            return (f"pre-trained on {row.get('start_data') or 'other data'}, not the study's "
                    f"{'0.5M' if min_pool > 250_000 else '0.3M'} X-rays (NIH train + CheXpert "
                    f"train{' + MIMIC-CXR' if min_pool > 250_000 else ''})")
    return None


def _published(arch: str, method: str, row: pd.Series, recipe: dict, has_test: bool
               ) -> tuple[str | None, float | None, str]:
    if (arch, method) not in PUBLISHED:
        return None, None, "the study publishes no such row"
    index, min_pool = PUBLISHED[(arch, method)]
    model, data, how, auc = PAPER_REFERENCE[index]
    name = f"{model} / {data} / {how}"
    why = _why_not(arch, method, row, recipe, has_test, min_pool)
    if why:
        return name, None, f"not comparable: {why}"
    return name, auc, "comparable: same data, split, resolution and pre-training data"


def get_study_table_info(results: Results, ev: Evaluation, ranked: pd.DataFrame
                         ) -> StudyTableInfo:
    groups: dict[tuple, list[pd.Series]] = {}
    for _, r in ranked.iterrows():   # best on validation first
        method = _method(r)
        data = r.get("start_data") if not is_missing(r.get("start_data")) else None
        init = r.get("start_init") if not is_missing(r.get("start_init")) else None
        groups.setdefault((str(r.get("arch")), method, data, init), []).append(r)
    rows = []
    for (arch, method, data, _init), members in groups.items():
        best = members[0]
        recipe = _recipe(best)
        test = ev.get(str(best["trial_id"]), "test")
        scored = test if test is not None else ev.get(str(best["trial_id"]), "val")
        split = None if scored is None else ("test" if test is not None else "val")
        as_, published, note = _published(arch, method, best, recipe, test is not None)
        pretrained_on = ("ImageNet" if method in ("imagenet", "imagenet_mae") else
                         data or ("none" if method == "random" else
                                  str(best.get("start_init") or "a weights file")))
        start = best.get("start_text")
        rows.append(StudyRow(
            arch=arch, model=arch_name(arch), pretrained_on=pretrained_on,
            how=HOW.get(method, method), start="" if is_missing(start) else str(start),
            models=[str(m["label"]) for m in members], chosen=str(best["label"]), split=split,
            auc=None if scored is None else scored.mean,
            ci=None if scored is None else scored.mean_ci,
            published_as=as_, published=published, note=note))
    rows.sort(key=lambda r: (ORDER.index(r.arch) if r.arch in ORDER else len(ORDER),
                             next((i for i, m in enumerate(METHOD_ORDER) if HOW.get(m) == r.how),
                                  len(METHOD_ORDER))))
    return StudyTableInfo(rows, _pools(results.meta), PAPER_CITATION)


def _pools(meta: dict) -> list[str]:
    out = []
    for notes in (meta.get("pretrain_pools") or {}).values():
        text = f"{notes.get('describe')}"
        total = notes.get("excluded_total") or 0
        if total:
            why = "; ".join(f"{n:,} {notes.get('reasons', {}).get(r, r)}"
                            for r, n in (notes.get("excluded") or {}).items())
            text += f"; the leakage guard left out {total:,} ({why})"
        else:
            text += "; the leakage guard left out none (no pooled image or patient is in the " \
                    "fine-tuning data's validation or test split)"
        out.append(text)
    return out
