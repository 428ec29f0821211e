"""The pre-training pool: several sources pooled, the leakage guard, bounded memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from data_files import grey_pattern, save_png

from explorer.data import DataConfig, load_data
from explorer.data.cache import default_cache_dir
from explorer.data.config import PoolSourceConfig
from explorer.data.pool import PretrainData, plan_pool
from explorer.errors import DataError


def P(**kw) -> PoolSourceConfig:
    return PoolSourceConfig.model_validate(kw)


def nih_config(root: Path, **kw) -> DataConfig:
    return DataConfig(source="chestxray14", root=str(root), image_size=32, eval_crop_pct=1.0, **kw)


def test_two_sources_pool_without_any_validation_or_test_image_or_patient(nih_mini):
    """Fine-tuning on the NIH mini folder; the pool takes ALL its splits, the phantom and the
    same images again as a plain folder: the guard leaves out every validation/test image and
    patient of the fine-tuning split, and counts them by reason."""
    ft = nih_config(nih_mini)
    data = load_data(ft)
    pool = plan_pool(ft, [P(source="chestxray14", splits=["train", "val", "test"]),
                          P(source="phantom", images={"train": 40}),
                          P(source="folder", root=str(nih_mini / "images"))])
    held_ids = set(data.val.image_ids) | set(data.test.image_ids)
    held_patients = set(data.val.patient_ids) | set(data.test.patient_ids)
    notes = pool.notes()
    nih, phantom, folder = notes["sources"]
    assert nih["planned"] == folder["planned"] == 690
    assert nih["excluded"] == {"heldout_image": len(held_ids)}
    assert folder["excluded"] == {"heldout_image": len(held_ids)}   # matched by file name
    assert phantom == {**phantom, "planned": 40, "kept": 40, "excluded": {}}
    assert notes["excluded_total"] == 2 * len(held_ids) and pool.images == 2 * 596 + 40

    split, manifest = pool.load(default_cache_dir())
    assert len(split) == len(manifest) == pool.images
    seen_ids = set(manifest.image_id) | {Path(i).name for i in manifest.image_id}
    assert not seen_ids & held_ids
    assert not set(manifest[manifest.source == "chestxray14"].patient_id) & held_patients
    assert set(data.train.image_ids) <= set(manifest.image_id)
    # image i of the pool is the cached image of its own source, not a copy
    row = int(np.flatnonzero(manifest.source == "chestxray14")[0])
    same = PretrainData(data).train
    j = int(np.flatnonzero(same.image_ids == manifest.image_id[row])[0])
    assert np.array_equal(split.images[row], same.images[j])
    assert {split.images[i].shape for i in range(len(split))} == {(32, 32)}


def csv_source(root: Path, rows: list[tuple[str, str, str]]) -> Path:
    """``rows``: (file name, patient, split) -> images + labels.csv (column Effusion)."""
    lines = ["path,patient,split,Effusion"]
    for k, (name, patient, split) in enumerate(rows):
        save_png(root / name, grey_pattern(k, 24), "L")
        lines.append(f"{name},{patient},{split},{k % 2}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_other_images_of_a_validation_patient_are_left_out(tmp_path):
    ft_rows = [(f"t{p}_{i}.png", f"t{p}", "train") for p in range(4) for i in range(2)]
    ft_rows += [("v0_0.png", "v0", "val"), ("v1_0.png", "v1", "val"), ("s0_0.png", "s0", "test")]
    ft = DataConfig(source="csv", root=str(csv_source(tmp_path / "ft", ft_rows)),
                    patient_column="patient", split_column="split", label_columns=["Effusion"],
                    image_size=16, eval_crop_pct=1.0)
    # another release of the same kind of data, all of it pooled: a later image of patients
    # v0 (validation) and s0 (test), and a new patient
    more = [("v0_1.png", "v0", ""), ("n0_0.png", "n0", ""), ("s0_1.png", "s0", "")]
    other = csv_source(tmp_path / "more", more)
    pool = plan_pool(ft, [P(source="csv", root=str(other), patient_column="patient",
                            split_column=None, label_columns=["Effusion"],
                            splits=["train", "val", "test"])])
    assert pool.notes()["sources"][0]["excluded"] == {"heldout_patient": 2}
    assert pool.images == 1
    _, manifest = pool.load(default_cache_dir())
    assert list(manifest.image_id) == ["n0_0.png"]


def test_fingerprint_follows_what_the_guard_leaves_out(nih_mini):
    entries = [P(source="chestxray14", splits=["train", "val"])]
    a = plan_pool(nih_config(nih_mini), entries)
    assert plan_pool(nih_config(nih_mini), entries).fingerprint == a.fingerprint
    other_split = plan_pool(nih_config(nih_mini, split_seed=1), entries)
    assert other_split.fingerprint != a.fingerprint


def test_a_pool_that_the_guard_empties_is_one_line(nih_mini):
    with pytest.raises(DataError) as err:
        plan_pool(nih_config(nih_mini), [P(source="chestxray14", splits=["val", "test"])])
    msg = str(err.value)
    assert "pre-training pool is empty" in msg and "leakage guard" in msg and "\n" not in msg


def test_a_pooled_source_that_does_not_exist_names_its_entry(nih_mini, tmp_path):
    with pytest.raises(DataError) as err:
        plan_pool(nih_config(nih_mini), [P(source="chestxray14"),
                                          P(source="folder", root=str(tmp_path / "nope"))])
    assert str(err.value).startswith("pretrain.data.1 (folder): data root ")
    assert "fix pretrain.data.1.root" in str(err.value)


def test_reading_the_pool_keeps_memory_far_below_its_pixels(tmp_path):
    """4,000 phantom images (9 MB of pixels) plus a folder: opening the pool and reading every
    image allocates only per-image bookkeeping (ids, patients, index: about 0.5 KB an image,
    whatever the resolution); the pixels stay in the memory-mapped caches."""
    folder = tmp_path / "unlabelled"
    for k in range(20):
        save_png(folder / f"a/{k:03d}.png", grey_pattern(k, 60), "L")
    geometry = DataConfig(image_size=48, eval_crop_pct=1.0, images={"val": 8, "test": 8})
    pool = plan_pool(geometry, [P(source="phantom", images={"train": 4000}),
                                P(source="folder", root=str(folder))])
    pool.load(default_cache_dir())   # builds the caches (not measured)
    pixels = 4000 * 48 * 48 + 20 * 48 * 48
    tracemalloc.start()
    split, _ = pool.load(default_cache_dir())
    total = sum(int(split.images[i].sum(dtype=np.int64)) for i in range(len(split)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total > 0 and len(split) == 4020
    assert peak < 1024 * len(split) and peak < pixels / 4, f"peak {peak:,} B, pixels {pixels:,} B"
