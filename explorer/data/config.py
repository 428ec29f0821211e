"""The ``data:`` section of a recipe."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from explorer.data.findings import CHEXPERT_FINDINGS
from explorer.schema import Strict as _Strict

SourceName = Literal["phantom", "chestxray14", "chexpert", "chestmnist", "csv"]
Uncertainty = Literal["ones", "zeros"]

# The study's CheXpert policy: uncertain (-1) counts as positive for Edema and Atelectasis.
CHEXPERT_UNCERTAINTY: dict[str, Uncertainty] = {
    "Atelectasis": "ones", "Cardiomegaly": "zeros", "Consolidation": "zeros", "Edema": "ones",
    "Pleural Effusion": "zeros",
}


class SplitSizes(_Strict):
    """Images per split. For ``phantom`` the number generated (``null``: 2000 / 400 / 600); for
    real sources an optional cap (a deterministic, patient-wise subsample), ``null`` meaning
    every image."""

    train: int | None = Field(default=None, ge=1)
    val: int | None = Field(default=None, ge=1)
    test: int | None = Field(default=None, ge=1)


class DataConfig(_Strict):
    source: SourceName = "phantom"
    root: str | None = None
    image_size: int = Field(default=224, ge=8, description="model input size in pixels")
    eval_crop_pct: float = Field(
        default=0.875, gt=0, le=1,
        description="eval: resize the shorter side to image_size / crop_pct, centre-crop "
        "image_size (study: 256 -> 224)",
    )
    cache_size: int | None = Field(
        default=None, ge=8,
        description="training images are cached with their shorter side at most this many "
        "pixels (smaller originals as they are), so random crops keep the originals' detail; "
        "null: the eval resize size. Val and test are always cached at the eval resize",
    )
    split_seed: int = 0
    val_fraction: float = Field(default=0.13, gt=0, lt=1,
                                description="share of train_val patients carved out for validation")
    images: SplitSizes = Field(default_factory=SplitSizes)
    mean: float = 0.5056
    std: float = Field(default=0.252, gt=0)
    loader_workers: int | None = Field(
        default=None, ge=0, le=256,
        description="data-loading processes per training worker (null: chosen from "
        "resources, see explorer.train.inputs)")
    allow_outside_root: bool = Field(
        default=False, description="csv and chexpert: accept label-file paths that lead outside "
        "root (absolute, or through ..); off, such a path is refused as a likely mistake",
    )
    max_bad_fraction: float = Field(
        default=0.05, ge=0, le=1,
        description="unreadable image files are skipped and listed; above this share the run stops",
    )

    # --- phantom ---
    phantom_strength: float = Field(
        default=1.0, gt=0, le=100,
        description="phantom only: contrast of the finding traces (1 = default)"
    )
    # --- chexpert ---
    uncertainty: dict[str, Uncertainty] = Field(
        default_factory=lambda: dict(CHEXPERT_UNCERTAINTY),
        description="chexpert only: uncertain (-1) label -> 1 (ones) or 0 (zeros), per finding; "
        "findings left out keep the study's policy",
    )
    frontal_only: bool = Field(default=True, description="chexpert only: drop lateral views")
    # --- chestmnist ---
    chestmnist_size: Literal[28, 64, 128, 224] | None = Field(
        default=None, description="chestmnist only: which chestmnist*.npz of a folder to use "
        "(null: the smallest one at least cache_size wide, else the largest)",
    )
    # --- csv ---
    csv_file: str | None = Field(
        default=None, description="csv only: label file, relative to root (null: the only *.csv)"
    )
    path_column: str = Field(default="path", description="csv only: image path, relative to root")
    label_columns: list[str] | None = Field(
        default=None, description="csv only: one 0/1 column per finding (order = findings order)"
    )
    labels_column: str | None = Field(
        default=None, description="csv only: one column of '|'-separated finding names"
    )
    findings: list[str] | None = Field(
        default=None, description="csv with labels_column: the finding names (null: ChestX-ray14's)"
    )
    patient_column: str | None = Field(
        default=None, description="csv only: patient id (null: every image is its own patient)"
    )
    split_column: str | None = Field(
        default=None, description="csv only: train/val/test per row (null: split by patients)"
    )
    test_fraction: float = Field(
        default=0.2, gt=0, lt=1,
        description="csv without split_column: share of patients carved out for test",
    )

    @property
    def eval_size(self) -> int:
        """The evaluation resize (shorter side) before the centre crop: ``int(image_size /
        crop_pct)`` as the study's and timm's eval transforms compute it (256 for 224)."""
        return math.floor(self.image_size / self.eval_crop_pct)

    @property
    def train_cache_size(self) -> int:
        """The shorter side (at most) of the cached training images."""
        return self.cache_size or self.eval_size

    @model_validator(mode="after")
    def _cache_holds_the_eval_size(self):
        if self.cache_size is not None and self.cache_size < self.eval_size:
            raise ValueError(
                f"cache_size ({self.cache_size}) is below the eval resize {self.eval_size} "
                f"(image_size / eval_crop_pct): training crops would see fewer pixels than "
                f"evaluation; raise data.cache_size or set it to null")
        return self

    @field_validator("uncertainty")
    @classmethod
    def _known_uncertainty(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(CHEXPERT_FINDINGS))
        if unknown:
            raise ValueError(f"uncertainty: unknown findings {unknown}; "
                             f"valid: {list(CHEXPERT_FINDINGS)}")
        return {**CHEXPERT_UNCERTAINTY, **v}

    @model_validator(mode="after")
    def _one_label_layout(self):
        if self.label_columns is not None and self.labels_column is not None:
            raise ValueError("set either label_columns (0/1 columns) or labels_column "
                             "('|'-separated names), not both")
        return self

    @field_validator("root")
    @classmethod
    def _expand(cls, v: str | None) -> str | None:
        return v if v is None else str(v)


#: Fields that decide how pixels are stored and normalised: a pooled source always takes them
#: from the recipe's ``data`` section, so every pooled image is cached and fed like the others.
GEOMETRY_FIELDS = ("image_size", "eval_crop_pct", "cache_size", "mean", "std", "loader_workers")
PoolSplit = Literal["train", "val", "test"]
#: What a ``folder`` entry takes besides source, root and splits.
FOLDER_OPTIONS = ("images", "split_seed")


class PoolSourceConfig(BaseModel):
    """One entry of ``pretrain.data``: a source whose images (labels ignored) join the
    pre-training pool.

    Any ``data`` source works, with any of its ``data`` options (``csv_file``, ``frontal_only``,
    ``images`` caps...), plus ``folder``: every image file under ``root`` (recursively),
    unlabelled, each its own patient. An entry of the fine-tuning data's own source starts from
    the recipe's ``data`` section (same root, split seed, caps), so ``{source: chestxray14}``
    means "NIH's train split, as fine-tuning splits it"; other sources start from the defaults.
    Geometry (``GEOMETRY_FIELDS``) always comes from the recipe's ``data``.

    The options are kept exactly as written (``extra="allow"``, checked against ``DataConfig``
    here), so a recipe dumped and validated again still knows which ones the user set.
    """

    model_config = ConfigDict(extra="allow")

    source: Literal[SourceName, "folder"]  # type: ignore[valid-type]
    root: str | None = None
    splits: list[PoolSplit] = Field(
        default_factory=lambda: ["train"],
        description="which of the source's splits to pool (folder: ignored, every image)")

    @model_validator(mode="after")
    def _options_fit_the_source(self):
        options = dict(self.model_extra or {})
        geometry = sorted(set(options) & set(GEOMETRY_FIELDS))
        if geometry:
            raise ValueError(f"{geometry[0]} is set by the recipe's data section for every "
                             f"pooled source (pooled images are cached and normalised alike): "
                             f"remove it here")
        if not self.splits:
            raise ValueError("splits is empty: pool at least one of train, val, test")
        if self.source == "folder":
            unknown = sorted(set(options) - set(FOLDER_OPTIONS))
            if unknown:
                raise ValueError(f"'{unknown[0]}' is not an option of a folder source "
                                 f"(options: {', '.join(FOLDER_OPTIONS)})")
            options.pop("source", None)
            DataConfig.model_validate({k: v for k, v in options.items()})
        else:
            DataConfig.model_validate({**options, "source": self.source, "root": self.root})
        return self

    @property
    def options(self) -> dict:
        """The ``data`` options written for this entry (besides source, root and splits)."""
        return dict(self.model_extra or {})
