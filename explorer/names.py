"""Facts the whole code base shares, free of torch and Ray so that anything may import them.

- the selection metric and its mode (what the searcher, ASHA, the progress lines, the results
  store and the report all mean by "best");
- the names of the files that signal between processes (a trial's resume state);
- the one registry of model architectures: ViT sizes for MAE, CNN baselines, and the family
  each belongs to (``config`` validates ``model.arch`` against it, ``models`` builds from it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: What the search selects on: the validation mean AUC at the trial's best epoch so far.
METRIC = "best_val_mean_auc"
MODE: Literal["max"] = "max"
METRIC_DESCRIPTION = f"validation mean AUC at the trial's best epoch ({METRIC})"

#: The seed of the report's patient bootstrap when a search writes it (``python -m
#: explorer.report --seed N`` rebuilds it with another; the page says which it used).
BOOTSTRAP_SEED = 0

#: A fine-tuning run's resume state, in its record folder (see ``explorer.train.finetune``).
RESUME = "resume.pt"

#: Beside a shared encoder pre-trained in segments (``explorer.train.staged``): the probes'
#: scores at each milestone, and each segment's wall time and payer (``explorer.results.cost``).
ENCODER_PROBES = "probes.json"
ENCODER_SEGMENTS = "segments.json"

Family = Literal["vit", "cnn"]


@dataclass(frozen=True)
class Arch:
    """One architecture: its family, and for a ViT its (embed_dim, depth, num_heads)."""

    name: str
    family: Family
    vit_size: tuple[int, int, int] | None = None


#: Every architecture a recipe may name. vit_nano / vit_micro are this project's small scales
#: (tests, CPU); vit_tiny / small / base are the DeiT/timm sizes (the study uses ViT-S/16 and
#: ViT-B/16). The CNNs are timm's, for the baselines.
ARCHS: dict[str, Arch] = {a.name: a for a in (
    Arch("vit_nano", "vit", (64, 2, 2)),
    Arch("vit_micro", "vit", (128, 4, 4)),
    Arch("vit_tiny", "vit", (192, 12, 3)),
    Arch("vit_small", "vit", (384, 12, 6)),
    Arch("vit_base", "vit", (768, 12, 12)),
    Arch("densenet121", "cnn"),
    Arch("resnet50", "cnn"),
)}
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    a.name: a.vit_size for a in ARCHS.values() if a.vit_size is not None}
VIT_ARCHS: tuple[str, ...] = tuple(VIT_SIZES)
CNN_ARCHS: tuple[str, ...] = tuple(a.name for a in ARCHS.values() if a.family == "cnn")


def family_of(arch: str) -> Family:
    """``vit`` or ``cnn``; an unknown name is a ViT, the default family (validation names it)."""
    return ARCHS[arch].family if arch in ARCHS else "vit"
