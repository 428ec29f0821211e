"""``python -m explorer.export``: a folder that timm alone rebuilds into the trained model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from explorer.export import main
from explorer.results import load_results

# Runs in a fresh interpreter: timm, safetensors, torch, PIL and numpy only.
RELOAD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np, safetensors.torch, timm, torch
    from PIL import Image

    folder, images = sys.argv[1], sorted(Path(sys.argv[2]).glob("*.png"))
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    weights = safetensors.torch.load_file(f"{folder}/model.safetensors")
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    x = torch.stack([transform(Image.open(p).convert("RGB")) for p in images])
    with torch.no_grad():
        probs = torch.sigmoid(model(x)).numpy()
    assert not any(m == "explorer" or m.startswith("explorer.") for m in sys.modules)
    print(json.dumps({"labels": model.pretrained_cfg["label_names"],
                      "ids": [p.stem for p in images], "probs": probs.tolist()}))
""")


def search_probs(record: Path, findings: list[str]) -> pd.DataFrame:
    """The search's own validation probabilities at the trial's best epoch."""
    return pd.read_parquet(record / "val_predictions.parquet").set_index("image_id")[findings]


def verdict_recipe(run: Path) -> str:
    from explorer.report.data import collect

    return collect(load_results(run)).verdict.recipe.trial_id


@pytest.fixture(scope="module")
def exported(tracked_search, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "winner"
    assert main([str(tracked_search), "--out", str(out)]) == 0
    return out


@pytest.mark.ray  # the shared search (Ray in its own process)
def test_reload_without_explorer_gives_the_search_probabilities(exported, tracked_search,
                                                                 val_pngs):
    res = subprocess.run([sys.executable, "-c", RELOAD, str(exported), str(val_pngs)],
                         capture_output=True, text=True, timeout=300, cwd=val_pngs)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout)
    cfg = json.loads((exported / "config.json").read_text())
    findings = cfg["explorer"]["findings"]
    assert got["labels"] == findings == load_results(tracked_search).findings
    ours = search_probs(tracked_search / "trials" / cfg["explorer"]["trial_id"], findings)
    theirs = np.asarray(got["probs"], dtype=np.float32)
    assert len(got["ids"]) == len(ours)
    np.testing.assert_allclose(theirs, ours.loc[got["ids"]].to_numpy(), rtol=0, atol=1e-6)


@pytest.mark.ray  # the shared search (Ray in its own process)
def test_default_is_the_verdicts_recipe_with_its_numbers(exported, tracked_search):
    cfg = json.loads((exported / "config.json").read_text())
    ex = cfg["explorer"]
    results = load_results(tracked_search)
    assert ex["trial_id"] == verdict_recipe(tracked_search)
    assert ex["kind"] == "recipe" and "verdict" in ex["selected_by"]
    assert ex["data"]["fingerprint"] == results.meta["data"]["fingerprint"]
    assert cfg["architecture"] == "vit_tiny_patch16_224"
    assert cfg["model_args"]["embed_dim"] == 64 and cfg["model_args"]["patch_size"] == 4
    assert "tag" not in cfg["pretrained_cfg"] and "license" not in cfg["pretrained_cfg"]
    row = results.trials.set_index("trial_id").loc[ex["trial_id"]]
    for split, column in (("val", "val_mean_auc"), ("test", "test_mean_auc")):
        block = ex["results"][split]  # both finalists were scored on test
        lo, hi = block["ci"]
        assert lo <= block["mean_auc"] <= hi
        assert block["mean_auc"] == pytest.approx(row[column], abs=1e-9)
        assert [r["finding"] for r in block["per_class"]] == ex["findings"]


@pytest.mark.ray  # the shared search (Ray in its own process)
def test_model_card_has_the_hugging_face_layout(exported):
    text = (exported / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "timm" and "synthetic-data" in meta["tags"]
    splits = [r["dataset"]["split"] for r in meta["model-index"][0]["results"]]
    assert splits == ["validation", "test"]
    for section in ("## Intended use", "## Data", "## Recipe", "## Results", "## How to use",
                    "## Limits", "## Provenance"):
        assert section in body
    assert "**Phantom data**" in body and "Research use only" in body


@pytest.mark.ray  # the shared search (Ray in its own process)
def test_a_baseline_by_trial_id(tracked_search, record_of, tmp_path):
    import timm
    import torch

    from explorer.data import DataConfig, XrayDataset, build_transform, load_data
    from explorer.data.transforms import model_input, normalise

    run_id = load_results(tracked_search).meta["baselines"][0]["run_id"]
    out = tmp_path / "densenet"
    assert main([str(tracked_search), "--trial", run_id, "--out", str(out)]) == 0
    ex = json.loads((out / "config.json").read_text())["explorer"]
    assert ex["kind"] == "baseline" and ex["results"]["test"] is not None
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    data = DataConfig(**ex["recipe"]["data"])
    val = load_data(data).val
    x = torch.stack([img for img, _ in XrayDataset(val, build_transform(data, train=False))])
    x = model_input(normalise(x, data))  # uint8 grey -> the model's input, as the search does
    with torch.no_grad():
        probs = torch.sigmoid(model(x)).numpy()
    ours = search_probs(record_of(tracked_search, run_id), ex["findings"])
    np.testing.assert_allclose(probs, ours.loc[val.image_ids].to_numpy(), rtol=0, atol=1e-5)


# -- bad inputs: one line, exit 2, nothing changed ---------------------------------------------
def one_line_exit_2(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_a_folder_without_results_is_refused(tmp_path, capsys):
    err = one_line_exit_2(capsys, [str(tmp_path), "--out", str(tmp_path / "out")])
    assert "no results here" in err and not (tmp_path / "out").exists()


@pytest.mark.ray  # the shared search (Ray in its own process)
def test_an_unknown_trial_is_refused(tracked_search, tmp_path, capsys):
    err = one_line_exit_2(capsys, [str(tracked_search), "--trial", "nope",
                                   "--out", str(tmp_path / "out")])
    assert "--trial nope: no such trial" in err and not (tmp_path / "out").exists()


@pytest.mark.ray  # the shared search (Ray in its own process)
def test_an_existing_export_is_kept_unless_overwrite(exported, tracked_search, tmp_path,
                                                     capsys):
    out = tmp_path / "mine"
    shutil.copytree(exported, out)
    (out / "notes.txt").write_text("the user's own file")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    err = one_line_exit_2(capsys, [str(tracked_search), "--out", str(out)])
    assert "already holds an export" in err and "--overwrite" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert main([str(tracked_search), "--out", str(out), "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "the user's own file"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json",
                                                     "model.safetensors", "notes.txt"]


@pytest.mark.ray  # the shared search (Ray in its own process)
def test_a_trial_without_weights_is_refused(tracked_search, tmp_path, capsys):
    run = tmp_path / "copy" / "mask_ratio"  # a copy: the shared search stays whole
    shutil.copytree(tracked_search, run, ignore=shutil.ignore_patterns("mlartifacts", "*.db"))
    trial = sorted(p.name for p in (run / "trials").iterdir())[0]
    (run / "trials" / trial / "best_model.pt").unlink()
    err = one_line_exit_2(capsys, [str(run), "--trial", trial, "--out", str(tmp_path / "out")])
    assert f"trial {trial} left no weights" in err and not (tmp_path / "out").exists()
