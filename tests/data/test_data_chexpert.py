"""CheXpert source on a small CheXpert-v1.0-small folder written by the test."""

from __future__ import annotations

import numpy as np
import pytest
from data_files import assert_patient_disjoint, grey_pattern
from PIL import Image

from explorer.data import CHEXPERT_FINDINGS, DataConfig, load_data
from explorer.data.transforms import model_input, normalise
from explorer.errors import DataError

HEADER = ("Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,"
          "Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,"
          "Pleural Effusion,Pleural Other,Fracture,Support Devices")
# Cardiomegaly, Edema, Consolidation, Atelectasis, Pleural Effusion as they sit in the CSV
VALUES = ["1.0,-1.0,,-1.0,0.0", "-1.0,1.0,-1.0,,1.0", ",,1.0,1.0,-1.0", "0.0,0.0,0.0,0.0,0.0"]


def _row(rel: str, view: str, v: str) -> str:
    card, edema, cons, atel, eff = v.split(",")
    return f"{rel},Female,60,{view},AP,,,{card},,,{edema},{cons},,{atel},,{eff},,,"


@pytest.fixture
def chexpert(tmp_path):
    data = tmp_path / "CheXpert-v1.0-small"
    for csv, split, patients in (("train.csv", "train", range(1, 13)),
                                 ("valid.csv", "valid", range(64541, 64545))):
        rows = [HEADER]
        for k, p in enumerate(patients):
            for study in (1, 2):
                rel = f"CheXpert-v1.0-small/{split}/patient{p:05d}/study{study}/view1_frontal.jpg"
                img = grey_pattern(p * 10 + study, shape=(48, 40))    # portrait, like CheXpert
                (data.parent / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img, "L").save(data.parent / rel, quality=95)
                rows.append(_row(rel, "Frontal", VALUES[(k + study) % 4]))
            lateral = f"CheXpert-v1.0-small/{split}/patient{p:05d}/study1/view2_lateral.jpg"
            Image.fromarray(grey_pattern(p), "L").save(data.parent / lateral)
            rows.append(_row(lateral, "Lateral", VALUES[0]))
        (data / csv).write_text("\n".join(rows) + "\n")
    return data


@pytest.mark.parametrize("level", ["folder", "parent"])
def test_frontal_views_uncertainty_policy_and_splits(chexpert, tmp_path, level):
    root = chexpert if level == "folder" else chexpert.parent
    b = load_data(DataConfig(source="chexpert", root=str(root), image_size=32,
                             eval_crop_pct=1.0), cache_dir=tmp_path / "cache")
    assert b.findings == CHEXPERT_FINDINGS
    assert len(b.train) + len(b.val) == 24 and len(b.test) == 8   # laterals dropped
    assert not any("lateral" in i for s in (b.train, b.val, b.test) for i in s.image_ids)
    assert_patient_disjoint(b)
    assert set(b.test.patient_ids) == {f"patient{p:05d}" for p in range(64541, 64545)}
    assert "valid.csv" in b.notes["split_rule"]
    # portrait 40 x 48 files keep their aspect: shorter side 32, longer int(32 * 48 / 40) = 38
    assert (b.train.images.shapes == (38, 32)).all()
    # patient00001 study1 carries VALUES[1]: Card -1, Edema 1, Cons -1, Atel blank, Eff 1
    split = b.train if "patient00001" in set(b.train.patient_ids) else b.val
    i = split.image_ids.tolist().index("train/patient00001/study1/view1_frontal.jpg")
    got = dict(zip(b.findings, split.labels[i].tolist()))
    assert got == {"Atelectasis": 0.0, "Cardiomegaly": 0.0, "Consolidation": 0.0, "Edema": 1.0,
                   "Pleural Effusion": 1.0}
    # study2 carries VALUES[2]: Card blank, Edema blank, Cons 1, Atel 1, Eff -1 (U-Zeros)
    j = split.image_ids.tolist().index("train/patient00001/study2/view1_frontal.jpg")
    assert split.labels[j].tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]


def test_uncertainty_policy_is_configurable(chexpert, tmp_path):
    cfg = DataConfig(source="chexpert", root=str(chexpert), image_size=32, eval_crop_pct=1.0,
                     uncertainty={"Cardiomegaly": "ones", "Edema": "zeros"})
    assert cfg.uncertainty["Atelectasis"] == "ones"   # unnamed findings keep the default
    default = DataConfig(**{**cfg.model_dump(), "uncertainty": {}})
    image = "train/patient00004/study1/view1_frontal.jpg"   # Card 1, Edema -1, Atel -1, Eff 0
    got = {}
    for name, c in (("default", default), ("custom", cfg)):
        b = load_data(c, cache_dir=tmp_path / "cache")
        split = b.train if "patient00004" in set(b.train.patient_ids) else b.val
        got[name] = split.labels[split.image_ids.tolist().index(image)].tolist()
    assert got["default"] == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert got["custom"] == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert b.notes["uncertainty"]["Edema"] == "U-Zeros"


def test_unknown_uncertainty_finding_is_a_config_error():
    with pytest.raises(ValueError, match="unknown findings"):
        DataConfig(source="chexpert", uncertainty={"Hernia": "ones"})


@pytest.mark.parametrize(("damage", "message"), [
    ("no_valid", "valid.csv is missing"),
    ("column", "has no column(s) ['Edema']"),
    ("values", "holds values other than"),
    ("no_csv", "no CheXpert train.csv"),
])
def test_bad_chexpert_input(chexpert, tmp_path, damage, message):
    if damage == "no_valid":
        (chexpert / "valid.csv").unlink()
    elif damage == "column":
        p = chexpert / "train.csv"
        p.write_text(p.read_text().replace(",Edema,", ",Oedema,", 1))
    elif damage == "values":
        p = chexpert / "train.csv"
        p.write_text(p.read_text().replace("-1.0", "2.0", 1))
    elif damage == "no_csv":
        (chexpert / "train.csv").unlink()
        (chexpert / "valid.csv").unlink()
    with pytest.raises(DataError) as e:
        load_data(DataConfig(source="chexpert", root=str(chexpert), image_size=32,
                             eval_crop_pct=1.0), cache_dir=tmp_path / "cache")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_jpeg_is_resized_whole(chexpert, tmp_path):
    b = load_data(DataConfig(source="chexpert", root=str(chexpert), image_size=20,
                             eval_crop_pct=1.0), cache_dir=tmp_path / "cache")
    img = b.test.images[0].astype(float)
    # the blob/gradient picture spans the whole frame: left dark, right bright
    assert img[:, :4].mean() + 40 < img[:, -4:].mean()
    assert np.isfinite(b.test.labels).all()


def test_portrait_jpegs_are_evaluated_as_the_study_does(chexpert, tmp_path):
    """Test images (valid.csv, 40 x 48 portrait JPEGs) through our cache and eval transform equal
    the study's eval transform on the original file: Resize(int(28 / 0.875) = 32) of the
    shorter side, CenterCrop(28), as lambert-x/medical_mae's build_transform(is_train=False)."""
    import torch
    from torchvision import transforms as T

    from explorer.data import XrayDataset, build_transform

    cfg = DataConfig(source="chexpert", root=str(chexpert), image_size=28, eval_crop_pct=0.875)
    b = load_data(cfg, cache_dir=tmp_path / "cache")
    assert (b.test.images.shapes == (38, 32)).all()   # 32 x int(32 * 48 / 40), not squashed
    study = T.Compose([T.Resize(32, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(28),
                       T.ToTensor(), T.Normalize([cfg.mean] * 3, [cfg.std] * 3)])
    ds = XrayDataset(b.test, build_transform(cfg, train=False))
    for i, iid in enumerate(b.test.image_ids):
        original = Image.open(chexpert / iid).convert("RGB")
        got = model_input(normalise(ds[i][0][None], cfg))[0]  # as the device does
        torch.testing.assert_close(got, study(original), rtol=0, atol=1e-5)
