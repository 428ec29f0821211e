"""Patients and labels of the phantom, drawn from ChestX-ray14's own statistics.

The numbers live in ``nih_label_stats.json`` (made once by ``derive_label_stats.py``). Whole
label *sets* are drawn from NIH's joint distribution, so prevalence and co-occurrence both
follow ChestX-ray14. Follow-ups of one patient repeat the previous set with NIH's excess
repeat probability; a Markov chain whose fresh draws come from the joint distribution keeps
that joint distribution per image.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explorer.data.findings import FINDINGS

STATS_PATH = Path(__file__).with_name("nih_label_stats.json")

# A small split must not be dominated by one patient with 184 follow-ups (NIH's maximum).
MAX_PATIENT_SHARE = 0.05


@functools.lru_cache(maxsize=1)
def nih_label_stats() -> dict:
    """The committed statistics (see ``derive_label_stats.py`` for what each key means)."""
    return json.loads(STATS_PATH.read_text())


@dataclass(frozen=True)
class PhantomCohort:
    """Who is imaged, and with which findings. Arrays over images, [N] unless noted."""

    labels: np.ndarray       # float32 [N, 14] in {0, 1}
    patient: np.ndarray      # int64, 0 .. n_patients - 1, images of a patient are contiguous
    followup: np.ndarray     # int64, 0 for a patient's first image
    n_patients: int


def _combination_table() -> tuple[np.ndarray, np.ndarray]:
    """Label sets as a [K, 14] 0/1 matrix and their probabilities [K]."""
    combos = nih_label_stats()["combinations"]
    index = {f: j for j, f in enumerate(FINDINGS)}
    table = np.zeros((len(combos), len(FINDINGS)), np.float32)
    for i, key in enumerate(combos):
        for name in filter(None, key.split("|")):
            table[i, index[name]] = 1.0
    counts = np.fromiter(combos.values(), np.float64, len(combos))
    return table, counts / counts.sum()


def sample_cohort(n_images: int, rng: np.random.Generator) -> PhantomCohort:
    """Draw ``n_images`` images grouped into patients, with NIH-distributed label sets."""
    stats = nih_label_stats()
    if n_images == 0:
        return PhantomCohort(np.zeros((0, len(FINDINGS)), np.float32),
                             np.zeros(0, np.int64), np.zeros(0, np.int64), 0)
    per = stats["images_per_patient"]
    ks = np.array([int(k) for k in per], np.int64)
    pk = np.array(list(per.values()), np.float64)
    pk /= pk.sum()
    cap = max(1, int(MAX_PATIENT_SHARE * n_images))
    # Mean images per patient is ~3.6, so n_images draws always cover n_images images.
    counts = np.minimum(rng.choice(ks, size=n_images, p=pk), cap)
    n_patients = int(np.searchsorted(np.cumsum(counts), n_images) + 1)
    counts = counts[:n_patients]
    counts[-1] -= counts.sum() - n_images
    patient = np.repeat(np.arange(n_patients), counts)
    starts = np.cumsum(counts) - counts
    followup = np.arange(n_images) - np.repeat(starts, counts)

    table, p = _combination_table()
    fresh = rng.choice(len(p), size=n_images, p=p)
    repeat = rng.random(n_images) < stats["followup_repeat_probability"]
    repeat[followup == 0] = False
    # Each image copies the set of the latest non-repeating image of its patient (itself if
    # fresh); first images are always fresh, so the running maximum never crosses patients.
    source = np.maximum.accumulate(np.where(repeat, -1, np.arange(n_images)))
    labels = table[fresh[source]]
    return PhantomCohort(labels, patient, followup, n_patients)
