"""Data for a search's trials: the cache built on every node before trials start, and the split
plan computed once (by the driver) and shipped to the trials.

Without this, the first trial on each node built the node's cache while holding its GPUs, and
every ``load_data`` re-planned the splits (for ChestX-ray14, 112k ``stat`` calls, on NFS).

- ``prepare_nodes``: one Ray task per node with CPUs (the driver's node built its cache in
  ``load_data`` already), each reserving all of its node's CPUs, builds that node's cache.
- ``ship`` / ``receive``: the driver's ``DataBundle`` travels without pixels (labels, ids, and
  each split's cache file name relative to the cache folder); a trial reopens the memory-mapped
  files in its node's cache. A trial whose data settings differ from the shipped ones (a
  searched ``data.*`` parameter), or whose node lacks the files, calls ``load_data``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explorer.data.bundle import SPLITS, DataBundle, Split
from explorer.data.cache import default_cache_dir
from explorer.data.config import DataConfig
from explorer.data.loader import load_data
from explorer.data.packed import PackedImages
from explorer.errors import DataError, UserError


def _settings(cfg: DataConfig) -> dict:
    """What decides the bundle (not how it is loaded)."""
    return cfg.model_dump(mode="json", exclude={"loader_workers"})


@dataclass(frozen=True)
class _ShippedSplit:
    name: str
    labels: np.ndarray
    image_ids: np.ndarray
    patient_ids: np.ndarray
    images: str | PackedImages  # the images' cache stem relative to the cache folder (or, for
    # images not in a cache file, the images themselves)


@dataclass(frozen=True)
class ShippedData:
    settings: dict
    findings: tuple[str, ...]
    fingerprint: str
    notes: dict
    splits: tuple[_ShippedSplit, ...]


def ship(bundle: DataBundle, cfg: DataConfig) -> ShippedData:
    """``bundle`` (as ``load_data(cfg)`` returned it) without its pixels."""
    cache = Path(bundle.notes["cache"]["dir"]).resolve()
    splits = []
    for name in SPLITS:
        s = bundle.split(name)
        images = s.images
        if isinstance(images, PackedImages) and images.stem is not None:
            images = os.path.relpath(Path(images.stem).resolve(), cache)
        splits.append(_ShippedSplit(name, s.labels, s.image_ids, s.patient_ids, images))
    return ShippedData(_settings(cfg), bundle.findings, bundle.fingerprint, bundle.notes,
                       tuple(splits))


def receive(shipped: ShippedData | None, cfg: DataConfig) -> DataBundle:
    """The shipped bundle, opened in this node's cache; else ``load_data(cfg)``."""
    if shipped is None or shipped.settings != _settings(cfg):
        return load_data(cfg)
    cache = default_cache_dir()
    splits = {}
    for s in shipped.splits:
        images = s.images
        if isinstance(images, str):
            if not Path(f"{cache / images}.index.npy").is_file():  # a node that joined later,
                return load_data(cfg)                                # or another cache folder
            images = PackedImages.open(cache / images)
        fields = {f.name: getattr(s, f.name) for f in dataclasses.fields(s) if f.name != "images"}
        splits[s.name] = Split(images=images, **fields)
    return DataBundle(findings=shipped.findings, fingerprint=shipped.fingerprint,
                      notes={**shipped.notes, "shipped": True}, **splits)


def _build_here(cfg: dict) -> float:
    import time

    t0 = time.perf_counter()
    load_data(DataConfig.model_validate(cfg))
    return time.perf_counter() - t0


def prepare_nodes(cfg: DataConfig, nodes: list[dict]) -> dict[str, float]:
    """Build the data cache on every alive node with CPUs other than this process' node, in
    parallel; seconds per node. A node that cannot read the data fails here, in one line."""
    import ray
    from ray.exceptions import RayTaskError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    task = ray.remote(_build_here)
    refs = {}
    for n in nodes:
        cpus = n.get("Resources", {}).get("CPU", 0)
        if n["NodeID"] == here or cpus < 1:
            continue
        refs[n["NodeManagerAddress"] + " " + n["NodeID"][:8]] = task.options(
            num_cpus=cpus, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"],
                                                                              soft=False),
        ).remote(cfg.model_dump(mode="json"))
    seconds = {}
    for node, ref in refs.items():
        try:
            seconds[node] = ray.get(ref)
        except RayTaskError as exc:
            if isinstance(exc.cause, UserError):
                raise DataError(f"on node {node}: {exc.cause}") from None
            raise
    return seconds
