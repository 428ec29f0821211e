"""The pre-resized image cache: decode every image once, then memory-map it.

One entry per (source, split, resolution, content fingerprint)::

    <cache_dir>/<source>/<split>-<S>px-<fingerprint[:20]>.images.npy   uint8, packed rows
                                                          .index.npy    int64 [N, 3]
                                                          .labels.npy   float32 [N, C]
                                                          .json         ids, patients, skipped files

Pixels are packed (``explorer.data.packed``): each image keeps its aspect ratio. The train split
is stored with its shorter side at most ``S = data.cache_size`` (never upscaled); val and test
at exactly the eval resize (``data.eval_size``, the study's 256), so evaluation sees the study's
``Resize`` of the original and only a centre crop is left to do.

The fingerprint hashes what the split is made of, never pixels: file names, sizes and
mtimes, the labels, the options that pick the images, the geometry, and a format version.
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
import shutil
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
from explorer.data.images import BadImage, decode_grey, read_size, stored_size
from explorer.data.packed import PackedImages
from explorer.errors import DataError

log = logging.getLogger(__name__)

CACHE_VERSION = 2   # bump when the stored pixels of any source would change
# 2: packed images with their aspect kept; train at data.cache_size, val/test at the eval resize


@dataclass
class SplitPlan:
    """A split before its pixels exist. Arrays are over the planned images, [N].

    Exactly one of ``paths`` (files to decode) and ``fill`` (writes square uint8 [N, s, s]
    images into the array it is given, at the side s of that array) is set. ``native`` is the
    side of a fill source's own images (None: it draws at any size, like the phantom). ``key``
    is JSON-able and names everything else that decides the pixels (options, generator
    parameters, file signatures).
    """

    name: str
    labels: np.ndarray
    image_ids: np.ndarray
    patient_ids: np.ndarray
    key: object
    paths: list[str] | None = None
    fill: Callable[[np.ndarray], None] | None = None
    native: int | None = None

    def fingerprint(self, source: str, size: int, training: bool) -> str:
        h = hashlib.sha256()
        h.update(json.dumps([CACHE_VERSION, source, self.name, size, training, self.native,
                             self.key], sort_keys=True, default=str).encode())
        h.update(np.ascontiguousarray(self.labels, np.float32).tobytes())
        h.update("\n".join(self.image_ids.tolist()).encode())
        h.update("\n".join(self.patient_ids.tolist()).encode())
        return h.hexdigest()


def file_signature(path: str, rel: str) -> tuple[str, int, int]:
    """(name relative to the data root, size, mtime in ns): cheap and changes with the file."""
    st = os.stat(path)
    return rel, st.st_size, st.st_mtime_ns


def default_cache_dir() -> Path:
    from explorer.settings import cache_dir

    return cache_dir()


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


def _threads(pool_size: int, fn, n: int, what: str) -> None:
    """``fn(i)`` for i < n on threads (Pillow and numpy release the GIL), logging progress."""
    t0, step = time.perf_counter(), 5000
    with ThreadPoolExecutor(max_workers=pool_size) as pool:
        for start in range(0, n, step):
            list(pool.map(fn, range(start, min(start + step, n))))
            if n > step:
                log.info("%s %d/%d images (%.0f s)", what, min(start + step, n), n,
                         time.perf_counter() - t0)


def _plan_shapes(plan: SplitPlan, size: int, training: bool, workers: int
                 ) -> tuple[np.ndarray, dict[int, str]]:
    """(height, width) each image will be stored at [N, 2], and {row: reason} for files whose
    header cannot be read (they get no pixels)."""
    n = len(plan.labels)
    shapes = np.zeros((n, 2), np.int64)
    bad: dict[int, str] = {}
    if plan.paths is None:
        native = plan.native or size   # a generator draws at the stored size directly
        side = stored_size(native, native, size, upscale=not training)[0]
        shapes[:] = side
        return shapes, bad

    def one(i: int) -> None:
        try:
            w, h = stored_size(*read_size(plan.paths[i]), size, upscale=not training)
            shapes[i] = h, w
        except BadImage as e:
            bad[i] = str(e)

    _threads(workers, one, n, "read headers of")
    return shapes, bad


def _require_space(folder: Path, needed: int, split: str) -> None:
    """Refuse an entry the disk cannot hold before writing any of it: huge image counts or
    sizes otherwise fill the disk and fail half-way (a sparse memmap does not reserve it)."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DataError(f"the image cache at {folder} needs {needed / 1e9:.1f} GB for the "
                        f"{split} split but {free / 1e9:.1f} GB are free: free some space, point "
                        f"CXR_EXPLORER_CACHE at a larger disk, or lower data.cache_size or "
                        f"data.images")


def _build(plan: SplitPlan, size: int, training: bool, stem: Path, root: str) -> None:
    n = len(plan.labels)
    workers = min(8, os.cpu_count() or 1)
    shapes, bad = _plan_shapes(plan, size, training, workers)
    counts = shapes.prod(axis=1)
    offsets = (np.cumsum(counts) - counts).astype(np.int64)
    total = int(counts.sum())
    images_path = Path(str(stem) + ".images.npy")
    _require_space(images_path.parent, total, plan.name)
    if total == 0:
        _save_npy(images_path, np.zeros(0, np.uint8))
    else:
        tmp = _tmp(images_path)
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(total,))
            if plan.paths is not None:
                def one(i: int) -> None:
                    if i in bad:
                        return
                    h, w = shapes[i]
                    try:
                        img = decode_grey(plan.paths[i], size, upscale=not training,
                                          exact=not training)
                    except BadImage as e:
                        bad[i] = str(e)
                        return
                    if img.shape != (h, w):   # a header that lies about the pixels
                        bad[i] = f"decoded {img.shape[1]}x{img.shape[0]}, header said {w}x{h}"
                        return
                    out[offsets[i]:offsets[i] + h * w] = img.ravel()

                _threads(workers, one, n, "decoded")
            else:
                assert plan.fill is not None
                side = int(shapes[0, 0])
                plan.fill(out.reshape(n, side, side))
            out.flush()
            del out
            os.replace(tmp, images_path)
        finally:
            tmp.unlink(missing_ok=True)
    # Files that failed keep their (unused) bytes in the pixel file; only the index forgets them.
    keep = np.ones(n, bool)
    keep[list(bad)] = False
    skipped = [{"path": os.path.relpath(plan.paths[i], root), "reason": bad[i]}
               for i in sorted(bad)] if plan.paths is not None else []
    index = np.stack([offsets, shapes[:, 0], shapes[:, 1]], axis=1)[keep]
    _save_npy(Path(str(stem) + ".index.npy"), np.ascontiguousarray(index, np.int64))
    _save_npy(Path(str(stem) + ".labels.npy"), np.ascontiguousarray(plan.labels[keep], np.float32))
    meta = {"planned": n, "image_ids": plan.image_ids[keep].tolist(),
            "patient_ids": plan.patient_ids[keep].tolist(), "skipped_files": skipped,
            "geometry": {"shorter_side": size, "training": training}}
    sidecar = Path(str(stem) + ".json")
    tmp = _tmp(sidecar)
    try:
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, sidecar)
    finally:
        tmp.unlink(missing_ok=True)


def load_or_build(plan: SplitPlan, *, source: str, size: int, training: bool, cache_dir: Path,
                  root: str) -> tuple[Split, dict]:
    """The cached split (built first if needed) and facts about it: fingerprint, hit, planned
    images and the skipped (undecodable) files, which the cache leaves out.

    ``size`` is the shorter side to store. ``training``: never upscale (a random crop upsamples
    from the original instead) and let big JPEGs decode at a reduced scale; otherwise resize
    exactly as the study's evaluation ``Resize`` does.
    """
    fp = plan.fingerprint(source, size, training)
    folder = cache_dir / source
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{plan.name}-{size}px-{fp[:20]}"
    sidecar = Path(str(stem) + ".json")
    parts = [sidecar, *(Path(f"{stem}.{part}.npy") for part in ("images", "index", "labels"))]
    hit = all(p.exists() for p in parts)
    if not hit:
        with _locked(Path(str(stem) + ".lock")):
            # another process may have built it while we waited; a half-deleted entry is rebuilt
            if not all(p.exists() for p in parts):
                t0 = time.perf_counter()
                _build(plan, size, training, stem, root)
                log.info("cached %s/%s (%d images) in %.1f s", source, plan.name,
                         len(plan.labels), time.perf_counter() - t0)
    meta = json.loads(sidecar.read_text())
    split = Split(
        name=plan.name,
        images=PackedImages.open(stem),
        labels=np.load(str(stem) + ".labels.npy"),   # small, and writable for torch
        image_ids=np.array(meta["image_ids"], dtype=str),
        patient_ids=np.array(meta["patient_ids"], dtype=str),
    )
    return split, {"fingerprint": fp, "hit": hit, "path": str(stem), "planned": meta["planned"],
                   "skipped_files": meta["skipped_files"]}
