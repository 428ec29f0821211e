"""A trial's own record in the experiment folder: what the results store is built from.

``<run_dir>/trials/<trial_id>/`` (search trials) or ``<storage>/_baselines/<key>/`` (baselines):

- ``config.json``            resolved recipe, its hash, searched parameters, kind
- ``encoder.json``           which encoder the trial fine-tuned from, and whether it trained it
- ``history.json``           one entry per fine-tuning epoch
- ``resumes.json``           each restart from a checkpoint (worker or trial restart, --resume)
- ``summary.json``           best epoch, its validation mean AUC and per-class AUCs, epochs run
- ``best_model.pt``          weights at the best validation epoch (for the one test scoring)
- ``val_predictions.parquet``  / ``test_predictions.parquet``  probabilities per image

Only rank 0 writes; every file is replaced atomically, so a killed trial leaves a consistent
record of its last finished epoch.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from explorer.storage import atomic_torch_save, atomic_write_bytes, atomic_write_json, read_json


class TrialArtifacts:
    """``commit()`` makes what was written so far durable beyond this machine (a remote
    storage's push; nothing to do on a file system)."""

    def __init__(self, root: str | Path, commit: Callable[[], None] | None = None):
        self.root = Path(root)
        self._commit = commit

    def commit(self) -> None:
        if self._commit is not None:
            self._commit()

    def path(self, name: str) -> Path:
        return self.root / name

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.root / name, obj)

    def read_json(self, name: str, default: Any = None) -> Any:
        return read_json(self.root / name, default)

    def save_model(self, state: dict) -> None:
        atomic_torch_save(state, self.root / "best_model.pt")

    def write_predictions(self, split_name: str, split, probs: np.ndarray,
                          findings: tuple[str, ...]) -> None:
        df = predictions_frame(split, probs, findings)
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write_bytes(self.root / f"{split_name}_predictions.parquet", buf.getvalue())

    def read_predictions(self, split_name: str) -> pd.DataFrame | None:
        p = self.root / f"{split_name}_predictions.parquet"
        return pd.read_parquet(p) if p.is_file() else None


def predictions_frame(split, probs: np.ndarray, findings: tuple[str, ...]) -> pd.DataFrame:
    df = pd.DataFrame({"image_id": split.image_ids.astype(str),
                       "patient_id": split.patient_ids.astype(str)})
    for j, f in enumerate(findings):
        df[f] = probs[:, j].astype(np.float32)
    return df
