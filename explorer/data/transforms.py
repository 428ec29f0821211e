"""Image transforms: timm's training pipeline and a resize + centre-crop for evaluation.

Geometry is the study's: evaluation resizes the shorter side to ``data.eval_size`` (256) and
centre-crops ``image_size`` (224), so a non-square image loses the ends of its longer side, as
in the study; training takes ``RandomResizedCrop`` from the whole image as cached (aspect kept,
shorter side up to ``data.cache_size``), never from a squashed square.

Augmentation runs on the single grey channel (three times less work than RGB for
RandAugment and crops, identical result for a grey image). The loader's tensor format is uint8
grey [1, H, W]: 50 KB per 224 px image instead of 602 KB of normalised float32 RGB, so a
loader worker converts and copies 12x fewer bytes and a batch fits a container's shared memory.
Conversion to float, normalisation, random erasing and the 3-channel view the study's models
expect happen on the training device (``device_batches``, ``model_input``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from timm.data.loader import PrefetchLoader
from timm.data.transforms import str_to_interp_mode
from timm.data.transforms_factory import transforms_imagenet_train
from torchvision import transforms as T

from explorer.data.augment import cap_unsafe_magnitudes
from explorer.data.config import DataConfig


def build_transform(data: DataConfig, *, train: bool, crop_scale=(0.08, 1.0), hflip=True,
                    rand_augment: str | None = None, interpolation: str = "bicubic"
                    ) -> Callable[[Image.Image], torch.Tensor]:
    """PIL grey image (any size and aspect) -> uint8 tensor [1, H, W] (not normalised).

    Args:
        data: gives ``image_size`` (H = W), ``eval_size``, ``mean`` and ``std``.
        train: RandomResizedCrop(``crop_scale``) + flip + RandAugment (timm); otherwise resize
            the shorter side to ``eval_size`` (a no-op on cached val/test images, stored at
            that size) and centre-crop ``image_size``.
        rand_augment: a timm RandAugment string such as ``"rand-m6-mstd0.5-inc1"`` (None: off).

    Random erasing works on normalised pixels, so it runs on the device
    (``device_batches(random_erasing=...)``).
    """
    if not train:
        return T.Compose([
            T.Resize(data.eval_size, interpolation=str_to_interp_mode(interpolation)),
            T.CenterCrop(data.image_size),
            T.PILToTensor(),
        ])
    # use_prefetcher: timm leaves normalisation and erasing to its PrefetchLoader (below) and
    # ends the pipeline with a uint8 tensor.
    tf = transforms_imagenet_train(
        img_size=data.image_size, scale=tuple(crop_scale), hflip=0.5 if hflip else 0.0,
        color_jitter=None,   # the study fine-tunes without colour jitter
        auto_augment=rand_augment, interpolation=interpolation, mean=(data.mean,),
        std=(data.std,), use_prefetcher=True)
    cap_unsafe_magnitudes(tf.transforms)
    return tf


def device_batches(loader, data: DataConfig, device: torch.device,
                   random_erasing: float = 0.0) -> PrefetchLoader:
    """uint8 grey batches -> normalised float32 [B, 1, H, W] on ``device`` (timm's
    PrefetchLoader: on CUDA the copy of batch k+1 overlaps the step on batch k), with timm's
    per-pixel RandomErasing there (the same draw for the 3 channels, as on a grey image)."""
    return PrefetchLoader(loader, mean=(data.mean,), std=(data.std,), channels=1, device=device,
                          re_prob=random_erasing, re_mode="pixel", re_count=1)


def normalise(x: torch.Tensor, data: DataConfig) -> torch.Tensor:
    """uint8 grey [B, 1, H, W] -> normalised float32, as ``device_batches`` does (a few images
    outside a loader: reconstruction panels)."""
    return (x.float() - data.mean * 255) / (data.std * 255)


def model_input(x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """Normalised grey [B, 1, H, W] -> the 3-channel input the models take. A view (the
    patch embedding reads it as is); a channels-last copy for CNNs, which run faster so."""
    x = x.expand(-1, 3, -1, -1)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
