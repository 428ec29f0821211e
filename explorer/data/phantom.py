"""The built-in data source: a procedural thorax phantom with ChestX-ray14's label statistics.

No files needed. Each split is an independent cohort drawn with its own random stream
(``split_seed`` and the split name), so train does not change when val's size does, and
patients never cross splits. A patient's anatomy (size, heart, ribs, vessel pattern, where a
nodule sits) is drawn once and shared by all of their follow-ups; pose, exposure and noise
change per image. See ``phantom_render`` for the trace each finding leaves.

It exists to exercise the whole system quickly; conclusions about medicine need real data.
"""

from __future__ import annotations

import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from explorer.data import phantom_labels, phantom_render
from explorer.data.cache import SplitPlan
from explorer.data.config import DataConfig
from explorer.data.findings import FINDINGS
from explorer.data.phantom_labels import STATS_PATH, sample_cohort
from explorer.data.phantom_render import N_WAVES, render
from explorer.errors import DataError

GENERATOR_VERSION = 1          # bump whenever the pictures change for the same parameters
DEFAULT_SIZES = {"train": 2000, "val": 400, "test": 600}
#: Images the phantom draws per split at most: ChestX-ray14 has 112,120 in all.
MAX_IMAGES = 200_000
_SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}
_PIXELS_PER_CHUNK = 1 << 21    # ~8 MB float32 per temporary array


def _waves(rng, n, freq):
    ang = rng.uniform(0, np.pi, (n, N_WAVES))
    f = rng.uniform(*freq, (n, N_WAVES))
    return np.stack([f * np.cos(ang), f * np.sin(ang), rng.uniform(0, 2 * np.pi, (n, N_WAVES))], -1)


def sample_parameters(labels, patient, n_patients, rng, strength=1.0) -> tuple[dict, dict]:
    """Per-image anatomy and finding parameters (arrays [N, ...]) for a cohort."""
    n = labels.shape[0]

    def P(lo, hi):   # one value per patient, shared by their follow-ups
        return rng.uniform(lo, hi, n_patients)[patient]

    def I(lo, hi):   # noqa: E743 - one value per image
        return rng.uniform(lo, hi, n)

    has = {f: labels[:, j] > 0 for j, f in enumerate(FINDINGS)}
    a = {
        "theta": rng.normal(0, 0.05, n_patients)[patient] + rng.normal(0, 0.03, n),
        "scale": P(0.78, 0.92) + rng.normal(0, 0.015, n),
        "tx": rng.normal(0, 0.04, n), "ty": rng.normal(0.02, 0.04, n),
        "lw": P(0.9, 1.08), "lh": P(0.9, 1.08), "hs": P(0.88, 1.08),
        "dome_r": P(0.28, 0.36), "rib_phase": P(0, 1),
        "waves": _waves(rng, n_patients, (10, 16))[patient] + rng.normal(0, 0.1, (n, N_WAVES, 3)),
        "k": I(1.3, 1.9), "gain": I(0.9, 1.05), "offset": I(0.0, 0.06), "noise": I(0.01, 0.035),
    }
    a["bw"] = a["lw"] * P(1.15, 1.3)
    a["dome_l"] = a["dome_r"] + P(0.02, 0.06)   # the liver holds the right dome higher
    f = {"side": (rng.random(n_patients) < 0.5)[patient].astype(np.float32),
         "waves2": _waves(rng, n_patients, (8, 12))[patient]}
    for name in FINDINGS:
        f[name + ".s"] = P(0.5, 1.2) * I(0.9, 1.1)
    for name in ("Atelectasis", "Mass", "Nodule", "Consolidation", "Pneumonia", "Hernia"):
        f[name + ".a"], f[name + ".b"] = P(-0.8, 0.8), P(-0.8, 0.6)
    for name in ("Mass", "Nodule", "Consolidation"):
        f[name + ".side"] = (rng.random(n_patients) < 0.5)[patient].astype(np.float32)
    for name in ("Effusion", "Infiltration", "Pleural_Thickening"):
        f[name + ".mode"] = rng.choice(3, n_patients, p=[0.3, 0.3, 0.4])[patient]
    f["Atelectasis.b"] = P(0, 1)
    f["Atelectasis.ang"] = P(-0.5, 0.5)
    f["Effusion.h"] = P(0.12, 0.35)
    f["Mass.r"], f["Nodule.r"] = P(0.08, 0.13), P(0.035, 0.055)
    f["Nodule.two"] = (rng.random(n_patients) < 0.3)[patient].astype(np.float32)
    f["Consolidation.r"], f["Pneumonia.r"] = P(0.1, 0.18), P(0.12, 0.2)
    f["Pneumothorax.w"] = P(0.12, 0.28)
    f["Pleural_Thickening.t"] = P(0.06, 0.12)
    f["Hernia.r"] = P(0.1, 0.15)
    f["Cardiomegaly.x"] = P(1.25, 1.5)

    # Findings that change the anatomy itself rather than adding density.
    s = lambda name: np.clip(f[name + ".s"] * strength, 0, 1.5)   # noqa: E731
    cm = has["Cardiomegaly"]
    a["hs"] = np.where(cm, a["hs"] * (1 + (f["Cardiomegaly.x"] - 1) * s("Cardiomegaly")), a["hs"])
    em = has["Emphysema"]
    a["lh"] = np.where(em, a["lh"] * (1 + 0.08 * s("Emphysema")), a["lh"])
    for key in ("dome_r", "dome_l"):
        a[key] = np.where(em, a[key] + 0.1 * s("Emphysema"), a[key])
    a["lh"] = np.where(has["Fibrosis"], a["lh"] * (1 - 0.05 * s("Fibrosis")), a["lh"])
    at = has["Atelectasis"]   # volume loss pulls the hemidiaphragm of that side up
    lift = 0.06 * s("Atelectasis")
    a["dome_r"] = np.where(at & (f["side"] == 0), a["dome_r"] - lift, a["dome_r"])
    a["dome_l"] = np.where(at & (f["side"] == 1), a["dome_l"] - lift, a["dome_l"])
    return a, f


def generate(n: int, size: int, seed: int, stream: int, strength: float = 1.0,
             out: np.ndarray | None = None):
    """Draw one cohort of ``n`` images at ``size`` px.

    Returns (images uint8 [n, S, S] (``out`` if given), labels float32 [n, 14],
    patient int64 [n], followup int64 [n]). Deterministic in (n, seed, stream, strength, size).
    """
    rng = np.random.default_rng([seed, stream, GENERATOR_VERSION])
    cohort = sample_cohort(n, rng)
    a, f = sample_parameters(cohort.labels, cohort.patient, cohort.n_patients, rng, strength)
    images = np.empty((n, size, size), np.uint8) if out is None else out
    step = max(1, _PIXELS_PER_CHUNK // (size * size))

    def chunk(k: int) -> None:   # chunks are independent: own slice, own noise stream
        sl = slice(k * step, min((k + 1) * step, n))
        noise = np.random.default_rng([seed, stream, GENERATOR_VERSION, k])
        images[sl] = render({key: v[sl] for key, v in a.items()},
                            {key: v[sl] for key, v in f.items()},
                            cohort.labels[sl], size, strength, noise)

    n_chunks = -(-n // step)
    # numpy releases the GIL on large arrays, so threads scale with cores
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1, max(n_chunks, 1))) as pool:
        list(pool.map(chunk, range(n_chunks)))
    return images, cohort.labels, cohort.patient, cohort.followup


def plan_phantom(cfg: DataConfig) -> tuple[tuple[str, ...], dict[str, SplitPlan], dict]:
    """Split plans for the phantom; pixels are drawn only when the cache asks for them."""
    stats_hash = hashlib.sha256(STATS_PATH.read_bytes()).hexdigest()[:16]
    # The generator's own source is part of the key, so an edited phantom never reuses stale
    # pictures even when GENERATOR_VERSION was not bumped.
    code = hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in
                                   (phantom_labels, phantom_render, sys.modules[__name__])))
    plans, sizes = {}, {}
    for name, stream in _SPLIT_STREAM.items():
        n = getattr(cfg.images, name) or DEFAULT_SIZES[name]
        if n > MAX_IMAGES:   # planning alone would hold one Python string per image
            raise DataError(f"data.images.{name} {n:,}: the phantom draws at most "
                            f"{MAX_IMAGES:,} images per split")
        sizes[name] = n
        rng = np.random.default_rng([cfg.split_seed, stream, GENERATOR_VERSION])
        cohort = sample_cohort(n, rng)
        pid = np.array([f"phantom-{name}-{p:05d}" for p in cohort.patient])
        iid = np.array([f"{p}_{k:03d}" for p, k in zip(pid, cohort.followup)])

        def fill(out, n=n, stream=stream):
            generate(n, out.shape[1], cfg.split_seed, stream, cfg.phantom_strength, out=out)

        key = {"generator": GENERATOR_VERSION, "code": code.hexdigest()[:16],
               "stats": stats_hash, "seed": cfg.split_seed,
               "n": n, "strength": cfg.phantom_strength}
        plans[name] = SplitPlan(name, cohort.labels, iid, pid, key, fill=fill)
    notes = {
        "generator_version": GENERATOR_VERSION,
        "label_statistics": "ChestX-ray14 joint label-set and images-per-patient distributions "
                            "(explorer/data/nih_label_stats.json, sha256 " + stats_hash + ")",
        "requested_sizes": sizes,
        "default_sizes": DEFAULT_SIZES,
        "phantom_strength": cfg.phantom_strength,
        "caveat": "synthetic phantom: exercises the system; conclusions about medicine need "
                  "real data",
    }
    return FINDINGS, plans, notes
