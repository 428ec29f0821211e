"""Image transforms: timm's training pipeline and a resize + centre-crop for evaluation.

Geometry is the study's: evaluation resizes the shorter side to ``data.eval_size`` (256) and
centre-crops ``image_size`` (224), so a non-square image loses the ends of its longer side, as
in the study; training takes ``RandomResizedCrop`` from the whole image as cached (aspect kept,
shorter side up to ``data.cache_size``), never from a squashed square.

Augmentation runs on the single grey channel (three times less work than RGB for
RandAugment, crops and erasing, identical result for a grey image) and the tensor is
replicated to 3 channels at the very end, as the study's models expect.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from timm.data.transforms import str_to_interp_mode
from timm.data.transforms_factory import transforms_imagenet_train
from torchvision import transforms as T

from explorer.data.augment import cap_unsafe_magnitudes
from explorer.data.config import DataConfig


class ToThreeChannels(torch.nn.Module):
    """float [1, H, W] -> [3, H, W] (a view: no copy until the batch is collated)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(3, -1, -1) if x.shape[0] == 1 else x


def build_transform(data: DataConfig, *, train: bool, crop_scale=(0.08, 1.0), hflip=True,
                    rand_augment: str | None = None, random_erasing: float = 0.0,
                    interpolation: str = "bicubic") -> Callable[[Image.Image], torch.Tensor]:
    """PIL grey image (any size and aspect) -> normalised float tensor [3, H, W].

    Args:
        data: gives ``image_size`` (H = W), ``eval_size``, ``mean`` and ``std``.
        train: RandomResizedCrop(``crop_scale``) + flip + RandAugment + random erasing (timm);
            otherwise resize the shorter side to ``eval_size`` (a no-op on cached val/test
            images, stored at that size) and centre-crop ``image_size``.
        rand_augment: a timm RandAugment string such as ``"rand-m6-mstd0.5-inc1"`` (None: off).
        random_erasing: probability of timm's RandomErasing (0: off).
    """
    mean, std = (data.mean,), (data.std,)
    if not train:
        return T.Compose([
            T.Resize(data.eval_size, interpolation=str_to_interp_mode(interpolation)),
            T.CenterCrop(data.image_size),
            T.ToTensor(),
            T.Normalize(mean, std),
            ToThreeChannels(),
        ])
    timm_tf = transforms_imagenet_train(
        img_size=data.image_size, scale=tuple(crop_scale), hflip=0.5 if hflip else 0.0,
        color_jitter=None,   # the study fine-tunes without colour jitter
        auto_augment=rand_augment, interpolation=interpolation, mean=mean, std=std,
        re_prob=random_erasing, re_mode="pixel", re_count=1)
    cap_unsafe_magnitudes(timm_tf.transforms)
    return T.Compose([*timm_tf.transforms, ToThreeChannels()])
