"""Transforms (timm), XrayDataset over a cached split, and the device-side normalisation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.data import DataConfig, XrayDataset, build_transform, load_data
from explorer.data.packed import PackedImages
from explorer.data.transforms import device_batches, model_input


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    cfg = DataConfig(image_size=32, images={"train": 24, "val": 8, "test": 8})
    return cfg, load_data(cfg, cache_dir=tmp_path_factory.mktemp("cache"))


def test_eval_transform_resizes_crops_and_the_device_normalises_and_replicates(bundle):
    cfg, b = bundle
    # int(32 / 0.875) = 36, as the study's (and timm's) eval transform computes the resize
    assert cfg.eval_size == 36 and (b.val.images.shapes == 36).all()
    tf = build_transform(cfg, train=False)
    img = Image.fromarray(np.asarray(b.val.images[0]), "L")
    x = tf(img)
    assert x.shape == (1, 32, 32) and x.dtype == torch.uint8   # 1 byte per pixel to the loader
    off = (36 - 32) // 2   # the centre crop of the cached image
    crop = np.asarray(b.val.images[0])[off:off + 32, off:off + 32]
    np.testing.assert_array_equal(x[0].numpy(), crop)
    assert torch.equal(tf(img), x)   # deterministic
    batch = [(x[None], torch.zeros(1, 14))]
    (on_device, _), = list(device_batches(batch, cfg, torch.device("cpu")))
    inp = model_input(on_device)
    assert inp.shape == (1, 3, 32, 32) and inp.dtype == torch.float32
    assert torch.equal(inp[0, 0], inp[0, 1]) and torch.equal(inp[0, 1], inp[0, 2])
    np.testing.assert_allclose(inp[0, 0].numpy(), (crop / 255.0 - cfg.mean) / cfg.std, atol=1e-5)
    assert model_input(on_device, channels_last=True).is_contiguous(
        memory_format=torch.channels_last)


def test_train_transform_is_random_and_uses_timm(bundle):
    cfg, b = bundle
    tf = build_transform(cfg, train=True, crop_scale=(0.5, 1.0),
                         rand_augment="rand-m6-mstd0.5-inc1")
    names = [type(t).__name__ for t in tf.transforms]
    assert names[:3] == ["RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "RandAugment"]
    img = Image.fromarray(np.asarray(b.train.images[0]), "L")
    torch.manual_seed(0)
    outs = [tf(img) for _ in range(4)]
    assert all(o.shape == (1, 32, 32) and o.dtype == torch.uint8 for o in outs)
    assert not torch.equal(outs[0], outs[1])
    plain = build_transform(cfg, train=True, hflip=False)
    assert "RandomHorizontalFlip" not in [type(t).__name__ for t in plain.transforms]


def test_dataset_items_and_loader(bundle):
    cfg, b = bundle
    ds = XrayDataset(b.train, build_transform(cfg, train=True, rand_augment="rand-m6-mstd0.5-inc1"))
    assert len(ds) == 24
    x, y = ds[3]
    assert x.shape == (1, 32, 32) and y.dtype == torch.float32 and y.shape == (14,)
    assert torch.equal(y, torch.from_numpy(np.asarray(b.train.labels[3])))
    xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert xb.shape == (8, 1, 32, 32) and xb.dtype == torch.uint8 and yb.shape == (8, 14)


def test_random_erasing_runs_on_the_device_on_normalised_pixels(bundle):
    cfg, b = bundle
    ds = XrayDataset(b.train, build_transform(cfg, train=False))
    loader = torch.utils.data.DataLoader(ds, batch_size=8)
    plain = next(iter(device_batches(loader, cfg, torch.device("cpu"))))[0]
    torch.manual_seed(0)
    erased = next(iter(device_batches(loader, cfg, torch.device("cpu"), random_erasing=1.0)))[0]
    changed = (plain != erased).flatten(1).float().mean(1)
    assert (changed > 0).all()   # probability 1: every image has an erased box ...
    assert (changed < 1).all()   # ... and keeps the rest
    assert erased.std() > 0 and not torch.isnan(erased).any()


def test_dataset_pickles_by_cache_path(bundle):
    cfg, b = bundle
    ds = XrayDataset(b.val, build_transform(cfg, train=False))
    blob = pickle.dumps(ds)
    assert len(blob) < b.val.images.nbytes   # pixels stay in the cache file
    back = pickle.loads(blob)
    assert isinstance(back.split.images, PackedImages)
    assert isinstance(back.split.images.pixels, np.memmap)
    assert torch.equal(back[2][0], ds[2][0]) and torch.equal(back[2][1], ds[2][1])
