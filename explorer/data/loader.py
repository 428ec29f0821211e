"""``load_data``: pick the source, plan its splits, fill or open the cache, write the notes."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from explorer.data.bundle import SPLITS, DataBundle, Split
from explorer.data.cache import CACHE_VERSION, default_cache_dir, load_or_build
from explorer.data.chestmnist import plan_chestmnist
from explorer.data.chestxray14 import plan_chestxray14
from explorer.data.chexpert import plan_chexpert
from explorer.data.config import DataConfig
from explorer.data.csvfolder import plan_csv
from explorer.data.phantom import plan_phantom
from explorer.errors import DataError

log = logging.getLogger(__name__)

PLANNERS = {
    "phantom": plan_phantom,
    "chestxray14": plan_chestxray14,
    "chexpert": plan_chexpert,
    "chestmnist": plan_chestmnist,
    "csv": plan_csv,
}


def load_data(cfg: DataConfig, cache_dir: str | Path | None = None) -> DataBundle:
    """Load train/val/test of ``cfg.source`` through the cache: train with its shorter side at
    most ``cfg.train_cache_size`` px, val and test at the eval resize ``cfg.eval_size``.

    ``cache_dir`` defaults to ``$CXR_EXPLORER_CACHE``, else ``~/.cache/cxr-explorer``. The first
    call decodes (or draws) every image once; later calls memory-map the cached arrays.
    Raises ``DataError`` for anything about the data a user can fix.
    """
    t0 = time.perf_counter()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    findings, plans, source_notes = PLANNERS[cfg.source](cfg)
    t_plan = time.perf_counter() - t0
    root = str(Path(cfg.root).expanduser().resolve()) if cfg.root else None
    splits: dict[str, Split] = {}
    facts: dict[str, dict] = {}
    for name in SPLITS:
        training = name == "train"
        splits[name], facts[name] = load_or_build(
            plans[name], source=cfg.source, cache_dir=cache, training=training,
            size=cfg.train_cache_size if training else cfg.eval_size,
            root=str(source_notes.get("data_dir", root or ".")))
    skipped = [dict(f, split=s) for s in SPLITS for f in facts[s]["skipped_files"]]
    planned = sum(facts[s]["planned"] for s in SPLITS)
    if skipped and len(skipped) > cfg.max_bad_fraction * planned:
        first = skipped[0]
        raise DataError(
            f"{len(skipped)} of {planned} image files under {root} are unreadable (e.g. "
            f"{first['path']}: {first['reason']}), more than max_bad_fraction="
            f"{cfg.max_bad_fraction}: replace those files or raise data.max_bad_fraction")
    for name in ("train", "val"):
        if len(splits[name]) == 0:   # every planned image was unreadable
            raise DataError(f"{cfg.source}: the {name} split is empty after skipping unreadable "
                            f"files under {root}: replace the files")

    missing = int(source_notes.get("rows_without_file", 0))
    if missing:   # only now: a run that stops on bad data prints its one error line, nothing else
        log.warning("%s: %d labelled images have no file under %s (partial download?); they are "
                    "left out", cfg.source, missing, root)

    fingerprint = hashlib.sha256(json.dumps(
        [CACHE_VERSION, cfg.source, list(findings), [facts[s]["fingerprint"] for s in SPLITS]]
    ).encode()).hexdigest()
    notes = {
        "source": cfg.source,
        "root": root,
        "findings": list(findings),
        "cache_size": cfg.train_cache_size,
        "eval_size": cfg.eval_size,
        "split_seed": cfg.split_seed,
        "fingerprint": fingerprint,
        "sizes": {s: {"images": len(splits[s]),
                      "patients": int(np.unique(splits[s].patient_ids).size)} for s in SPLITS},
        "positives": {s: splits[s].positives(findings) for s in SPLITS},
        "no_positive": {s: [f for f, n in splits[s].positives(findings).items() if n == 0]
                        for s in SPLITS},
        "rows_without_file": source_notes.pop("rows_without_file", 0),
        "skipped_files": skipped,
        "split_fingerprints": {s: facts[s]["fingerprint"] for s in SPLITS},
        **source_notes,
        "cache": {"dir": str(cache), "hit": all(facts[s]["hit"] for s in SPLITS),
                  "entries": {s: facts[s]["path"] for s in SPLITS},
                  "plan_seconds": round(t_plan, 3),
                  "load_seconds": round(time.perf_counter() - t0, 3)},
    }
    if len(splits["test"]) == 0 and "test_empty_reason" not in notes:
        notes["test_empty_reason"] = "no test images"
    return DataBundle(findings=tuple(findings), train=splits["train"], val=splits["val"],
                      test=splits["test"], fingerprint=fingerprint, notes=notes)
