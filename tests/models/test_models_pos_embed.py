"""The fixed 2-D sin-cos position embedding."""

import math

import pytest
import torch

from explorer.models import sincos_pos_embed_2d


def test_shape_and_class_position_is_zero():
    emb = sincos_pos_embed_2d(64, 14)
    assert emb.shape == (1 + 14 * 14, 64) and emb.dtype == torch.float32
    assert torch.equal(emb[0], torch.zeros(64))
    assert sincos_pos_embed_2d(64, (3, 5), cls_token=False).shape == (15, 64)


def test_values_follow_the_formula():
    dim, grid = 16, 4
    emb = sincos_pos_embed_2d(dim, grid, cls_token=False)
    q = dim // 4
    for row, col in [(0, 0), (1, 3), (3, 2)]:
        vec = emb[row * grid + col]  # row-major, like PatchEmbed's flatten
        for k in range(q):
            w = 10000 ** (-k / q)
            assert vec[k].item() == pytest.approx(math.sin(col * w), abs=1e-6)
            assert vec[q + k].item() == pytest.approx(math.cos(col * w), abs=1e-6)
            assert vec[2 * q + k].item() == pytest.approx(math.sin(row * w), abs=1e-6)
            assert vec[3 * q + k].item() == pytest.approx(math.cos(row * w), abs=1e-6)


def test_each_half_depends_on_one_axis_and_positions_are_distinct():
    emb = sincos_pos_embed_2d(32, (3, 4), cls_token=False).reshape(3, 4, 32)
    assert torch.equal(emb[0, :, :16], emb[2, :, :16])  # first half: column only
    assert torch.equal(emb[:, 0, 16:], emb[:, 3, 16:])  # second half: row only
    flat = emb.reshape(12, 32)
    assert torch.cdist(flat, flat).add(torch.eye(12)).min() > 0.1


def test_rejects_width_not_divisible_by_four():
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_pos_embed_2d(30, 4)
