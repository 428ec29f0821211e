"""The HTML of section 9, the study's table (data step: ``explorer.report.study``)."""

from __future__ import annotations

from explorer.report._format import fmt_auc, fmt_ci, split_name
from explorer.report._markup import Markup, table, tag


def study_section(info) -> Markup:
    rows = []
    for r in info.rows:
        ours = "no predictions" if r.auc is None else f"{fmt_auc(r.auc)} {fmt_ci(r.ci)}".strip()
        where = "" if r.split is None else split_name(r.split)
        chosen = r.chosen if len(r.models) == 1 else \
            f"{r.chosen} (best on validation of {len(r.models)})"
        published = (f"{r.published:.3f}" if r.published is not None else "") + (
            f" ({r.published_as})" if r.published_as else "")
        rows.append([r.model, r.pretrained_on, r.how, ours, where, chosen,
                     published.strip() or "—", r.note])
    parts = [tag("p", f"Each row: one architecture, start and pre-training data among this "
                      f"run's models; our mean AUC (95% patient-bootstrap interval) of the model "
                      f"its group selects on validation, beside the published test mean AUC "
                      f"({info.citation}). A published number is shown only where data, split, "
                      f"resolution and pre-training data match the study's.", class_="note")]
    if rows:
        parts.append(table(["model", "pre-trained on", "how", "our mean AUC [95% CI]", "split",
                            "our model", "published", "comparison"], rows, num_cols=(3,)))
    else:
        parts.append(tag("p", "No model has results yet."))
    for pool in info.pools:
        parts.append(tag("p", f"Pre-training pool: {pool}.", class_="note"))
    return tag("section", tag("h2", "9. The study's table"), *parts, id="study")
