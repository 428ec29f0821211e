"""``python -m explorer.predict``: the search's own evaluation steps on new image files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorer.export import main as export_main
from explorer.predict import main

NIH_IMAGES = 690  # every file of the shared mini folder is a readable PNG


def one_line_exit_2(capsys, argv: list[str]) -> str:
    """Run the command; it must print exactly one ``error:`` line on stderr and exit 2."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def model(tracked_search, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("predict") / "model"
    assert export_main([str(tracked_search), "--out", str(out)]) == 0
    return out


@pytest.fixture
def broken(tmp_path) -> Path:
    """Two files named like images that are not (one truncated), and a note that is no image."""
    d = tmp_path / "broken"
    d.mkdir()
    (d / "fake.png").write_text("not an image")
    (d / "notes.txt").write_text("ignored: not an image suffix")
    return d


@pytest.mark.ray
def test_nih_folder_one_row_per_readable_image(model, nih_mini, broken, tmp_path, capsys):
    good = next((nih_mini / "images").glob("*.png"))
    (broken / "truncated.png").write_bytes(good.read_bytes()[:200])
    out = tmp_path / "preds.csv"
    assert main([str(model), str(nih_mini), str(broken), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    df = pd.read_csv(out)
    findings = json.loads((model / "config.json").read_text())["explorer"]["findings"]
    assert list(df.columns) == ["path", *findings]
    assert len(df) == NIH_IMAGES and df["path"].is_unique
    assert df[findings].to_numpy().min() >= 0 and df[findings].to_numpy().max() <= 1
    assert "skipped 2 unreadable image(s) of 692" in printed
    assert str(broken / "fake.png") in printed and str(broken / "truncated.png") in printed
    skipped = pd.read_csv(tmp_path / "preds.skipped.csv")
    assert sorted(Path(p).name for p in skipped["path"]) == ["fake.png", "truncated.png"]


@pytest.mark.ray
def test_same_probabilities_as_the_search(model, tracked_search, val_pngs, tmp_path):
    """On the validation images the search scored, from a CSV list of relative paths and from
    the search folder itself (the verdict's model exported on the fly)."""
    listing = tmp_path / "list.csv"
    names = sorted(p.name for p in val_pngs.glob("*.png"))
    for name in names:
        shutil.copy(val_pngs / name, tmp_path / name)
    pd.DataFrame({"path": names}).to_csv(listing, index=False)
    ex = json.loads((model / "config.json").read_text())["explorer"]
    ours = pd.read_parquet(tracked_search / "trials" / ex["trial_id"] / "val_predictions.parquet")
    ours = ours.set_index("image_id")[ex["findings"]]
    for source, out in ((model, tmp_path / "a.csv"), (tracked_search, tmp_path / "b.csv")):
        assert main([str(source), str(listing), "--out", str(out), "--batch-size", "7"]) == 0
        got = pd.read_csv(out)
        ids = [Path(p).stem for p in got["path"]]
        assert ids == [Path(n).stem for n in names]
        np.testing.assert_allclose(got[ex["findings"]].to_numpy(),
                                   ours.loc[ids].to_numpy(), rtol=0, atol=1e-6)


@pytest.mark.ray
def test_nothing_readable_writes_nothing(model, broken, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    err = one_line_exit_2(capsys, [str(model), str(broken / "fake.png"), "--out", str(out)])
    assert "none of the 1 image(s) could be read" in err and "fake.png" in err
    assert not out.exists()


# -- bad inputs that are refused before any model is loaded -----------------------------------
def test_folder_with_only_non_images(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("no images here")
    (tmp_path / "model").mkdir()
    err = one_line_exit_2(capsys, [str(tmp_path / "model"), str(tmp_path / "docs"),
                                   "--out", str(tmp_path / "p.csv")])
    assert "no image files here or below" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "model"]


def test_no_images_at_all(tmp_path, capsys):
    (tmp_path / "empty.csv").write_text("path\n")
    err = one_line_exit_2(capsys, [str(tmp_path), str(tmp_path / "empty.csv"),
                                   "--out", str(tmp_path / "p.csv")])
    assert "lists no image paths" in err
    err = one_line_exit_2(capsys, [str(tmp_path), str(tmp_path / "missing.png"),
                                   "--out", str(tmp_path / "p.csv")])
    assert "no such file or folder" in err


def test_model_folder_without_config(tmp_path, nih_mini, capsys):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model.safetensors").write_bytes(b"")
    err = one_line_exit_2(capsys, [str(tmp_path / "weights"), str(nih_mini / "images"),
                                   "--out", str(tmp_path / "p.csv")])
    assert "no config.json here" in err
    assert not (tmp_path / "p.csv").exists()
