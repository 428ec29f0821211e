"""Geometry as the study's code has it: non-square images keep their aspect, evaluation equals
the study's ``Resize(shorter) -> CenterCrop`` of the original, training crops come from the whole
image at the cache resolution, and the cache packs images of any size."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from data_files import grey_pattern, save_png
from PIL import Image
from torchvision import transforms as T

from explorer.data import DataConfig, XrayDataset, build_transform, load_data
from explorer.data.images import stored_size
from explorer.data.packed import PackedImages
from explorer.data.transforms import model_input, normalise
from explorer.spec import load_spec

# (height, width) of the originals: portrait, landscape, square, and one smaller than the eval
# resize (the study upsamples it at evaluation; a training cache keeps it as it is)
SHAPES = [(56, 40), (40, 60), (48, 48), (30, 24)]
MODES = ["L", "RGB", "RGBA", "L"]


@pytest.fixture
def csv_folder(tmp_path):
    root = tmp_path / "imgs"
    rows = []
    for k in range(24):
        h, w = SHAPES[k % 4]
        save_png(root / f"img{k:03d}.png", grey_pattern(k, shape=(h, w)), MODES[k % 4])
        split = "train" if k < 12 else ("val" if k < 18 else "test")
        rows.append(f"img{k:03d}.png,{k % 2},{split}")
    (root / "labels.csv").write_text("\n".join(["path,Mass,fold", *rows]) + "\n")
    return root


def _cfg(root, **kw) -> DataConfig:
    return DataConfig(source="csv", root=str(root), label_columns=["Mass"], split_column="fold",
                      **{"image_size": 28, "eval_crop_pct": 0.875, **kw})


def _study_eval(path, cfg: DataConfig) -> torch.Tensor:
    """lambert-x/medical_mae util/datasets.py build_transform(is_train=False) on the original as
    its dataset opens it (PIL, converted to RGB): Resize(int(size / crop_pct)), CenterCrop."""
    study = T.Compose([T.Resize(int(cfg.image_size / cfg.eval_crop_pct),
                                interpolation=T.InterpolationMode.BICUBIC),
                       T.CenterCrop(cfg.image_size), T.ToTensor(),
                       T.Normalize([cfg.mean] * 3, [cfg.std] * 3)])
    return study(Image.open(path).convert("RGB"))


def test_evaluation_equals_the_study_transform_on_the_original(csv_folder, tmp_path):
    cfg = _cfg(csv_folder)
    assert cfg.eval_size == 32   # int(28 / 0.875)
    b = load_data(cfg, cache_dir=tmp_path / "c")
    for split in (b.val, b.test):
        ds = XrayDataset(split, build_transform(cfg, train=False))
        for i, iid in enumerate(split.image_ids):
            want = _study_eval(csv_folder / iid, cfg)
            got = model_input(normalise(ds[i][0][None], cfg))[0]  # as the device does
            assert got.shape == want.shape == (3, 28, 28)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-5)   # pixel-identical


def test_cached_images_keep_their_aspect(csv_folder, tmp_path):
    cfg = _cfg(csv_folder, cache_size=40)
    b = load_data(cfg, cache_dir=tmp_path / "c")
    for split, size, upscale in ((b.train, 40, False), (b.val, 32, True), (b.test, 32, True)):
        for img, iid in zip(split.images, split.image_ids):
            original = Image.open(csv_folder / iid)
            w, h = stored_size(*original.size, size, upscale=upscale)
            assert img.shape == (h, w), iid
    # train: shorter side 40 at most, the small 24 x 30 original as it is (never upscaled)
    shapes = {tuple(s) for s in b.train.images.shapes}
    assert shapes == {(56, 40), (40, 60), (40, 40), (30, 24)}
    assert b.notes["cache_size"] == 40 and b.notes["eval_size"] == 32


def test_training_crops_come_from_the_whole_image(csv_folder, tmp_path):
    """A portrait original with a bright band along its top edge: the study's crops (timm's
    RandomResizedCrop on the whole picture) reach it; a squashed square would distort it and an
    eval-style centre crop would cut it off."""
    cfg = _cfg(csv_folder, cache_size=40)
    b = load_data(cfg, cache_dir=tmp_path / "c")
    i = int(np.flatnonzero((b.train.images.shapes == (56, 40)).all(axis=1))[0])
    img = np.array(b.train.images[i])
    img[:3] = 255
    pil = Image.fromarray(img, "L")
    assert not (np.asarray(T.CenterCrop(28)(T.Resize(32)(pil))) == 255).all(axis=1).any()
    tf = build_transform(cfg, train=True, crop_scale=(0.08, 1.0), hflip=False)
    torch.manual_seed(0)
    top = (255 / 255 - cfg.mean) / cfg.std
    reached = sum(bool((tf(pil)[0] > top - 0.05).all(dim=1).any()) for _ in range(60))
    assert reached > 0


def test_stored_size_equals_torchvision_resize():
    for w in range(9, 70, 7):
        for h in range(9, 70, 5):
            for s in (8, 16, 33):
                want = T.Resize(s)(Image.new("L", (w, h))).size
                assert stored_size(w, h, s, upscale=True) == want, (w, h, s)
                keep = stored_size(w, h, s, upscale=False)
                assert keep == ((w, h) if min(w, h) <= s else want)


def test_cache_size_below_the_eval_resize_is_refused_in_one_line(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: x\nrecipe: mae_vit_small_xray\nscale: cpu\n"
                    "data: {cache_size: 48}\n"
                    "search: {params: {pretrain.mask_ratio: {type: float, low: 0.5, high: 0.9}},"
                    " num_samples: 2}\n")
    from explorer.errors import SpecError
    with pytest.raises(SpecError) as e:
        load_spec(spec)
    assert "cache_size (48) is below the eval resize 64" in str(e.value)
    assert "\n" not in str(e.value)


def test_packed_images_index_pickle_and_dense_view(tmp_path):
    arrays = [np.full((h, w), k, np.uint8) for k, (h, w) in enumerate(SHAPES)]
    packed = PackedImages.from_arrays(arrays)
    assert len(packed) == 4 and packed.nbytes == sum(h * w for h, w in SHAPES)
    for a, b in zip(packed, arrays):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="different sizes"):
        np.asarray(packed)
    square = PackedImages.from_arrays([np.full((3, 3), k, np.uint8) for k in range(2)])
    assert np.asarray(square).shape == (2, 3, 3)
    again = pickle.loads(pickle.dumps(packed))
    np.testing.assert_array_equal(again[2], arrays[2])
