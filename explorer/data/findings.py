"""Label vocabularies of the supported data sets."""

from __future__ import annotations

# ChestX-ray14 in the order used by the papers (and by the MAE study's code and ChestMNIST).
FINDINGS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
)

# CheXpert competition findings, alphabetical (the order of the CheXpert paper's tables).
CHEXPERT_FINDINGS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion",
)

NO_FINDING = "No Finding"
