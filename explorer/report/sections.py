"""The HTML of each numbered section, from the data step's records (text escaped by ``tag``).

``fig(key)`` returns the placeholder ``<div>`` of a figure made by ``figures.make_figures`` (or
nothing when the section has no such figure).
"""

from __future__ import annotations

import json

from explorer.report._format import (
    STATUS_TEXT,
    arch_name,
    fmt_auc,
    fmt_ci,
    fmt_delta,
    fmt_int,
    fmt_p,
    fmt_seconds,
    fmt_value,
    is_missing,
    param_name,
    split_name,
)
from explorer.report._markup import Markup, join, table, tag
from explorer.report.leaderboard import PAPER_CITATION


def _section(n: int, anchor: str, title: str, *content) -> Markup:
    return tag("section", tag("h2", f"{n}. {title}"), *content, id=anchor)


def _auc_ci(auc, ci) -> str:
    return f"{fmt_auc(auc)} {fmt_ci(ci)}".strip()


def phantom_banner(data) -> Markup:
    if data.source != "phantom":
        return Markup("")
    return tag("div", tag("span", "Phantom data. ", class_="label"),
               "These results come from the built-in thorax phantom, which exercises the "
               "system; conclusions about medicine need real data.", class_="warn")


def verdict_section(v) -> Markup:
    parts = []
    if v.fallback_reason:
        parts.append(tag("div", tag("span", "Validation, not test: " if v.split == "val"
                                    else "Note: ", class_="label"),
                         f"{v.fallback_reason[0].upper()}{v.fallback_reason[1:]}.",
                         class_="warn"))
    parts.append(tag("p", v.sentence, class_="verdict"))
    if v.budget_note:
        parts.append(tag("div", tag("span", "Budget-limited: ", class_="label"), v.budget_note,
                         class_="warn"))
    parts += [tag("p", n, class_="note") for n in v.notes]
    if v.per_class is not None:
        pc = v.per_class
        rows = [[r.finding, fmt_auc(r.auc_a), fmt_auc(r.auc_b), fmt_delta(r.delta),
                 fmt_ci((r.delta_ci_low, r.delta_ci_high)),
                 "" if is_missing(r.delong_p) else fmt_p(r.delong_p),
                 "" if is_missing(r.delong_p_holm) else fmt_p(r.delong_p_holm),
                 "" if r.defined else f"no AUC: {r.reason}"] for r in pc.itertuples()]
        where = split_name(v.split)
        parts.append(tag("details", tag("summary", f"Per finding ({where} split)"), table(
            ["finding", f"recipe {where} AUC", f"baseline {where} AUC", "difference",
             "95% CI (patient bootstrap)", "DeLong p", "DeLong p (Holm)", "note"], rows,
            num_cols=range(1, 7)),
            tag("p", "DeLong's test treats images as independent; with several images per "
                     "patient it is too optimistic, which is why the headline uses the patient "
                     "bootstrap.", class_="note")))
    return _section(1, "verdict", "Verdict", *parts)


def _status(r) -> Markup:
    text = STATUS_TEXT.get(r.status, r.status)
    if r.still_improving:
        text += ", still improving at its last epoch"
    if r.resumes:
        text += f" (resumed from a checkpoint {r.resumes}x)"
    if r.error:
        return join([text, ": ", tag("code", r.error)])
    return Markup(tag("span", text))


def _encoder(r) -> str:
    if r.pretrain_key is None:
        return "" if r.pretrain_role in (None, "none") else str(r.pretrain_role)
    shared = f"; shared with {', '.join(r.shares_encoder_with)}" if r.shares_encoder_with else ""
    learning = "; loss still falling" if r.encoder_learning else ""
    return f"{r.pretrain_key} ({r.pretrain_role}{learning}){shared}"


def leaderboard_section(info, fig) -> Markup:
    paths = info.param_paths
    level = f"{round(100 * info.level)}%"
    headers = ["#", "model", "kind", "start (pre-training data)", "status",
               "epochs run / planned (best)",
               f"validation mean AUC [{level} CI]", f"test mean AUC [{level} CI]",
               *(param_name(p, paths) for p in paths), "encoder (key, role)", "seed",
               "wall time"]
    rows = []
    for i, r in enumerate(info.rows, start=1):
        if r.test_auc is not None:
            test = _auc_ci(r.test_auc, r.test_ci)
        elif not info.has_test:
            test = "no test split"
        else:
            test = "not scored" + (" (not a finalist)" if r.kind == "recipe" and not r.finalist
                                   else "")
        epochs = f"{fmt_int(r.epochs_run)} / {fmt_int(r.epochs_planned)}" + (
            f" ({r.best_epoch})" if r.best_epoch is not None else "")
        val = _auc_ci(r.val_auc, r.val_ci) if not is_missing(r.val_auc) else "n/a"
        if r.val_ci is None and not is_missing(r.val_auc):
            val += " (trials table; no predictions)"
        params = [fmt_value(r.params.get(p)) if r.kind == "recipe" else "" for p in paths]
        rows.append([i, r.label, f"{r.kind} ({arch_name(r.arch)})", r.start or "not recorded",
                     _status(r), epochs, val, test, *params, _encoder(r), fmt_int(r.seed),
                     fmt_seconds(r.wall_time_s)])
    classes = [("baseline" if r.kind == "baseline" else None) if r.status != "failed"
               else "failed" for r in info.rows]
    parts = [
        tag("p", f"Sorted by validation mean AUC. Intervals: patient bootstrap, "
                 f"{info.n_resamples:,} resamples. Test is scored once, for finalists and "
                 f"baselines only; selection used validation.", class_="note"),
        fig("leaderboard"),
        table(headers, rows, classes, num_cols=(0, 6, 7)),
    ]
    if info.fragile:
        parts.append(tag("p", "Some resamples lacked a positive or negative case of a finding "
                              "and were left out of these intervals, so they rest on few "
                              "patients: " + "; ".join(info.fragile) + ".", class_="warn"))
    if info.spreads:
        spread_rows = []
        for s in info.spreads:
            spread_rows.append([
                arch_name(s.arch) + (f" ({s.start})" if s.start else ""),
                ", ".join(fmt_int(x) for x in s.seeds),
                f"{fmt_auc(s.val_mean)} ± {fmt_auc(s.val_sd)}",
                ", ".join(fmt_auc(x) for x in s.val),
                f"{fmt_auc(s.test_mean)} ± {fmt_auc(s.test_sd)}",
                ", ".join(fmt_auc(x) for x in s.test)])
        parts += [tag("h3", "Baseline seed spread"), table(
            ["baseline", "seeds", "validation mean AUC (mean ± sd)", "validation, each seed",
             "test mean AUC (mean ± sd)", "test, each seed"], spread_rows, num_cols=(2, 3, 4, 5))]
    if info.reference:
        parts += [tag("h3", f"Published reference ({PAPER_CITATION}; not computed here)"),
                  tag("p", "Test mean AUC on the official NIH ChestX-ray14 test list at 224 px, "
                           "as published. Different data size and training budget: context, "
                           "not a result of this search.", class_="note"),
                  table(["model", "pre-trained on", "how", "test mean AUC (published)"],
                        [[m, d, h, f"{a:.3f}"] for m, d, h, a in info.reference],
                        num_cols=(3,))]
    return _section(2, "leaderboard", "Leaderboard", *parts)


def per_class_section(heatmaps, missing, fig) -> Markup:
    parts = [tag("p", "AUC per finding. Column labels give positive / negative images. A cell "
                      "marked 'no AUC' has none (never shown as 0); hover for the reason.",
                 class_="note")]
    for h in heatmaps:
        parts += [tag("h3", f"{split_name(h.split).capitalize()} split"), fig(f"heatmap-{h.split}")]
    if not heatmaps:
        parts.append(tag("p", "No predictions were stored, so there are no per-class AUCs."))
    parts.append(tag("h3", "Findings without an AUC"))
    if missing:
        parts.append(table(
            ["split", "finding", "why", "positive / negative images", "models"],
            [[split_name(m.split), m.finding, m.reason, f"{m.positives:,} / {m.negatives:,}",
              ", ".join(m.models)] for m in missing]))
        parts.append(tag("p", "Mean AUCs are over the remaining findings.", class_="note"))
    else:
        parts.append(tag("p", "Every finding has an AUC on every scored split."))
    return _section(3, "per-class", "Per-class AUC", *parts)


def knobs_section(k, imp, fig) -> Markup:
    parts = []
    if k.message:
        parts.append(tag("p", k.message))
    else:
        parts += [tag("p", "Validation mean AUC of each recipe trial (at its best epoch) "
                           "against each searched parameter; crosses are trials stopped early "
                           "by ASHA, scored at fewer epochs.", class_="note"),
                  fig("knobs"), tag("h3", "Parallel coordinates"), fig("parallel")]
    parts.append(tag("h3", "Parameter importance"))
    if imp.message:
        parts.append(tag("p", imp.message))
    else:
        parts.append(tag("p", f"Optuna's {imp.evaluator} (optuna.importance."
                              f"get_param_importances) on a study rebuilt from {imp.n_trials} "
                              f"trials (completed and stopped early, each at its best "
                              f"validation epoch).", class_="note"))
        parts += [tag("p", f"Optuna warned: {w}", class_="warn") for w in imp.warnings]
        parts.append(fig("importance"))
    if imp.unranked:
        parts.append(tag("p", "Not ranked (not sampled in every trial): "
                              + ", ".join(imp.unranked), class_="note"))
    if imp.skipped:
        parts.append(tag("p", "Left out of the study: " + "; ".join(imp.skipped), class_="note"))
    return _section(4, "knobs", "Knob effects", *parts)


def curves_section(c, fig) -> Markup:
    parts = [tag("p", c.message)] if c.message else [
        tag("p", "Validation mean AUC after each fine-tuning epoch; dashed lines are baselines, "
                 "crosses mark where ASHA stopped a trial.", class_="note"), fig("curves")]
    return _section(5, "curves", "Learning curves", *parts)


def roc_section(r, fig) -> Markup:
    if r.message:
        return _section(6, "roc", "ROC curves", tag("p", r.message))
    parts = [tag("p", tag("span", f"{r.labelled_split} split. ", class_="label"),
                 "The verdict's recipe and baseline; panels give positive / negative images.",
                 class_="warn" if r.split == "val" else "note")]
    if r.fallback_reason:
        parts.append(tag("p", f"Why not test: {r.fallback_reason}.", class_="note"))
    parts.append(fig("roc"))
    return _section(6, "roc", "ROC curves", *parts)


def mae_section(m, fig) -> Markup:
    parts = []
    if m.pretrain_key is not None:
        enc = "; ".join(f"{k}: {fmt_value(v) if not isinstance(v, list) else ', '.join(v)}"
                        for k, v in m.encoder.items())
        parts.append(tag("p", f"Encoder {m.pretrain_key} of recipe '{m.trial_label}' "
                              f"({m.role})" + (f" — {enc}" if enc else "") + "."))
    if m.message:
        parts.append(tag("p", m.message, class_="warn"))
    if m.images:
        panels = ("masked", "reconstruction", "original")
        rows = [[img.image_id, *(tag("img", class_="recon", alt=f"{p} {img.image_id}",
                                     src=f"data:image/png;base64,{img.panels[p]}")
                                 if p in img.panels else "missing" for p in panels)]
                for img in m.images]
        parts.append(table(["image", "masked input", "reconstruction", "original"], rows))
    if m.loss_epochs:
        parts += [tag("h3", "Pre-training loss"), fig("loss")]
    return _section(7, "mae", "MAE reconstructions", *parts)


def _value(v) -> Markup:
    """A meta.json value as HTML: nested dicts as tables, lists of scalars inline."""
    if isinstance(v, dict):
        if not v:
            return Markup(tag("span", "(none)"))
        return table(None, [[k, _value(x)] for k, x in v.items()])
    if isinstance(v, list):
        if all(not isinstance(x, (dict, list)) for x in v):
            return Markup(tag("span", ", ".join(fmt_value(x) for x in v) or "(none)"))
        return tag("pre", json.dumps(v, indent=2, default=str))
    return Markup(tag("span", fmt_value(v)))


def repro_section(r) -> Markup:
    parts = []
    if r.spec_yaml:
        parts.append(tag("details", tag("summary", "Search spec (YAML)"), tag("pre", r.spec_yaml)))
    elif r.spec is not None:
        parts.append(tag("details", tag("summary", "Search spec"),
                         tag("pre", json.dumps(r.spec, indent=2, default=str))))
    if r.facts:
        parts.append(table(["item", "value"], [[k, _value(v)] for k, v in r.facts]))
    if r.total_trial_wall_s is not None:
        parts.append(tag("p", f"Sum of trial wall times: {fmt_seconds(r.total_trial_wall_s)}."))
    if r.configs:
        parts.append(tag("h3", "Resolved configs"))
        parts += [tag("details", tag("summary", f"{c.label} ({c.kind}) — hash "
                                                f"{c.config_hash or 'n/a'}"),
                      tag("pre", c.config_text or "(not stored)")) for c in r.configs]
    if not parts:
        parts.append(tag("p", "meta.json holds no reproducibility details."))
    return _section(8, "repro", "Reproducibility", *parts)
