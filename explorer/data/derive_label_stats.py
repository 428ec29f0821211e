"""Derive the ChestX-ray14 label statistics that the phantom samples from.

Run once, commit the numbers (``nih_label_stats.json``), never the CSV::

    python -m explorer.data.derive_label_stats /path/to/Data_Entry_2017_v2020.csv

What is kept, and why:

- ``combinations``: every distinct set of findings with its image count (``""`` is No Finding).
  Drawing whole sets from this joint distribution reproduces prevalence *and* co-occurrence.
- ``images_per_patient``: how many patients have k images (follow-ups), so phantom patients
  have NIH's heavy-tailed number of visits.
- ``followup_same_labels_rate``: share of consecutive follow-ups of one patient with the same
  label set; the phantom reuses a patient's previous set with a probability derived from it
  (``followup_repeat_probability``), which keeps the per-image distribution unchanged.
- ``prevalence``: per-finding share of images (derived from ``combinations``; for reports/tests).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.data.findings import FINDINGS

DEFAULT_OUT = Path(__file__).with_name("nih_label_stats.json")


def canonical(labels: str) -> str:
    """``"Effusion|Atelectasis"`` -> ``"Atelectasis|Effusion"`` (paper order).

    ``No Finding`` becomes ``""``."""
    names = {n for n in labels.split("|") if n and n != "No Finding"}
    unknown = names - set(FINDINGS)
    if unknown:
        raise ValueError(f"unknown findings {sorted(unknown)}")
    return "|".join(f for f in FINDINGS if f in names)


def derive(csv_path: Path) -> dict:
    df = pd.read_csv(csv_path, usecols=["Image Index", "Finding Labels", "Follow-up #",
                                        "Patient ID"])
    df["combo"] = df["Finding Labels"].map(canonical)
    combos = df["combo"].value_counts()
    combos = combos.sort_values(ascending=False, kind="stable")
    combinations = {k: int(v) for k, v in sorted(combos.items(), key=lambda kv: (-kv[1], kv[0]))}

    per_patient = df.groupby("Patient ID").size().value_counts().sort_index()
    images_per_patient = {str(int(k)): int(v) for k, v in per_patient.items()}

    df = df.sort_values(["Patient ID", "Follow-up #"], kind="stable")
    same_patient = df["Patient ID"].to_numpy()[1:] == df["Patient ID"].to_numpy()[:-1]
    same_combo = df["combo"].to_numpy()[1:] == df["combo"].to_numpy()[:-1]
    rate = float(same_combo[same_patient].mean())
    p = combos.to_numpy() / combos.sum()
    chance = float((p**2).sum())   # two independent draws give the same set this often
    repeat = max(0.0, (rate - chance) / (1.0 - chance))

    n = len(df)
    prevalence = {f: sum(c for k, c in combinations.items() if f in k.split("|")) / n
                  for f in FINDINGS}
    return {
        "source": f"{csv_path.name} (NIH ChestX-ray14, all rows)",
        "findings": list(FINDINGS),
        "images": n,
        "patients": int(df["Patient ID"].nunique()),
        "combinations": combinations,
        "images_per_patient": images_per_patient,
        "followup_same_labels_rate": round(rate, 6),
        "followup_chance_same_rate": round(chance, 6),
        "followup_repeat_probability": round(repeat, 6),
        "prevalence": {f: round(v, 6) for f, v in prevalence.items()},
        "no_finding_share": round(float(np.mean(df["combo"] == "")), 6),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", type=Path, help="Data_Entry_2017_v2020.csv (all 112,120 rows)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    stats = derive(args.csv)
    args.out.write_text(json.dumps(stats, indent=1) + "\n")
    print(f"wrote {args.out}: {stats['images']} images, {stats['patients']} patients, "
          f"{len(stats['combinations'])} label sets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
