"""The pre-resized cache: hits, invalidation, atomic and concurrent builds."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
from data_files import grey_pattern, save_png

from explorer.data import DataConfig, load_data
from explorer.data.packed import PackedImages


def _cfg(root, **kw) -> DataConfig:
    kw = {"image_size": 32, "eval_crop_pct": 1.0, **kw}
    return DataConfig(source="chestxray14", root=str(root), **kw)


def test_second_load_is_a_cache_hit_with_the_same_content(nih_folder, tmp_path):
    first = load_data(_cfg(nih_folder), cache_dir=tmp_path)
    second = load_data(_cfg(nih_folder), cache_dir=tmp_path)
    assert not first.notes["cache"]["hit"] and second.notes["cache"]["hit"]
    assert second.fingerprint == first.fingerprint
    pixels = second.train.images.pixels   # memory-mapped, read-only
    assert isinstance(second.train.images, PackedImages) and isinstance(pixels, np.memmap)
    assert not pixels.flags.writeable
    np.testing.assert_array_equal(second.train.images, first.train.images)
    np.testing.assert_array_equal(second.val.labels, first.val.labels)
    assert second.val.image_ids.tolist() == first.val.image_ids.tolist()
    assert not list(tmp_path.rglob("*.tmp"))   # no half-written files left behind


def test_a_damaged_entry_is_rebuilt(nih_folder, tmp_path):
    first = load_data(_cfg(nih_folder), cache_dir=tmp_path)
    Path(first.notes["cache"]["entries"]["train"] + ".images.npy").unlink()
    again = load_data(_cfg(nih_folder), cache_dir=tmp_path)
    assert not again.notes["cache"]["hit"]
    np.testing.assert_array_equal(again.train.images, first.train.images)


def test_a_hit_decodes_nothing(nih_folder, tmp_path):
    load_data(_cfg(nih_folder), cache_dir=tmp_path)
    # Corrupt every image *without* changing size or mtime: a hit must not open the files.
    for png in nih_folder.glob("images_00*/images/*.png"):
        st = png.stat()
        png.write_bytes(b"\0" * st.st_size)
        os.utime(png, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = load_data(_cfg(nih_folder), cache_dir=tmp_path)
    assert again.notes["cache"]["hit"] and again.notes["skipped_files"] == []


def test_fingerprint_changes_with_files_options_and_resolution(nih_folder, tmp_path):
    base = load_data(_cfg(nih_folder), cache_dir=tmp_path).fingerprint
    assert load_data(_cfg(nih_folder, image_size=28), cache_dir=tmp_path).fingerprint != base
    assert load_data(_cfg(nih_folder, val_fraction=0.3), cache_dir=tmp_path).fingerprint != base
    png = next(nih_folder.glob("images_001/images/*.png"))
    save_png(png, grey_pattern(99, 40), "L")
    os.utime(png, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = load_data(_cfg(nih_folder), cache_dir=tmp_path)
    assert changed.fingerprint != base and not changed.notes["cache"]["hit"]


def _load_in_child(root, cache, barrier, queue) -> None:
    barrier.wait()   # both processes ask for the same missing entry at the same moment
    b = load_data(_cfg(root, image_size=40), cache_dir=cache)
    queue.put((b.fingerprint, np.asarray(b.train.images).tobytes(), b.notes["cache"]["hit"]))


def test_two_processes_building_at_once_agree(nih_folder, tmp_path):
    ctx = mp.get_context("fork")   # fork: no re-import, so the two really start together
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_load_in_child, args=(nih_folder, tmp_path, barrier, queue))
             for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[0][:2] == results[1][:2]
    assert not (results[0][2] and results[1][2])   # someone built it
    entries = list((tmp_path / "chestxray14").glob("*.images.npy"))
    assert len(entries) == 3 and not list(tmp_path.rglob("*.tmp"))
    assert load_data(_cfg(nih_folder, image_size=40), cache_dir=tmp_path).notes["cache"]["hit"]


def test_default_cache_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_EXPLORER_CACHE", str(tmp_path / "env-cache"))
    b = load_data(DataConfig(image_size=8, eval_crop_pct=1.0,
                             images={"train": 10, "val": 5, "test": 5}))
    assert b.notes["cache"]["dir"] == str(tmp_path / "env-cache")
    assert list((tmp_path / "env-cache" / "phantom").glob("train-8px-*.images.npy"))
