"""The typed recipe: everything one trial needs, from data to resources.

A recipe is plain data (``recipes/*.yaml``) validated here. Scales (``smoke``, ``cpu``,
``paper``) are overlays on it (see ``explorer.spec.recipes``); searched parameters are dotted paths
into it (``pretrain.mask_ratio``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from explorer.data.config import DataConfig, PoolSourceConfig
from explorer.names import ARCHS, Family, family_of
from explorer.schema import Strict


def _check_crop_scale(v: tuple[float, float]) -> tuple[float, float]:
    lo, hi = v
    if not (0 < lo <= hi <= 1):
        raise ValueError(f"crop scale must satisfy 0 < low <= high <= 1, got ({lo}, {hi})")
    return v


class ModelConfig(Strict):
    arch: Literal[tuple(ARCHS)] = "vit_small"  # type: ignore[valid-type]
    patch_size: int = Field(default=16, ge=1)
    global_pool: Literal["avg", "token"] = "avg"

    @property
    def family(self) -> Family:
        return family_of(self.arch)


class _Optim(Strict):
    epochs: int = Field(ge=1)
    warmup_epochs: int = Field(ge=0)
    base_lr: float = Field(gt=0, description="lr = base_lr x effective batch / 256")
    min_lr: float = Field(default=0.0, ge=0)
    batch_size: int = Field(ge=1, description="images per worker per step")
    effective_batch: int = Field(ge=1, description="images per optimizer step, all workers")
    batch_policy: Literal["accumulate", "scale_lr"] = Field(
        default="accumulate",
        description="accumulate: reach effective_batch by gradient accumulation; "
        "scale_lr: step every batch and scale the lr by the real batch instead",
    )
    weight_decay: float = Field(default=0.05, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"

    @model_validator(mode="after")
    def _warmup_fits(self):
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) exceeds epochs ({self.epochs})")
        return self


class MocoConfig(Strict):
    """MoCo v2 (Chen et al. 2020) for CNNs: the values of its ImageNet recipe, with colour
    jitter reduced to what a grey X-ray has (brightness and contrast; no saturation, hue or
    grey-scale conversion)."""

    queue_size: int = Field(default=65536, ge=1, description="negative keys kept (the queue)")
    momentum: float = Field(default=0.999, ge=0, lt=1, description="key encoder EMA momentum")
    temperature: float = Field(default=0.2, gt=0)
    proj_dim: int = Field(default=128, ge=1, description="output of the MLP projection head")
    hidden_dim: int | None = Field(default=None, ge=1,
                                   description="MLP hidden width (null: the backbone's width)")
    sgd_momentum: float = Field(default=0.9, ge=0, lt=1)
    jitter_prob: float = Field(default=0.8, ge=0, le=1)
    brightness: float = Field(default=0.4, ge=0)
    contrast: float = Field(default=0.4, ge=0)
    blur_prob: float = Field(default=0.5, ge=0, le=1)
    blur_sigma: tuple[float, float] = Field(
        default=(0.1, 2.0), description="Gaussian blur sigma range at 224 px (scaled with "
        "data.image_size, so the blur covers the same share of the image at every scale)")
    key_splits: int = Field(
        default=2, ge=1, description="the key batch is shuffled and encoded in this many "
        "parts, so batch-norm statistics cannot tell a query's key apart (MoCo's shuffle BN)")


class PretrainConfig(_Optim):
    enabled: bool = True
    method: Literal["mae", "mocov2"] = Field(
        default="mae", description="mae: ViTs (masked autoencoder); mocov2: CNNs (MoCo v2)")
    data: list[PoolSourceConfig] | None = Field(
        default=None, description="pre-train on these sources, pooled, labels ignored "
        "(null: the fine-tuning data's train split); validation/test images and patients of "
        "the fine-tuning data are left out")
    init_from: str | None = Field(
        default=None, description="start pre-training from these weights (continued "
        "pre-training): a weights file, or a named start such as imagenet / imagenet_mae")
    seed: int | None = Field(
        default=None, description="pre-training seed (null: the recipe's seed); baselines "
        "of several seeds share one encoder")
    from_checkpoint: str | None = Field(
        default=None, description="skip pre-training and fine-tune from these weights: a "
        "file, or a named start such as imagenet"
    )
    epochs: int = 800
    warmup_epochs: int = 40
    base_lr: float = 1.5e-4
    batch_size: int = 256
    effective_batch: int = 2048
    betas: tuple[float, float] = (0.9, 0.95)
    mask_ratio: float = 0.90
    crop_scale: tuple[float, float] = (0.5, 1.0)
    hflip: bool = True
    decoder_dim: int = Field(default=512, ge=1)
    decoder_depth: int = Field(default=2, ge=1)
    decoder_heads: int = Field(default=16, ge=1)
    norm_pix_loss: bool = False
    moco: MocoConfig = Field(default_factory=MocoConfig)

    @field_validator("mask_ratio")
    @classmethod
    def _mask(cls, v: float) -> float:
        if not 0 <= v < 1:
            raise ValueError(f"mask_ratio must be in [0, 1), got {v}")
        return v

    @field_validator("crop_scale")
    @classmethod
    def _crop(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _check_crop_scale(v)


class FinetuneConfig(_Optim):
    epochs: int = 75
    warmup_epochs: int = 5
    base_lr: float = 2.5e-4
    min_lr: float = 1e-5
    batch_size: int = 128
    effective_batch: int = 1024
    layer_decay: float | None = Field(default=0.55, gt=0, le=1)
    drop_path: float = Field(default=0.2, ge=0, lt=1)
    randaug_magnitude: int | None = Field(
        default=6, ge=0, le=30, description="RandAugment magnitude; null turns RandAugment off"
    )
    randaug_ops: int = Field(default=2, ge=1)
    randaug_mstd: float = Field(default=0.5, ge=0)
    mix: Literal["none", "mixup", "cutmix", "both"] = "none"
    mixup_alpha: float = Field(default=0.8, gt=0)
    cutmix_alpha: float = Field(default=1.0, gt=0)
    crop_scale: tuple[float, float] = (0.08, 1.0)
    hflip: bool = True
    random_erasing: float = Field(default=0.0, ge=0, le=1)
    head_init_std: float = Field(default=2e-5, gt=0)
    weights: str | None = Field(
        default=None, description="CNN baselines: start from this timm state dict / "
        "safetensors, or from a named start: imagenet (timm's ImageNet weights)"
    )

    @field_validator("crop_scale")
    @classmethod
    def _crop(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _check_crop_scale(v)

    @property
    def rand_augment(self) -> str | None:
        """The timm RandAugment string (``rand-m6-mstd0.5-inc1`` in the study), or None."""
        if self.randaug_magnitude is None:
            return None
        n = f"-n{self.randaug_ops}" if self.randaug_ops != 2 else ""
        return f"rand-m{self.randaug_magnitude}{n}-mstd{self.randaug_mstd:g}-inc1"


class ResourcesConfig(Strict):
    workers: int = Field(default=1, ge=1, description="data-parallel workers per trial")
    cpus_per_worker: float = Field(default=1, gt=0)
    gpus_per_worker: float = Field(default=0, ge=0)
    trainer: Literal["auto", "inline", "torch_trainer"] = Field(
        default="auto",
        description="inline: train inside the Tune trial (1 worker, no Train start-up cost); "
        "torch_trainer: a Ray Train TorchTrainer with DDP workers; auto: inline for 1 worker",
    )
    amp: Literal["auto", "off"] = Field(default="auto", description="bf16 autocast on CUDA only")
    max_failures: int = Field(default=2, ge=0,
                              description="worker restarts from the last checkpoint")
    compile: bool = Field(default=False,
                          description="torch.compile the training model (on an H200: 1.10x MAE, "
                          "1.40x ViT fine-tuning, 0.77x DenseNet-121; tens of seconds to compile)")

    @property
    def mode(self) -> Literal["inline", "torch_trainer"]:
        if self.trainer != "auto":
            return self.trainer
        return "inline" if self.workers == 1 else "torch_trainer"


class CheckpointConfig(Strict):
    """How often a run's resume state (weights and optimizer state) is written: when either
    threshold is reached since the last one. A resumed run repeats at most that much work."""

    every_epochs: int | None = Field(default=1, ge=1)
    every_minutes: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_threshold(self):
        if self.every_epochs is None and self.every_minutes is None:
            raise ValueError("set every_epochs or every_minutes (or both): without either, a "
                             "run could never be resumed")
        return self


class Recipe(Strict):
    name: str
    description: str = ""
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)

    @model_validator(mode="after")
    def _consistent(self):
        p = self.pretrain
        trains = p.enabled and not p.from_checkpoint
        if self.model.family == "cnn" and trains and p.method == "mae":
            raise ValueError("CNN recipes cannot be MAE-pre-trained: set pretrain.method: "
                             "mocov2, or pretrain.enabled: false")
        if self.model.family == "vit" and trains and p.method == "mocov2":
            raise ValueError("MoCo v2 pre-training is for CNN recipes: ViTs pre-train with "
                             "pretrain.method: mae")
        if self.model.family == "cnn" and trains and self.finetune.weights:
            raise ValueError(f"finetune.weights ({self.finetune.weights}) would replace the "
                             f"MoCo v2 encoder: to start MoCo from those weights set "
                             f"pretrain.init_from instead")
        if self.model.family == "cnn" and p.from_checkpoint:
            raise ValueError(f"pretrain.from_checkpoint ({p.from_checkpoint}) is for ViT "
                             f"recipes: a CNN starts from finetune.weights")
        if self.model.family == "vit" and self.finetune.weights:
            raise ValueError(f"finetune.weights ({self.finetune.weights}) is for CNN recipes: a "
                             "ViT starts from pretrain.from_checkpoint; for the DenseNet baseline "
                             "use baselines: [{recipe: densenet121_baseline, overrides: "
                             "{finetune: {weights: PATH}}}]")
        return self

    @property
    def uses_mae_pretraining(self) -> bool:
        return (self.model.family == "vit" and self.pretrain.enabled
                and self.pretrain.from_checkpoint is None)

    @property
    def uses_moco_pretraining(self) -> bool:
        return (self.model.family == "cnn" and self.pretrain.enabled
                and self.pretrain.method == "mocov2")

    @property
    def pretrains(self) -> bool:
        """Whether a trial of this recipe pre-trains (or reuses) an encoder of its own."""
        return self.uses_mae_pretraining or self.uses_moco_pretraining

    @property
    def pretrain_seed(self) -> int:
        return self.seed if self.pretrain.seed is None else self.pretrain.seed
