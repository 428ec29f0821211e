"""``python -m explorer.export RUN_DIR --out DIR``: a search's model as a folder timm can load.

The folder follows timm's Hugging Face layout, so loading it needs timm and safetensors only::

    model = timm.create_model("local-dir:DIR", pretrained=True)
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))

- ``model.safetensors``  the weights at the trial's best validation epoch
- ``config.json``        timm's: a registered ``architecture`` with ``model_args`` that set our
                         sizes, ``label_names`` (the findings, in output order) and a
                         ``pretrained_cfg`` with the evaluation preprocessing. Plus an
                         ``explorer`` section: the trial, recipe, data fingerprint, and the
                         validation (and test, when scored) AUCs with their intervals.
- ``README.md``          a model card (``explorer.model_card``)

The default model is the report verdict's recipe: the best recipe by validation mean AUC, among
the finalists scored on test when there are any (``report.scores.best_trial``).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from explorer.errors import OneLineParser, UserError

EPILOG = """examples:
  python -m explorer.export runs/mask_ratio --out exports/mask_ratio
  python -m explorer.export runs/mask_ratio --trial 1cba2c1f --out exports/trial-1cba2c1f
  python -m explorer.predict exports/mask_ratio images/ --out preds.csv
"""
EXPORT_FILES = ("config.json", "model.safetensors", "README.md")
FORMAT = 1  # of the "explorer" section of config.json
#: The interpolation of the search's evaluation transform (``build_transform``'s default).
EVAL_INTERPOLATION = "bicubic"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m explorer.export", epilog=EPILOG,
                description=__doc__.splitlines()[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a finished search's folder, e.g. runs/mask_ratio")
    p.add_argument("--trial", help="trial id or baseline run id to export (default: the "
                                   "report verdict's recipe)")
    p.add_argument("--out", required=True, help="folder to write (must not hold an export)")
    p.add_argument("--overwrite", action="store_true", help="replace an export already in --out")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = export(args.run_dir, args.out, trial=args.trial, overwrite=args.overwrite)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = read_export_config(out)["explorer"]
    print(f"exported {cfg['label']} ({cfg['trial_id']}, {cfg['arch']}) to {out}")
    return 0


# -- choosing the model -------------------------------------------------------------------------
def choose(results, trial: str | None) -> tuple[pd.Series, object, str]:
    """(trials-table row, Evaluation, why it was chosen), the intervals as the report has them."""
    from explorer.report.scores import best_trial, evaluate, ranked_trials

    ev = evaluate(results, n_resamples=int(results.meta.get("bootstrap") or 2000))
    if trial is not None:
        rows = results.trials[results.trials["trial_id"] == trial]
        if rows.empty:
            known = ", ".join(results.trials["trial_id"].astype(str).head(8))
            raise UserError(f"--trial {trial}: no such trial in this search (trials: {known})")
        return rows.iloc[0], ev, "chosen with --trial"
    row = best_trial(ranked_trials(results, ev), ev, "recipe")
    if row is None:
        raise UserError("no recipe trial of this search has validation predictions, so there "
                        "is no model to export; pass --trial ID to export a baseline")
    return row, ev, "the report verdict's recipe: best validation mean AUC" + (
        " among the finalists scored on test" if ev.get(row["trial_id"], "test") else "")


def record_dir(run_dir: Path, results, row: pd.Series) -> Path:
    """The trial's record: ``RUN/trials/ID``, or the baseline cache ``STORAGE/_baselines/KEY``."""
    from explorer.storage import BASELINES

    if row["kind"] != "baseline":
        return run_dir / "trials" / str(row["trial_id"])
    key = next((b["key"] for b in results.meta.get("baselines", [])
                if b["run_id"] == row["trial_id"]), None)
    if key is None:
        raise UserError(f"{run_dir}/results/meta.json: baseline {row['trial_id']} is not "
                        "listed; rebuild the results store")
    return run_dir.parent / BASELINES / key


# -- the timm model -----------------------------------------------------------------------------
def timm_model(recipe, num_classes: int):
    """The classifier built by timm's factory from a registered name, so timm records the
    arguments an export needs. ``pretrained_cfg_overlay`` clears what the registry would claim
    about weights these are not (its pretrained tag and licence)."""
    import timm

    from explorer.models.vit import TIMM_NAMES, vit_args

    overlay = {"tag": None, "license": None, "hf_hub_id": None, "url": None}
    m = recipe.model
    if m.family == "cnn":
        return timm.create_model(m.arch, pretrained=False, num_classes=num_classes,
                                 pretrained_cfg_overlay=overlay)
    return timm.create_model(TIMM_NAMES[m.arch], pretrained=False, num_classes=num_classes,
                             pretrained_cfg_overlay=overlay,
                             **vit_args(m.arch, img_size=recipe.data.image_size,
                                        patch_size=m.patch_size, global_pool=m.global_pool))


def preprocessing(data) -> dict:
    """The search's evaluation transform in words and in timm's terms: the shorter side resized
    to ``eval_size`` (bicubic), a centre crop of ``image_size``, one mean/std, and the grey
    channel repeated 3 times; timm's default ``crop_mode="center"`` with the same ``crop_pct``
    on an RGB copy of a grey image computes the same tensor."""
    return {"image_size": data.image_size, "eval_size": data.eval_size,
            "eval_crop_pct": data.eval_crop_pct, "mean": data.mean, "std": data.std,
            "interpolation": EVAL_INTERPOLATION, "channels": "grey, repeated to 3"}


def timm_data_config(data) -> dict:
    # timm's eval resize is floor(image_size / crop_pct), exactly DataConfig.eval_size
    return {"input_size": (3, data.image_size, data.image_size),
            "mean": (data.mean,) * 3, "std": (data.std,) * 3,
            "crop_pct": data.eval_crop_pct, "crop_mode": "center",
            "interpolation": EVAL_INTERPOLATION}


# -- what the search knows about it -------------------------------------------------------------
def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def auc_block(summary) -> dict | None:
    """An ``AucSummary`` as JSON: mean with its patient-bootstrap interval, and per finding."""
    if summary is None:
        return None
    per_class = [{"finding": r.finding, "auc": _num(r.auc), "ci": [_num(r.ci_low),
                                                                    _num(r.ci_high)],
                  "positives": int(r.positives), "negatives": int(r.negatives),
                  "undefined_reason": None if r.defined else r.reason}
                 for r in summary.per_class.itertuples()]
    return {"mean_auc": _num(summary.mean), "ci": [_num(c) for c in summary.mean_ci],
            "level": summary.level, "n_images": summary.n_images,
            "n_patients": summary.n_patients, "n_resamples": summary.n_resamples,
            "findings_in_mean": list(summary.included), "per_class": per_class}


def explorer_section(results, row: pd.Series, ev, why: str, cfg: dict, recipe) -> dict:
    meta = results.meta
    data = meta.get("data") or {}
    trial_id = str(row["trial_id"])
    return {
        "format": FORMAT,
        "experiment": meta.get("name"), "trial_id": trial_id, "kind": str(row["kind"]),
        "label": str(row["label"]), "arch": recipe.model.arch, "selected_by": why,
        "best_epoch": None if pd.isna(row.get("best_epoch")) else int(row["best_epoch"]),
        "findings": results.findings,
        "output": "one independent probability per finding: sigmoid of each logit (multi-label)",
        "preprocessing": preprocessing(recipe.data),
        "results": {"val": auc_block(ev.get(trial_id, "val")),
                    "test": auc_block(ev.get(trial_id, "test"))},
        "data": {"source": data.get("source"), "fingerprint": data.get("fingerprint"),
                 "sizes": data.get("sizes"), "caveat": data.get("caveat")},
        "params": cfg.get("params", {}), "recipe": cfg.get("recipe"),
        "config_hash": cfg.get("config_hash"), "scale": meta.get("scale"),
        "git_commit": meta.get("git_commit"), "versions": meta.get("versions"),
        "exported": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


# -- the export ---------------------------------------------------------------------------------
def read_export_config(folder: str | Path) -> dict:
    import json

    path = Path(folder) / "config.json"
    if not path.is_file():
        raise UserError(f"{folder}: no config.json here, so this is not an exported model "
                        "(make one with python -m explorer.export RUN_DIR --out DIR)")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable ({e})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("explorer"), dict):
        raise UserError(f"{path}: no 'explorer' section, so the findings and preprocessing are "
                        "unknown; export the model with python -m explorer.export")
    return cfg


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder")
    taken = [n for n in EXPORT_FILES if (out / n).exists()]
    if taken and not overwrite:
        raise UserError(f"--out {out}: already holds an export ({taken[0]}); choose another "
                        "folder or add --overwrite")


def export(run_dir: str | Path, out: str | Path, trial: str | None = None,
           overwrite: bool = False) -> Path:
    """Write the export folder; returns it. Raises ``UserError`` for anything a user can fix,
    before ``out`` is touched: the folder is written beside it and moved into place at the end."""
    import torch
    from timm.models import save_for_hf

    from explorer.model_card import model_card
    from explorer.results import load_results
    from explorer.spec.recipes import build_recipe
    from explorer.train.artifacts import TrialArtifacts

    run_dir, out = Path(run_dir), Path(out)
    _check_out(out, overwrite)
    results = load_results(run_dir)
    row, ev, why = choose(results, trial)
    art = TrialArtifacts(record_dir(run_dir, results, row))
    cfg = art.read_json("config.json")
    if not cfg or not art.path("best_model.pt").is_file():
        raise UserError(f"{art.root}: trial {row['trial_id']} left no weights (best_model.pt; "
                        f"status {row['status']}): export another with --trial")
    recipe = build_recipe(cfg["recipe"])
    model = timm_model(recipe, len(results.findings))
    # strict: the timm-built model must be exactly the trained one, or the export is a bug
    model.load_state_dict(torch.load(art.path("best_model.pt"), map_location="cpu",
                                     weights_only=True))
    section = explorer_section(results, row, ev, why, cfg, recipe)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_for_hf(model.eval(), str(tmp), safe_serialization=True,
                    data_config=timm_data_config(recipe.data),
                    model_config={"label_names": results.findings, "explorer": section})
        config = read_export_config(tmp)
        (tmp / "README.md").write_text(model_card(config), encoding="utf-8")
        umask = os.umask(0)
        os.umask(umask)
        for f in tmp.iterdir():  # safetensors writes 0600; an export is meant to be shared
            f.chmod(0o666 & ~umask)
        tmp.chmod(0o777 & ~umask)
        if out.is_dir():  # only our files are replaced; anything else in the folder stays
            for f in tmp.iterdir():
                f.replace(out / f.name)
        else:
            tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
