"""What ``load_data`` returns: three splits and the facts a report needs about them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from explorer.data.packed import PackedImages

SPLITS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)   # arrays: compare by identity, not element-wise
class Split:
    """One split, ready for ``XrayDataset``.

    images: N grey uint8 [H, W] images (``images[i]``), aspect kept, usually a memory-mapped
        ``PackedImages``: train with the shorter side at most ``DataConfig.train_cache_size``,
        val and test at ``DataConfig.eval_size``
    labels: float32 [N, C] in {0, 1}; image_ids, patient_ids: str [N]
    """

    name: str
    images: PackedImages
    labels: np.ndarray
    image_ids: np.ndarray
    patient_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def positives(self, findings: tuple[str, ...]) -> dict[str, int]:
        """Positive images per finding (a finding with 0 has no AUC on this split)."""
        counts = self.labels.sum(axis=0).astype(int) if len(self) else np.zeros(len(findings), int)
        return {f: int(n) for f, n in zip(findings, counts)}


@dataclass(frozen=True, eq=False)
class DataBundle:
    """train/val/test of one data source. ``test`` may be empty (N = 0)."""

    findings: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    fingerprint: str
    notes: dict = field(default_factory=dict)

    def split(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]
