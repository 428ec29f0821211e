"""Sections 5-7: learning curves, ROC curves of the verdict's two models, MAE reconstructions.

All data, no Plotly: the figure step draws these records.
"""

from __future__ import annotations

import base64
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.metrics import auc, roc_curve

from explorer.report._format import is_missing, split_name
from explorer.report.scores import model_scores
from explorer.results import Results

PANELS = ("masked", "reconstruction", "original")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Curve(NamedTuple):
    trial_id: str
    label: str
    kind: str
    status: str
    epochs: list[int]  # 1-based
    values: list[float]  # validation mean AUC per epoch (NaN where not scored)
    stopped_at: int | None  # last epoch of a trial ASHA stopped early


class CurvesInfo(NamedTuple):
    curves: list[Curve]  # trials order of the trials table
    message: str | None


def get_curves_info(results: Results) -> CurvesInfo:
    ep, trials = results.epochs, results.trials
    if ep.empty or trials.empty:
        return CurvesInfo([], "No per-epoch validation scores were recorded.")
    curves = []
    for _, t in trials.iterrows():
        rows = ep[ep["trial_id"] == t["trial_id"]].sort_values("epoch")
        if rows.empty:
            continue
        epochs = rows["epoch"].astype(int).tolist()
        stopped = epochs[-1] if t["status"] == "stopped_early" else None
        curves.append(Curve(str(t["trial_id"]), str(t["label"]), str(t["kind"]),
                            str(t["status"]), epochs, rows["val_mean_auc"].astype(float).tolist(),
                            stopped))
    return CurvesInfo(curves, None if curves else "No per-epoch validation scores were recorded.")


class RocCurve(NamedTuple):
    label: str
    role: str  # "recipe" | "baseline"
    fpr: list[float]
    tpr: list[float]
    auc: float


class RocPanel(NamedTuple):
    finding: str
    positives: int
    negatives: int
    reason: str | None  # why there is no curve (then ``curves`` is empty)
    curves: list[RocCurve]


class RocInfo(NamedTuple):
    split: str | None
    labelled_split: str  # "test" or "VALIDATION"
    fallback_reason: str | None
    panels: list[RocPanel]
    message: str | None


def get_roc_info(results: Results, verdict) -> RocInfo:
    """ROC curves (``sklearn.metrics.roc_curve``) of the verdict's recipe and baseline."""
    split = verdict.split
    if split is None or verdict.recipe is None:
        return RocInfo(None, "", None, [], "No recipe has predictions: no ROC curves.")
    models = [(r, role) for r, role in ((verdict.recipe, "recipe"), (verdict.baseline,
                                                                     "baseline"))
              if r is not None]
    scores = [(r, role, model_scores(results, r.trial_id, split)) for r, role in models]
    y = scores[0][2].y_true
    panels = []
    for c, finding in enumerate(results.findings):
        pos = int(y[:, c].sum())
        neg = len(y) - pos
        if pos == 0 or neg == 0:
            why = "no positive case" if pos == 0 else "no negative case"
            panels.append(RocPanel(finding, pos, neg, f"{why} in {split_name(split)}", []))
            continue
        curves = []
        for ref, role, s in scores:
            fpr, tpr, _ = roc_curve(s.y_true[:, c], s.y_score[:, c])
            curves.append(RocCurve(ref.label, role, fpr.tolist(), tpr.tolist(),
                                   float(auc(fpr, tpr))))  # = roc_auc_score
        panels.append(RocPanel(finding, pos, neg, None, curves))
    return RocInfo(split, "test" if split == "test" else "VALIDATION", verdict.fallback_reason,
                   panels, None)


class MaeImage(NamedTuple):
    image_id: str
    panels: dict[str, str]  # panel -> base64 PNG ("masked", "reconstruction", "original")


class MaeInfo(NamedTuple):
    trial_label: str | None
    pretrain_key: str | None
    role: str | None
    encoder: dict  # the encoders.parquet row (trained_by, used_by, epochs, final_loss, ...)
    images: list[MaeImage]
    loss_epochs: list[int]
    loss_values: list[float]
    message: str | None  # why reconstructions or the loss curve are absent


def get_mae_info(results: Results, verdict, ranked: pd.DataFrame) -> MaeInfo:
    """Reconstructions and pre-training loss of the encoder of the verdict's recipe."""
    if verdict.recipe is None:
        return MaeInfo(None, None, None, {}, [], [], [],
                       "No recipe trial has predictions, so there is no best recipe to show.")
    row = ranked[ranked["trial_id"] == verdict.recipe.trial_id].iloc[0]
    label = str(row["label"])
    key = None if is_missing(row.get("pretrain_key")) else str(row["pretrain_key"])
    role = None if is_missing(row.get("pretrain_role")) else str(row["pretrain_role"])
    if key is None or role in ("imported", "none"):
        how = "fine-tuned from an imported checkpoint" if role == "imported" else \
            "not MAE-pre-trained in this search"
        return MaeInfo(label, key, role, {}, [], [], [],
                       f"Recipe '{label}' was {how}: there are no reconstructions or "
                       f"pre-training loss to show.")
    enc = results.encoders
    encoder = {}
    if not enc.empty and (enc["pretrain_key"] == key).any():
        encoder = {k: v for k, v in enc[enc["pretrain_key"] == key].iloc[0].items()
                   if k not in ("pretrain_key", "config_json")}
        labels = dict(zip(results.trials["trial_id"], results.trials["label"]))
        for k, v in encoder.items():
            if k in ("trained_by", "used_by"):  # trial ids -> the labels the page shows
                ids = [v] if isinstance(v, str) else list(v) if v is not None else []
                names = [str(labels.get(i, i)) for i in ids]
                encoder[k] = names[0] if isinstance(v, str) else names
            elif isinstance(v, np.generic):
                encoder[k] = v.item()
    images = _images(results.reconstructions, key)
    ee = results.encoder_epochs
    loss = ee[ee["pretrain_key"] == key].sort_values("epoch") if not ee.empty else ee
    missing = []
    if not images:
        missing.append("no reconstructions were stored")
    if loss.empty:
        missing.append("no pre-training loss curve was stored")
    return MaeInfo(label, key, role, encoder, images,
                   loss["epoch"].astype(int).tolist() if len(loss) else [],
                   loss["loss"].astype(float).tolist() if len(loss) else [],
                   f"For encoder {key}: " + " and ".join(missing) + "." if missing else None)


def _images(recon: pd.DataFrame, key: str) -> list[MaeImage]:
    if recon.empty:
        return []
    rows = recon[recon["pretrain_key"] == key]
    out = []
    for image_id, group in rows.groupby("image_id", sort=True):
        panels = {}
        for _, r in group.iterrows():
            png = bytes(r["png"]) if r["png"] is not None else b""
            if r["panel"] in PANELS and png.startswith(PNG_MAGIC):
                panels[str(r["panel"])] = base64.b64encode(png).decode("ascii")
        if panels:
            out.append(MaeImage(str(image_id), {p: panels[p] for p in PANELS if p in panels}))
    return out
