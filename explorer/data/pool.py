"""The pre-training pool (``pretrain.data``): several sources pooled, labels ignored.

``plan_pool`` plans every entry (no pixels yet), applies the leakage guard and fingerprints
the result; ``PoolPlan.load`` then opens each entry's memory-mapped cache (building it the first
time) and returns one ``Split`` over all kept images. Nothing holds the pool's pixels: a
``PooledImages`` maps image ``i`` to (entry, row) and reads only that image from its cache
file. Per image the pool keeps an index and its id and patient strings (measured: about
0.5 KB an image while the pool opens, ``tests/data/test_data_pool.py``), so a 0.3M-image pool
costs about 150 MB of memory whatever the resolution, against 0.3 TB of pixels at 1024 px.

The leakage guard: no image or patient of the fine-tuning data's validation and test splits
may enter pre-training. An entry of the same source loses the held-out images (same image id)
and every other image of a held-out patient (where the source has patient ids); any file-based
entry loses files that are held-out files (same path), and a ``folder`` entry also loses files
whose path ends with a held-out image id (the NIH image names in a copied folder). Every
exclusion is counted by reason, for the dry run, the encoder's record and the report.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from explorer.data.bundle import Split
from explorer.data.cache import CACHE_VERSION, SplitPlan, load_or_build
from explorer.data.config import GEOMETRY_FIELDS, DataConfig, PoolSourceConfig
from explorer.data.folder import plan_folder
from explorer.data.packed import PackedImages
from explorer.errors import DataError

POOL_VERSION = 1   # bump when the guard or the pool's layout changes what a key means
REASONS = {
    "heldout_image": "a validation/test image of the fine-tuning data",
    "heldout_patient": "another image of a validation/test patient of the fine-tuning data",
    "heldout_file": "the same file as a validation/test image of the fine-tuning data",
}


@dataclass
class HeldOut:
    """The fine-tuning data's validation and test images: ids, patients and files."""

    source: str
    image_ids: set[str]
    patients: set[str]   # empty when the source has no patient ids (each image its own)
    paths: set[str]      # resolved file paths (empty for generated sources)

    @classmethod
    def of(cls, data: DataConfig) -> HeldOut:
        """Planned from the source itself (no pixels decoded), before unreadable files are
        skipped: a superset of what fine-tuning validates and tests on, so the guard errs on
        the safe side."""
        from explorer.data.loader import PLANNERS

        _, plans, _ = PLANNERS[data.source](data)
        ids, patients, paths = set(), set(), set()
        for name in ("val", "test"):
            plan = plans[name]
            ids.update(plan.image_ids.tolist())
            if (plan.patient_ids != plan.image_ids).any():
                patients.update(plan.patient_ids.tolist())
            paths.update(os.path.realpath(p) for p in plan.paths or ())
        return cls(data.source, ids, patients, paths)


@dataclass
class PoolEntry:
    """One ``pretrain.data`` entry, planned: its splits and what the guard took out."""

    index: int
    source: str
    root: str | None
    plans: list[SplitPlan]
    excluded: list[np.ndarray]                      # per plan: bool [N], True = left out
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def planned(self) -> int:
        return sum(len(p.image_ids) for p in self.plans)

    @property
    def kept(self) -> int:
        return self.planned - sum(int(e.sum()) for e in self.excluded)


def _where(i: int, source: str) -> str:
    return f"pretrain.data.{i} ({source})"


def _for_entry(msg: str, i: int) -> str:
    """A source's own message says ``data.root``; for a pooled entry the key to fix is
    ``pretrain.data.<i>.root`` (the form ``--set`` takes)."""
    return re.sub(r"\bdata\.(?=[a-z_])", f"pretrain.data.{i}.", msg)


def entry_config(data: DataConfig, entry: PoolSourceConfig) -> DataConfig:
    """The full ``data`` config an entry is planned with (not for ``folder`` entries)."""
    geometry = {k: getattr(data, k) for k in GEOMETRY_FIELDS}
    base = data.model_dump() if entry.source == data.source else {}
    root = entry.root if entry.root is not None else base.get("root")
    return DataConfig.model_validate({**base, **entry.options, "source": entry.source,
                                      "root": root, **geometry})


def _plan_entry(i: int, data: DataConfig, entry: PoolSourceConfig) -> tuple[str | None,
                                                                            list[SplitPlan]]:
    from explorer.data.loader import PLANNERS

    try:
        if entry.source == "folder":
            if entry.root is None:
                raise DataError("data.root is not set for source 'folder': set data.root")
            opts = DataConfig.model_validate({**entry.options, "source": "phantom"})
            root = Path(entry.root).expanduser().resolve()
            return str(root), [plan_folder(opts, root)]
        cfg = entry_config(data, entry)
        _, plans, notes = PLANNERS[cfg.source](cfg)
        root = str(notes.get("data_dir") or (Path(cfg.root).expanduser().resolve()
                                             if cfg.root else ""))
        return root or None, [plans[s] for s in entry.splits]
    except DataError as e:
        raise DataError(f"{_where(i, entry.source)}: {_for_entry(str(e), i)}") from None


def _guard(entry_source: str, plan: SplitPlan, held: HeldOut) -> dict[str, np.ndarray]:
    """Masks [N] of the plan's images to leave out, by reason (a row may match several; it
    is counted under the first)."""
    ids = plan.image_ids
    out = {r: np.zeros(len(ids), bool) for r in REASONS}
    if entry_source == held.source:
        out["heldout_image"] = np.fromiter((i in held.image_ids for i in ids), bool, len(ids))
        if held.patients:
            out["heldout_patient"] = np.fromiter((p in held.patients for p in plan.patient_ids),
                                                 bool, len(ids))
    if plan.paths is not None and held.paths:
        out["heldout_file"] = np.fromiter((os.path.realpath(p) in held.paths
                                           for p in plan.paths), bool, len(ids))
    if entry_source == "folder" and held.image_ids:
        # A folder has no ids of its own: compare the tail of each path with the held-out ids
        # (``images_001/images/00000001_000.png`` ends with NIH's ``00000001_000.png``).
        depth = max(len(PurePosixPath(i).parts) for i in held.image_ids)
        tails = np.fromiter((any("/".join(parts[-k:]) in held.image_ids
                                 for k in range(1, min(depth, len(parts)) + 1))
                             for parts in (PurePosixPath(i).parts for i in ids)), bool, len(ids))
        out["heldout_image"] |= tails
    return out


@dataclass
class PoolPlan:
    """The planned pool: entries after the guard, its fingerprint, and what to say about it."""

    entries: list[PoolEntry]
    fingerprint: str
    size: int   # the geometry's shorter side for cached training images

    @property
    def images(self) -> int:
        return sum(e.kept for e in self.entries)

    def notes(self) -> dict:
        """JSON-able facts for the dry run, the encoder's record and the report."""
        total = {r: sum(e.reasons.get(r, 0) for e in self.entries) for r in REASONS}
        return {
            "images": self.images,
            "fingerprint": self.fingerprint,
            "sources": [{"index": e.index, "source": e.source, "root": e.root,
                         "splits": [p.name for p in e.plans], "planned": e.planned,
                         "kept": e.kept, "excluded": dict(e.reasons)} for e in self.entries],
            "excluded": {r: n for r, n in total.items() if n},
            "excluded_total": sum(total.values()),
            "reasons": {r: REASONS[r] for r, n in total.items() if n},
        }

    def describe(self) -> str:
        """``chestxray14 train 75,312 + chexpert train 191,027 = 266,339 images``."""
        parts = [f"{e.source} {'+'.join(p.name for p in e.plans)} {e.kept:,}"
                 for e in self.entries]
        return " + ".join(parts) + (f" = {self.images:,} images" if len(parts) > 1 else
                                    " images")

    def load(self, cache_dir: Path) -> tuple[Split, pd.DataFrame]:
        """The pool as one Split (labels [N, 0]) and its manifest (entry, source, image_id,
        patient_id of every kept image). Builds each entry's cache the first time."""
        parts, rows, frames = [], [], []
        for e in self.entries:
            for plan, out in zip(e.plans, e.excluded):
                split, _ = load_or_build(plan, source=e.source, size=self.size, training=True,
                                         cache_dir=cache_dir, root=e.root or ".")
                # The cache leaves unreadable files out, so match the guard's verdict by id.
                left_out = set(plan.image_ids[out].tolist())
                keep = np.flatnonzero([i not in left_out for i in split.image_ids])
                parts.append(split.images)
                rows.append(keep)
                frames.append(pd.DataFrame({"entry": e.index, "source": e.source,
                                            "split": plan.name,
                                            "image_id": split.image_ids[keep],
                                            "patient_id": split.patient_ids[keep]}))
        manifest = pd.concat(frames, ignore_index=True)
        if len(manifest) == 0:
            raise DataError("pretrain.data: every pooled image file is unreadable: replace "
                            "the files")
        images = PooledImages(parts, rows)
        split = Split(name="pretrain", images=images,   # type: ignore[arg-type]
                      labels=np.zeros((len(images), 0), np.float32),
                      image_ids=manifest["image_id"].to_numpy(),
                      patient_ids=manifest["patient_id"].to_numpy())
        return split, manifest


def plan_pool(data: DataConfig, sources: list[PoolSourceConfig],
              held: HeldOut | None = None) -> PoolPlan:
    """Plan every entry, apply the leakage guard against the fine-tuning data's validation and
    test splits (``held``, default: planned from ``data``) and fingerprint the pool.

    Raises ``DataError`` (one line naming the entry) for a source that cannot be planned, and
    for a pool that the guard leaves empty.
    """
    held = held if held is not None else HeldOut.of(data)
    entries = []
    for i, src in enumerate(sources):
        root, plans = _plan_entry(i, data, src)
        excluded, reasons = [], {}
        for plan in plans:
            masks = _guard(src.source, plan, held)
            out = np.zeros(len(plan.image_ids), bool)
            for reason, mask in masks.items():
                new = mask & ~out
                if new.any():
                    reasons[reason] = reasons.get(reason, 0) + int(new.sum())
                out |= mask
            excluded.append(out)
        entries.append(PoolEntry(i, src.source, root, plans, excluded, reasons))
    pool = PoolPlan(entries, _fingerprint(entries, data.train_cache_size), data.train_cache_size)
    if pool.images == 0:
        planned = sum(e.planned for e in entries)
        raise DataError(
            f"pretrain.data: the pre-training pool is empty: all {planned:,} pooled images are "
            f"validation/test images or patients of the fine-tuning data (leakage guard): pool "
            f"other splits (splits: [train]) or other sources")
    return pool


def _fingerprint(entries: list[PoolEntry], size: int) -> str:
    """What the pool is made of: each split's cache fingerprint and the ids the guard left out
    (so a different fine-tuning split makes a different pool, and a different encoder)."""
    h = hashlib.sha256(json.dumps([POOL_VERSION, CACHE_VERSION, size]).encode())
    for e in entries:
        for plan, out in zip(e.plans, e.excluded):
            h.update(plan.fingerprint(e.source, size, True).encode())
            h.update("\n".join(sorted(plan.image_ids[out].tolist())).encode())
    return h.hexdigest()


class PooledImages:
    """Images of several memory-mapped caches as one read-only sequence (``images[i]``)."""

    def __init__(self, parts: list[PackedImages], rows: list[np.ndarray]):
        self.parts = parts
        self.rows = [np.asarray(r, np.int64) for r in rows]
        self.ends = np.cumsum([len(r) for r in self.rows]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self.ends, i, side="right"))
        start = int(self.ends[k - 1]) if k else 0
        return self.parts[k][int(self.rows[k][i - start])]


class PretrainData:
    """What an encoder pre-trains on: the fine-tuning data's train split (no ``pretrain.data``)
    or a pool. ``train`` is opened on first use only, so finding an already trained encoder
    (by ``fingerprint``) never builds a cache."""

    def __init__(self, data, pool: PoolPlan | None = None, cache_dir: Path | None = None):
        self.data, self.pool, self.cache_dir = data, pool, cache_dir
        self._train: Split | None = None
        self.manifest: pd.DataFrame | None = None

    @classmethod
    def of(cls, data_config: DataConfig, sources: list[PoolSourceConfig] | None, data,
           cache_dir: Path | None = None) -> PretrainData:
        pool = plan_pool(data_config, sources) if sources else None
        return cls(data, pool, cache_dir)

    @property
    def fingerprint(self) -> str:
        return self.pool.fingerprint if self.pool is not None else self.data.fingerprint

    @property
    def val(self) -> Split:
        return self.data.val

    @property
    def n_train(self) -> int:
        """Images to pre-train on, as planned (a pool's unreadable files, found only when its
        cache is built, are not subtracted)."""
        return self.pool.images if self.pool is not None else len(self.data.train)

    @property
    def train(self) -> Split:
        if self._train is None:
            if self.pool is None:
                self._train = self.data.train
                t = self.data.train
                self.manifest = pd.DataFrame({"entry": -1, "source": self.data.notes.get(
                    "source"), "split": "train", "image_id": t.image_ids,
                    "patient_id": t.patient_ids})
            else:
                from explorer.data.cache import default_cache_dir

                self._train, self.manifest = self.pool.load(self.cache_dir or
                                                            default_cache_dir())
        return self._train

    def notes(self) -> dict:
        if self.pool is not None:
            return {"pooled": True, "describe": self.pool.describe(), **self.pool.notes()}
        n = len(self.data.train)
        return {"pooled": False, "images": n,
                "describe": f"{self.data.notes.get('source')} train {n:,} images "
                            f"(the fine-tuning data's train split)"}
