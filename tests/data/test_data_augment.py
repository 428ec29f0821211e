"""RandAugment never crashes: every op, at the edges of every magnitude the spec allows, on real
X-ray images."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image
from timm.data.auto_augment import RandAugment

from explorer.data import DataConfig, build_transform
from explorer.data.images import to_grey
from explorer.spec.config import FinetuneConfig

# The schema allows magnitudes 0..30 and any mstd >= 0 (> 100: timm samples uniformly);
# the search spaces offer 3, 6, 9, 12 with the study's mstd 0.5. timm clips draws to [0, 10].
MAGNITUDES = [0, 3, 6, 9, 10, 12, 30]
STDS = [0.0, 0.5, 1.0, 5.0, 101.0]
FIELD = FinetuneConfig.model_fields["randaug_magnitude"]


def test_magnitudes_cover_the_schema_range():
    bounds = {type(m).__name__: getattr(m, name) for m in FIELD.metadata
              for name in ("ge", "le") if hasattr(m, name)}
    assert bounds == {"Ge": 0, "Le": 30}, "update MAGNITUDES to the schema's new range"
    assert min(MAGNITUDES) == 0 and max(MAGNITUDES) == 30


def _real_images(nih_mini, n: int = 3) -> list[Image.Image]:
    files = sorted(nih_mini.glob("images/*.png"))[:n]
    return [to_grey(Image.open(f)) for f in files]


def _rand_augment(m: int, mstd: float, ops: int = 2) -> RandAugment:
    cfg = FinetuneConfig(randaug_magnitude=m, randaug_mstd=mstd, randaug_ops=ops)
    tf = build_transform(DataConfig(image_size=32, eval_crop_pct=1.0), train=True,
                         rand_augment=cfg.rand_augment)
    found = [t for t in tf.transforms if isinstance(t, RandAugment)]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("mstd", STDS)
@pytest.mark.parametrize("m", MAGNITUDES)
def test_every_op_accepts_every_magnitude(nih_mini, m, mstd):
    random.seed(m * 1000 + int(mstd * 10))
    images = _real_images(nih_mini)
    ra = _rand_augment(m, mstd)
    assert len(ra.ops) == 15   # timm's increasing set: every op is exercised below
    for op in ra.ops:
        op.prob = 1.0          # apply on every call (timm's default applies half of them)
        for i in range(20):
            out = op(images[i % len(images)])
            assert out.mode == "L" and out.size == images[0].size


def test_the_top_edge_that_crashed_now_keeps_one_bit(nih_mini):
    """m10 with no noise hits timm's top magnitude on every draw: posterize used to ask Pillow
    for 0 bits. Capped, it keeps 1 bit: the strongest setting Pillow accepts."""
    img = _real_images(nih_mini, 1)[0]
    (poster,) = [op for op in _rand_augment(10, 0.0).ops if op.name == "PosterizeIncreasing"]
    poster.prob = 1.0
    assert set(np.unique(np.asarray(poster(img)))) <= {0, 128}


def test_the_whole_pipeline_survives_the_searched_extremes(nih_mini):
    images = _real_images(nih_mini)
    random.seed(0)
    for m, mstd in [(9, 0.5), (12, 0.5), (30, 0.0), (0, 101.0)]:
        tf = build_transform(DataConfig(image_size=32, eval_crop_pct=1.0), train=True,
                             rand_augment=FinetuneConfig(randaug_magnitude=m,
                                                         randaug_mstd=mstd).rand_augment)
        for i in range(60):
            assert tf(images[i % len(images)]).shape == (1, 32, 32)  # uint8 grey
