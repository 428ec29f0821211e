"""The pre-resized image cache: decode every image once, then memory-map it.

One entry per (source, split, resolution, content fingerprint)::

    <cache_dir>/<source>/<split>-<S>px-<fingerprint[:20]>.images.npy   uint8 [N, S, S]
                                                          .labels.npy   float32 [N, C]
                                                          .json         ids, patients, skipped files

The fingerprint hashes what the split is made of, never pixels: file names, sizes and
mtimes, the labels, the options that pick the images, the resolution, and a format version.
An entry is built under a file lock, each file is written under a temporary name and
``os.replace``d into place, and the ``.json`` sidecar goes last: a reader that sees it sees a
complete entry. Where locks do not work (some network file systems) two builders write
identical content and the last rename wins.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    import fcntl
except ImportError:   # pragma: no cover - not POSIX: concurrent builders rely on atomic renames
    fcntl = None

from explorer.data.bundle import Split
from explorer.data.images import BadImage, decode_grey

log = logging.getLogger(__name__)

CACHE_VERSION = 1   # bump when the stored pixels of any source would change


@dataclass
class SplitPlan:
    """A split before its pixels exist. Arrays are over the planned images, [N].

    Exactly one of ``paths`` (files to decode) and ``fill`` (writes uint8 [N, S, S] into the
    array it is given) is set. ``key`` is JSON-able and names everything else that decides
    the pixels (options, generator parameters, file signatures).
    """

    name: str
    labels: np.ndarray
    image_ids: np.ndarray
    patient_ids: np.ndarray
    key: object
    paths: list[str] | None = None
    fill: Callable[[np.ndarray], None] | None = None

    def fingerprint(self, source: str, size: int) -> str:
        h = hashlib.sha256()
        h.update(json.dumps([CACHE_VERSION, source, self.name, size, self.key],
                            sort_keys=True, default=str).encode())
        h.update(np.ascontiguousarray(self.labels, np.float32).tobytes())
        h.update("\n".join(self.image_ids.tolist()).encode())
        h.update("\n".join(self.patient_ids.tolist()).encode())
        return h.hexdigest()


def file_signature(path: str, rel: str) -> tuple[str, int, int]:
    """(name relative to the data root, size, mtime in ns): cheap and changes with the file."""
    st = os.stat(path)
    return rel, st.st_size, st.st_mtime_ns


def default_cache_dir() -> Path:
    env = os.environ.get("CXR_EXPLORER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "cxr-explorer"


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "a+") as fh:
        try:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_EX)
        except OSError:   # no lock support here: fall back to last-rename-wins
            log.debug("no file lock at %s", path)
        try:
            yield
        finally:
            if fcntl is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(fh, fcntl.LOCK_UN)


def _tmp(final: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=final.name + ".", suffix=".tmp", dir=final.parent)
    os.close(fd)
    return Path(name)


def _save_npy(final: Path, array: np.ndarray) -> None:
    tmp = _tmp(final)
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _decode_all(paths: list[str], size: int, out: np.ndarray, workers: int) -> dict[int, str]:
    """Decode ``paths`` into ``out`` rows; returns {row: reason} for files that failed."""
    bad: dict[int, str] = {}

    def one(i: int) -> None:
        try:
            out[i] = decode_grey(paths[i], size)
        except BadImage as e:
            bad[i] = str(e)

    t0, step = time.perf_counter(), 5000
    with ThreadPoolExecutor(max_workers=workers) as pool:   # Pillow releases the GIL
        for start in range(0, len(paths), step):
            list(pool.map(one, range(start, min(start + step, len(paths)))))
            if len(paths) > step:
                log.info("decoded %d/%d images (%.0f s)", min(start + step, len(paths)),
                         len(paths), time.perf_counter() - t0)
    return bad


def _build(plan: SplitPlan, size: int, stem: Path, root: str) -> None:
    n = len(plan.labels)
    keep = np.ones(n, bool)
    skipped: list[dict] = []
    images_path = Path(str(stem) + ".images.npy")
    if n == 0:
        _save_npy(images_path, np.zeros((0, size, size), np.uint8))
    else:
        tmp = _tmp(images_path)
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, size, size))
            if plan.paths is not None:
                bad = _decode_all(plan.paths, size, out, min(8, os.cpu_count() or 1))
                for i in sorted(bad):
                    keep[i] = False
                    skipped.append({"path": os.path.relpath(plan.paths[i], root),
                                    "reason": bad[i]})
            else:
                assert plan.fill is not None
                plan.fill(out)
            out.flush()
            if not keep.all():   # compact: the cache holds only decodable images
                good = np.lib.format.open_memmap(
                    _tmp(images_path), mode="w+", dtype=np.uint8,
                    shape=(int(keep.sum()), size, size))
                for j, i in enumerate(np.flatnonzero(keep)):
                    good[j] = out[i]
                good.flush()
                del out
                os.replace(good.filename, tmp)
                del good
            else:
                del out
            os.replace(tmp, images_path)
        finally:
            tmp.unlink(missing_ok=True)
    _save_npy(Path(str(stem) + ".labels.npy"), np.ascontiguousarray(plan.labels[keep], np.float32))
    meta = {"planned": n, "image_ids": plan.image_ids[keep].tolist(),
            "patient_ids": plan.patient_ids[keep].tolist(), "skipped_files": skipped}
    sidecar = Path(str(stem) + ".json")
    tmp = _tmp(sidecar)
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, sidecar)


def load_or_build(plan: SplitPlan, *, source: str, size: int, cache_dir: Path,
                  root: str) -> tuple[Split, dict]:
    """The cached split (built first if needed) and facts about it: fingerprint, hit, planned
    images and the skipped (undecodable) files, which the cache leaves out."""
    fp = plan.fingerprint(source, size)
    folder = cache_dir / source
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{plan.name}-{size}px-{fp[:20]}"
    sidecar = Path(str(stem) + ".json")
    parts = [sidecar, Path(str(stem) + ".images.npy"), Path(str(stem) + ".labels.npy")]
    hit = all(p.exists() for p in parts)
    if not hit:
        with _locked(Path(str(stem) + ".lock")):
            # another process may have built it while we waited; a half-deleted entry is rebuilt
            if not all(p.exists() for p in parts):
                t0 = time.perf_counter()
                _build(plan, size, stem, root)
                log.info("cached %s/%s (%d images) in %.1f s", source, plan.name,
                         len(plan.labels), time.perf_counter() - t0)
    meta = json.loads(sidecar.read_text())
    split = Split(
        name=plan.name,
        images=np.load(str(stem) + ".images.npy", mmap_mode="r"),
        labels=np.load(str(stem) + ".labels.npy"),   # small, and writable for torch
        image_ids=np.array(meta["image_ids"], dtype=str),
        patient_ids=np.array(meta["patient_ids"], dtype=str),
    )
    return split, {"fingerprint": fp, "hit": hit, "path": str(stem), "planned": meta["planned"],
                   "skipped_files": meta["skipped_files"]}
