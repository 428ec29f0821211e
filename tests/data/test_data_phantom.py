"""The phantom: deterministic, NIH label statistics, patient-disjoint, a trace per finding."""

from __future__ import annotations

import json

import numpy as np
import pytest
from data_files import assert_patient_disjoint

from explorer.data import FINDINGS, DataConfig, load_data
from explorer.data.phantom import DEFAULT_SIZES, generate, sample_parameters
from explorer.data.phantom_labels import nih_label_stats, sample_cohort
from explorer.data.phantom_render import _Chest, render


def test_generation_is_deterministic_by_seed():
    a = generate(40, 32, seed=3, stream=0)
    b = generate(40, 32, seed=3, stream=0)
    c = generate(40, 32, seed=4, stream=0)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert a[0].dtype == np.uint8 and a[0].shape == (40, 32, 32)


def test_load_data_phantom_sizes_splits_and_cache(tmp_path):
    cfg = DataConfig(image_size=24, eval_crop_pct=1.0, images={"train": 120, "val": 40, "test": 30})
    b = load_data(cfg, cache_dir=tmp_path / "a")
    assert (len(b.train), len(b.val), len(b.test)) == (120, 40, 30)
    assert np.asarray(b.train.images).shape == (120, 24, 24)
    assert b.train.labels.dtype == np.float32
    assert b.findings == FINDINGS and b.notes["source"] == "phantom"
    assert_patient_disjoint(b)
    assert len(set(b.train.patient_ids)) < 120   # follow-ups: several images per patient
    json.dumps(b.notes)
    again = load_data(cfg, cache_dir=tmp_path / "b")   # a fresh cache draws the same pictures
    assert again.fingerprint == b.fingerprint
    np.testing.assert_array_equal(again.val.images, b.val.images)
    # train does not change when another split's size does
    bigger_val = {**cfg.model_dump(), "images": {"train": 120, "val": 50, "test": 30}}
    other = load_data(DataConfig(**bigger_val), cache_dir=tmp_path / "a")
    np.testing.assert_array_equal(other.train.images, b.train.images)
    assert other.fingerprint != b.fingerprint


def test_default_sizes_are_documented_numbers(tmp_path):
    b = load_data(DataConfig(image_size=8, eval_crop_pct=1.0), cache_dir=tmp_path)
    assert {s: len(b.split(s)) for s in ("train", "val", "test")} == DEFAULT_SIZES


def test_prevalence_and_cooccurrence_follow_chestxray14():
    stats = nih_label_stats()
    n = 60_000
    cohort = sample_cohort(n, np.random.default_rng(0))
    got = cohort.labels.mean(0)
    for j, f in enumerate(FINDINGS):
        p = stats["prevalence"][f]
        assert abs(got[j] - p) < 6 * np.sqrt(p * (1 - p) / n) + 1e-3, f
    assert abs((cohort.labels.sum(1) == 0).mean() - stats["no_finding_share"]) < 0.01
    # co-occurrence: the most frequent pairs of findings
    total = sum(stats["combinations"].values())
    for a, b in (("Effusion", "Infiltration"), ("Atelectasis", "Effusion"),
                 ("Atelectasis", "Infiltration")):
        want = sum(c for k, c in stats["combinations"].items()
                   if a in k.split("|") and b in k.split("|")) / total
        pair = cohort.labels[:, FINDINGS.index(a)] * cohort.labels[:, FINDINGS.index(b)]
        assert abs(pair.mean() - want) < 0.004, (a, b)
    # follow-ups repeat the previous label set as often as NIH's do
    same_patient = cohort.patient[1:] == cohort.patient[:-1]
    same = (cohort.labels[1:] == cohort.labels[:-1]).all(1)[same_patient].mean()
    assert abs(same - stats["followup_same_labels_rate"]) < 0.02
    per_patient = np.bincount(cohort.patient)
    assert abs(per_patient.mean() - stats["images"] / stats["patients"]) < 0.4


S = 64


def _pair(finding: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One patient, fixed pose, no noise: (without, with) the finding as float images, and the
    anatomical coordinates (u, v) of every pixel."""
    labels = np.zeros((2, 14), np.float32)
    labels[1, FINDINGS.index(finding)] = 1
    a, f = sample_parameters(labels, np.zeros(2, np.int64), 1, np.random.default_rng(seed))
    a.update(theta=np.zeros(2), tx=np.zeros(2), ty=np.zeros(2), scale=np.full(2, 0.85),
             noise=np.zeros(2), k=np.full(2, 1.6), gain=np.ones(2), offset=np.full(2, 0.03),
             waves=np.repeat(a["waves"][:1], 2, axis=0))   # same vessels in both pictures
    for key in f:   # unilateral findings on the image right, bilateral ones on both sides
        if key == "side" or key.endswith(".side"):
            f[key] = np.ones(2, np.float32)
        if key.endswith(".mode"):
            f[key] = np.full(2, 2)
        if key.endswith(".s"):
            f[key] = np.ones(2)
    img = render(a, f, labels, S, 1.0, np.random.default_rng(0)).astype(np.float32)
    chest = _Chest({k: v[:1] for k, v in a.items()}, S)
    return img[0], img[1], chest.u[0], chest.v[0]


# finding -> (region in anatomical coordinates where the trace must lie, sign of the change)
REGIONS = {
    "Atelectasis": (lambda u, v: v > -0.2, +1),   # band in a lower zone, dome pulled up
    "Cardiomegaly": (lambda u, v: (np.abs(u - 0.15) < 0.65) & (v > -0.15) & (v < 0.7), +1),
    "Effusion": (lambda u, v: v > 0.0, +1),
    "Infiltration": (lambda u, v: (np.abs(u) < 0.8) & (v < 0.65), +1),
    "Mass": (lambda u, v: u > 0, +1),
    "Nodule": (lambda u, v: np.ones_like(u, bool), +1),   # one nodule per lung here
    "Pneumonia": (lambda u, v: u > 0, +1),
    "Pneumothorax": (lambda u, v: u > 0, -1),
    "Consolidation": (lambda u, v: u > 0, +1),
    "Edema": (lambda u, v: (np.abs(u) < 0.8) & (v < 0.65), +1),
    "Emphysema": (lambda u, v: (np.abs(u) < 0.8) & (v < 0.8), -1),
    "Fibrosis": (lambda u, v: (np.abs(u) < 0.8) & (v < 0.65), +1),
    "Pleural_Thickening": (lambda u, v: np.abs(u) > 0.15, +1),
    "Hernia": (lambda u, v: (np.abs(u - 0.1) < 0.35) & (v > -0.05) & (v < 0.55), 0),
}


@pytest.mark.parametrize("finding", FINDINGS)
def test_each_finding_leaves_a_visible_trace_where_expected(finding):
    region, sign = REGIONS[finding]
    for seed in range(3):
        normal, sick, u, v = _pair(finding, seed)
        diff = sick - normal
        assert np.abs(diff).max() >= 20, f"{finding}: invisible (max change {np.abs(diff).max()})"
        inside = region(u, v)
        share = np.abs(diff)[inside].sum() / np.abs(diff).sum()
        assert share > 0.8, f"{finding}: only {share:.0%} of the change is where expected"
        if sign:
            assert np.sign(diff[inside].sum()) == sign, finding


def test_traces_differ_in_size_and_place():
    area = {}
    for f in ("Nodule", "Mass", "Cardiomegaly", "Effusion"):
        normal, sick, _, _ = _pair(f, 0)
        area[f] = int((np.abs(sick - normal) > 10).sum())
    assert 0 < area["Nodule"] < area["Mass"]
    normal, sick, u, _ = _pair("Edema", 0)
    diff = np.abs(sick - normal)   # Edema is bilateral
    assert diff[u < 0].sum() > 0.3 * diff.sum() and diff[u > 0].sum() > 0.3 * diff.sum()


def test_any_resolution_draws_the_same_picture():
    small = generate(6, 32, seed=1, stream=0)[0].astype(np.float32)
    big = generate(6, 128, seed=1, stream=0)[0].astype(np.float32)
    pooled = big.reshape(6, 32, 4, 32, 4).mean(axis=(2, 4))
    assert np.abs(pooled - small).mean() < 8   # pixel noise and edge sampling differ, not content
    assert np.corrcoef(pooled.ravel(), small.ravel())[0, 1] > 0.95


def test_committed_label_statistics_come_from_the_nih_csv(nih_mini, tmp_path):
    from explorer.data.derive_label_stats import main

    out = tmp_path / "stats.json"
    assert main([str(nih_mini / "Data_Entry_2017_v2020.csv"), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == nih_label_stats()
    assert nih_label_stats()["images"] == 112_120 and nih_label_stats()["patients"] == 30_805
