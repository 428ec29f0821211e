"""reconstruction_panels: shapes, dtypes, the pasting rule, norm_pix un-normalisation, seeds."""

import numpy as np
import pytest
import torch

from explorer.models import create_mae, reconstruction_panels

MEAN, STD, IMG, PATCH = 0.5056, 0.252, 32, 8


def _mae(norm_pix_loss=False):
    torch.manual_seed(0)
    return create_mae("vit_nano", img_size=IMG, patch_size=PATCH, decoder_dim=32,
                      decoder_depth=1, decoder_heads=4, norm_pix_loss=norm_pix_loss)


def _imgs(b=3):
    grey = torch.rand(b, 1, IMG, IMG, generator=torch.Generator().manual_seed(4))
    return ((grey - MEAN) / STD).expand(-1, 3, -1, -1).contiguous()  # grey replicated to 3


def _hidden(panel) -> np.ndarray:
    """[grid, grid] bool: patches drawn black in the masked panel."""
    g = IMG // PATCH
    blocks = panel["masked"].reshape(g, PATCH, g, PATCH).transpose(0, 2, 1, 3)
    return (blocks == 0).all(axis=(2, 3))


def test_shapes_dtypes_and_the_pasting_rule():
    imgs = _imgs()
    panels = reconstruction_panels(_mae(), imgs, mask_ratio=0.75, mean=MEAN, std=STD)
    assert len(panels) == 3
    for i, panel in enumerate(panels):
        assert set(panel) == {"masked", "reconstruction", "original"}
        for arr in panel.values():
            assert arr.shape == (IMG, IMG) and arr.dtype == np.uint8
        expected = np.round((imgs[i, 0] * STD + MEAN).clamp(0, 1).numpy() * 255)
        assert np.abs(panel["original"].astype(int) - expected).max() <= 1
        hidden = _hidden(panel)
        assert hidden.sum() == 12  # 16 patches, 4 visible
        pix = np.kron(hidden, np.ones((PATCH, PATCH), dtype=bool))
        assert np.array_equal(panel["masked"][~pix], panel["original"][~pix])
        assert np.array_equal(panel["reconstruction"][~pix], panel["original"][~pix])
        assert not np.array_equal(panel["reconstruction"][pix], panel["original"][pix])


def test_norm_pix_predictions_are_unnormalised_per_patch():
    mae, imgs = _mae(norm_pix_loss=True), _imgs(1)
    panel = reconstruction_panels(mae, imgs, mask_ratio=0.75, mean=MEAN, std=STD, seed=3)[0]
    noise = torch.rand(1, mae.num_patches, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        _, pred, mask = mae.eval()(imgs, 0.75, noise=noise)
    _, patch_mean, patch_std = mae.patch_target(imgs)
    recon = mae.unpatchify(pred * patch_std + patch_mean)[0].mean(0)
    expected = np.round((recon * STD + MEAN).clamp(0, 1).numpy() * 255)
    pix = np.kron(mask[0].reshape(4, 4).bool().numpy(), np.ones((PATCH, PATCH), dtype=bool))
    assert np.abs(panel["reconstruction"][pix].astype(int) - expected[pix]).max() <= 1
    # without the per-patch un-normalisation the picture would be different
    raw = np.round((mae.unpatchify(pred)[0].mean(0) * STD + MEAN).clamp(0, 1).numpy() * 255)
    assert np.abs(panel["reconstruction"][pix].astype(int) - raw[pix]).max() > 5


def test_deterministic_by_seed_and_training_flag_restored():
    mae, imgs = _mae(), _imgs(2)
    mae.train()
    a = reconstruction_panels(mae, imgs, mask_ratio=0.5, mean=MEAN, std=STD, seed=7)
    torch.rand(10)  # the global RNG moving on must not matter
    b = reconstruction_panels(mae, imgs, mask_ratio=0.5, mean=MEAN, std=STD, seed=7)
    c = reconstruction_panels(mae, imgs, mask_ratio=0.5, mean=MEAN, std=STD, seed=8)
    assert mae.training
    for pa, pb in zip(a, b):
        for key in pa:
            assert np.array_equal(pa[key], pb[key])
    assert any(not np.array_equal(_hidden(pa), _hidden(pc)) for pa, pc in zip(a, c))


@pytest.mark.parametrize("ratio", [0.0, 0.9])
def test_extreme_ratios(ratio):
    panels = reconstruction_panels(_mae(), _imgs(1), mask_ratio=ratio, mean=MEAN, std=STD)
    hidden = _hidden(panels[0]).sum()
    assert hidden == 16 - int(16 * (1 - ratio))   # MAE truncates: 1 of 16 visible at 0.9
