"""The ``README.md`` of an export: a model card in the Hugging Face layout (YAML front matter,
then sections), made only from the export's own ``config.json``, so the card and the numbers a
program reads can never disagree.
"""

from __future__ import annotations

import yaml

from explorer.report._format import arch_name, fmt_auc, fmt_ci, fmt_int, fmt_value, split_name

LOAD_SNIPPET = """```python
import timm, torch
from PIL import Image

model = timm.create_model("local-dir:PATH/TO/THIS/FOLDER", pretrained=True).eval()
transform = timm.data.create_transform(**timm.data.resolve_data_config({{}}, model=model))
x = transform(Image.open("xray.png").convert("RGB")).unsqueeze(0)
with torch.no_grad():
    probs = torch.sigmoid(model(x))[0]          # one probability per finding
print(dict(zip(model.pretrained_cfg["label_names"], probs.tolist())))
```

Or, with this project installed, for folders and CSV lists of images (batched, unreadable files
listed and skipped), with exactly the search's preprocessing:

```
python -m explorer.predict PATH/TO/THIS/FOLDER images/ --out predictions.csv
```"""


def _front_matter(cfg: dict) -> str:
    ex = cfg["explorer"]
    phantom = ex["data"].get("source") == "phantom"
    results = []
    for split, block in ex["results"].items():
        if block is None or block["mean_auc"] is None:
            continue
        results.append({
            "task": {"type": "image-classification",
                     "name": "Multi-label chest X-ray classification"},
            "dataset": {"name": str(ex["data"].get("source")), "type": str(ex["data"].get(
                "source")), "split": split_name(split)},
            "metrics": [{"type": "roc_auc", "value": round(block["mean_auc"], 4),
                         "name": f"mean AUC over {len(block['findings_in_mean'])} findings"}]})
    meta = {
        "library_name": "timm",
        "pipeline_tag": "image-classification",
        "tags": ["timm", "image-classification", "multi-label", "chest-x-ray",
                 "cxr-recipe-explorer", *(["synthetic-data"] if phantom else [])],
        "model-index": [{"name": f"{ex['experiment']}-{ex['trial_id']}", "results": results}],
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _results_table(ex: dict) -> list[str]:
    lines = ["| Split | Mean AUC | Interval | Images | Patients | Findings in the mean |",
             "| --- | --- | --- | --- | --- | --- |"]
    for split, block in ex["results"].items():
        if block is None:
            why = "not scored: only finalists and baselines are scored on test, once" \
                if split == "test" else "no predictions"
            lines.append(f"| {split_name(split)} | n/a | {why} | | | |")
            continue
        lines.append(f"| {split_name(split)} | {fmt_auc(block['mean_auc'])} | "
                     f"{fmt_ci(block['ci'])} | {fmt_int(block['n_images'])} | "
                     f"{fmt_int(block['n_patients'])} | {len(block['findings_in_mean'])} of "
                     f"{len(ex['findings'])} |")
    level = next((b["level"] for b in ex["results"].values() if b), 0.95)
    lines += ["", f"Intervals: {round(100 * level)}% patient-bootstrap percentile intervals "
              "(all images of a resampled patient move together)."]
    return lines


def _per_class_table(ex: dict) -> list[str]:
    splits = [s for s, b in ex["results"].items() if b is not None]
    if not splits:
        return []
    head = " | ".join(f"{split_name(s)} AUC [interval] | {split_name(s)} positives"
                      for s in splits)
    lines = ["| Finding | " + head + " |", "| --- |" + " --- | --- |" * len(splits)]
    rows = {s: {r["finding"]: r for r in ex["results"][s]["per_class"]} for s in splits}
    for f in ex["findings"]:
        cells = []
        for s in splits:
            r = rows[s].get(f)
            if r is None or r["auc"] is None:
                reason = (r or {}).get("undefined_reason") or "no value"
                cells += [f"none ({reason})", fmt_int((r or {}).get("positives"))]
            else:
                cells += [f"{fmt_auc(r['auc'])} {fmt_ci(r['ci'])}", fmt_int(r["positives"])]
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    return lines


def _recipe_lines(ex: dict) -> list[str]:
    r = ex.get("recipe") or {}
    model, ft, pt, data = (r.get(k, {}) for k in ("model", "finetune", "pretrain", "data"))
    lines = []
    if ex["params"]:
        lines.append("Searched parameters of this trial: " + ", ".join(
            f"`{k}` = {fmt_value(v)}" for k, v in ex["params"].items()) + ".")
    arch = f"{arch_name(ex['arch'])} (`{ex['arch']}`" + (
        f", patch {model.get('patch_size')}" if ex["arch"].startswith("vit") else "") + ")"
    lines.append(f"- Model: {arch}, input {data.get('image_size')} px, "
                 f"{len(ex['findings'])} sigmoid outputs.")
    mae = ex["arch"].startswith("vit") and pt.get("enabled") and not pt.get("from_checkpoint")
    if mae:
        lines.append(f"- MAE pre-training: {pt.get('epochs')} epochs, mask ratio "
                     f"{fmt_value(pt.get('mask_ratio'))}, crop scale {pt.get('crop_scale')}.")
    elif pt.get("from_checkpoint"):
        lines.append(f"- Encoder from the checkpoint `{pt['from_checkpoint']}`.")
    decay = f", layer decay {fmt_value(ft.get('layer_decay'))}" \
        if ex["arch"].startswith("vit") else ""
    lines.append(f"- Fine-tuning: {ft.get('epochs')} epochs (best: epoch {ex.get('best_epoch')}),"
                 f" base lr {fmt_value(ft.get('base_lr'))}, effective batch "
                 f"{ft.get('effective_batch')}{decay}.")
    lines.append(f"- Scale `{ex.get('scale')}`, seed {r.get('seed')}, recipe hash "
                 f"`{ex.get('config_hash')}`. The whole recipe is in `config.json` "
                 "(`explorer.recipe`).")
    return lines


def model_card(cfg: dict) -> str:
    ex = cfg["explorer"]
    data = ex["data"]
    pre = ex["preprocessing"]
    phantom = data.get("source") == "phantom"
    sizes = data.get("sizes") or {}
    size_text = ", ".join(f"{split_name(s)} {fmt_int(sizes[s].get('images'))} images of "
                          f"{fmt_int(sizes[s].get('patients'))} patients"
                          for s in ("train", "val", "test") if s in sizes)
    missing = [f"{r['finding']} ({r['undefined_reason']})"
               for b in ex["results"].values() if b for r in b["per_class"]
               if r["auc"] is None]
    limits = [
        "- Research use only: not a medical device, not validated for diagnosis or triage, "
        "and its probabilities are not calibrated.",
        "- The validation split chose this model among the search's trials, so its validation "
        "AUC is optimistic; only the test split, scored once, is unbiased.",
    ]
    if phantom:
        limits.insert(0, "- **Phantom data**: trained and evaluated on the project's synthetic "
                         "thorax phantom, not on X-rays. It exercises the tooling and says "
                         "nothing about medicine.")
    if missing:
        limits.append("- Findings without an AUC (no positive or no negative case): "
                      + "; ".join(dict.fromkeys(missing)) + ".")
    limits.append("- Preprocessing: timm's transform above equals the search's for 8-bit "
                  "grey or R=G=B images; 16-bit images are scaled by their used bit depth in "
                  "the search, which `explorer.predict` reproduces exactly.")
    lines = [
        _front_matter(cfg),
        f"# {ex['experiment']}: {ex['label']} ({arch_name(ex['arch'])})", "",
        f"A {arch_name(ex['arch'])} classifier of {len(ex['findings'])} chest X-ray findings, "
        f"exported from the recipe search `{ex['experiment']}` (trial `{ex['trial_id']}`, "
        f"{ex['selected_by']}).", "",
        "## Intended use", "",
        "Research on training recipes: reproducing and comparing the search's result, and "
        "starting further experiments from it. The output is one independent probability per "
        "finding (multi-label), in this order: " + ", ".join(ex["findings"]) + ".", "",
        "## Data", "",
        f"Source `{data.get('source')}`: {size_text or 'sizes not recorded'}. Splits are by "
        f"patient. Data fingerprint `{data.get('fingerprint')}`.",
        *([f"\n{data['caveat'].capitalize()}."] if data.get("caveat") else []), "",
        "## Recipe", "", *_recipe_lines(ex), "",
        "## Results", "", *_results_table(ex), "", *_per_class_table(ex), "",
        "## How to use", "", LOAD_SNIPPET.replace("{{}}", "{}"), "",
        f"Preprocessing: grey image, shorter side resized to {pre['eval_size']} px, "
        f"{pre['image_size']} px centre crop, normalised with mean {pre['mean']} and std "
        f"{pre['std']}, grey channel repeated 3 times.", "",
        "## Limits", "", *limits, "",
        "## Provenance", "",
        f"Exported {ex['exported']} from git commit `{ex.get('git_commit')}` with "
        + ", ".join(f"{k} {v}" for k, v in (ex.get("versions") or {}).items() if v) + ".", "",
    ]
    return "\n".join(lines)
