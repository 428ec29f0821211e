"""Patient-wise splitting and capping, deterministic by seed.

Every function works on a per-image array of patient ids and returns per-image masks or
indices, so images of one patient always land together.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _rng(seed: int, purpose: str) -> np.random.Generator:
    """An independent stream per purpose, so carving val does not change which images a cap
    keeps (and vice versa)."""
    salt = int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, salt])


def carve(patients: np.ndarray, fraction: float, seed: int, purpose: str) -> np.ndarray:
    """Mask [N] of the images whose patients form a ``fraction`` share of the patients.

    At least one patient is carved and one is left whenever there are two or more.
    """
    unique = np.unique(patients)
    if unique.size == 0:
        return np.zeros(patients.shape, bool)
    n = round(fraction * unique.size)
    n = min(max(n, 1), max(unique.size - 1, 1)) if unique.size > 1 else 0
    chosen = _rng(seed, purpose).permutation(unique)[:n]
    return np.isin(patients, chosen)


def cap(patients: np.ndarray, max_images: int | None, seed: int, purpose: str) -> np.ndarray:
    """Mask [N] of at most ``max_images`` images made of whole patients (a random subset).

    Patients are visited in a seeded order and taken while they fit, so the result is close
    to the cap; if even the first patient is larger than the cap it is taken alone.
    """
    if max_images is None or patients.size <= max_images:
        return np.ones(patients.shape, bool)
    unique, counts = np.unique(patients, return_counts=True)
    order = _rng(seed, purpose).permutation(unique.size)
    taken, total = [], 0
    for j in order:
        if total + counts[j] <= max_images:
            taken.append(j)
            total += counts[j]
            if total == max_images:
                break
    if not taken:
        taken = [order[0]]
    return np.isin(patients, unique[taken])
