"""Reconstruction panels for the report: what the MAE sees, what it fills in, the original."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from explorer.models.mae import MaskedAutoencoderViT

MASKED_VALUE = 0  # hidden patches are drawn black in the "masked" panel


@torch.no_grad()
def reconstruction_panels(mae: MaskedAutoencoderViT, imgs: Tensor, *, mask_ratio: float,
                          mean: float, std: float, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Mask, reconstruct and de-normalise a batch, as MAE's demo shows it.

    Args:
        mae: the model (evaluated in eval mode; its training flag is restored afterwards).
        imgs: [B, C, H, W] normalised with ``mean``/``std`` (one value for all channels).
        mask_ratio: fraction of patches hidden.
        seed: fixes which patches are hidden, independent of the global RNG.

    Returns:
        One dict per image with uint8 [H, W] arrays (channels averaged): "masked" (visible
        patches, hidden ones black), "reconstruction" (visible patches from the input, hidden
        ones from the prediction, un-normalised per patch when the model uses norm_pix_loss)
        and "original".
    """
    was_training = mae.training
    mae.eval()
    try:
        gen = torch.Generator().manual_seed(seed)
        noise = torch.rand(imgs.shape[0], mae.num_patches, generator=gen).to(imgs.device)
        _, pred, mask = mae(imgs, mask_ratio, noise=noise)
    finally:
        mae.train(was_training)
    pred = pred.float()
    patches = mae.patchify(imgs.float())
    if mae.norm_pix_loss:
        _, patch_mean, patch_std = mae.patch_target(imgs.float())
        pred = pred * patch_std + patch_mean
    hidden = mask[..., None].bool()
    recon = mae.unpatchify(torch.where(hidden, pred, patches))
    masked = mae.unpatchify(patches.masked_fill(hidden, float("nan")))
    return [
        {"masked": _to_uint8(m, mean, std), "reconstruction": _to_uint8(r, mean, std),
         "original": _to_uint8(o, mean, std)}
        for m, r, o in zip(masked, recon, imgs.float())
    ]


def _to_uint8(img: Tensor, mean: float, std: float) -> np.ndarray:
    """[C, H, W] normalised (NaN = hidden) -> uint8 [H, W] grey."""
    grey = (img.mean(dim=0) * std + mean).clamp(0, 1).mul(255).round()
    return grey.nan_to_num(MASKED_VALUE).to(torch.uint8).cpu().numpy()
