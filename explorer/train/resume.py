"""A fine-tuning run's record and resume state, written by rank 0 off the training thread.

Every epoch: ``history.json`` and ``summary.json``; at a new best epoch, its weights
(``best_model.pt``) and validation probabilities. At the ``checkpoint`` cadence: the resume
state ``resume.pt`` (weights, optimizer state, epoch, history, best epoch and its validation
probabilities). Best weights are kept apart from the resume state, which only names the best
epoch; whatever restarts the loop (a Train worker restarted by ``FailureConfig``, a trial
retried by Tune, ``--resume`` after a kill) rewrites the record from the newest resume state.

Between two resume states a new best overwrites ``best_model.pt``. If the run then dies, the
resumed run needs the best of the older state back, so the first such overwrite moves that
file aside as ``resume_best-e<epoch>.pt`` (a rename, no bytes written) and the resume restores
it. Best epochs only increase, so a moved-aside file never holds a later state's best; those
left over are removed when the next state is saved.

Ray's own checkpoints are not used: Tune's experiment snapshot can lag the deletion of an
older checkpoint, and a driver killed in that window left a trial Tune could not restore.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from explorer.names import RESUME
from explorer.spec.config import CheckpointConfig
from explorer.storage import atomic_torch_save
from explorer.train.artifacts import TrialArtifacts
from explorer.train.cadence import Cadence, Writer, snapshot
from explorer.train.session import unwrap

MOVED_BEST = "resume_best-e{}.pt"


def resume_files(folder: Path) -> list[Path]:
    """What only a resume needs: a finished or stopped trial can drop these."""
    return [folder / RESUME, *folder.glob(MOVED_BEST.format("*"))]


def load_state(path: Path, model: torch.nn.Module, optimizer) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    unwrap(model).load_state_dict(state.pop("model"))
    optimizer.load_state_dict(state.pop("optimizer"))
    probs = state.get("best_probs")
    state["best_probs"] = probs.numpy() if probs is not None else None
    return state


class Recorder:
    """Rank 0's writes to one trial's record. ``epoch_done`` snapshots what it needs and
    queues the writes; ``flush`` waits for them (before ``done.json``)."""

    def __init__(self, art: TrialArtifacts, data, cfg: CheckpointConfig, start_epoch: int):
        self.art, self.data = art, data
        self.cadence = Cadence(cfg, start_epoch)
        self.writer = Writer()
        self.state_best: int | None = None   # best epoch named by the newest resume state
        self.file_best: int | None = None    # epoch of the weights in best_model.pt

    def restore(self, st: dict) -> None:
        """Make the record that of the resume state ``st`` (before training goes on)."""
        art, best = self.art, (st["best"] or {}).get("epoch")
        moved = art.path(MOVED_BEST.format(best))
        if best is not None and moved.is_file():
            os.replace(moved, art.path("best_model.pt"))
        self._drop_moved()
        self.state_best = self.file_best = best
        if st["best_probs"] is not None:
            art.write_predictions("val", self.data.val, st["best_probs"], self.data.findings)

    def epoch_done(self, st: dict, model: torch.nn.Module, optimizer, new_best: bool,
                   summary: dict) -> bool:
        """Queue this epoch's writes; whether a resume state is among them."""
        epoch = st["epoch"]
        best_weights = snapshot(unwrap(model).state_dict()) if new_best else None
        save = self.cadence.due(epoch)
        state = None
        if save:
            self.cadence.mark(epoch)
            probs = st["best_probs"]
            state = {"model": snapshot(unwrap(model).state_dict()),
                     "optimizer": snapshot(optimizer.state_dict()),
                     "epoch": epoch, "history": list(st["history"]), "best": dict(st["best"]),
                     "best_probs": torch.from_numpy(probs) if probs is not None else None,
                     "plan": st.get("plan")}
        history, best = list(st["history"]), dict(st["best"])
        probs = st["best_probs"]

        def job() -> None:
            if best_weights is not None:
                self._write_best(best["epoch"], best_weights, probs)
            self.art.write_json("history.json", history)
            self.art.write_json("summary.json", {**summary, "updated": time.time()})
            if state is not None:
                atomic_torch_save(state, self.art.path(RESUME))
                self.state_best = best["epoch"]
                self._drop_moved()
            self.art.commit()

        self.writer.submit(job)
        return save

    def _write_best(self, epoch: int, weights: dict, probs: np.ndarray) -> None:
        current = self.art.path("best_model.pt")
        if self.state_best is not None and self.file_best == self.state_best \
                and current.is_file():
            os.replace(current, self.art.path(MOVED_BEST.format(self.state_best)))
        self.art.save_model(weights)
        self.file_best = epoch
        self.art.write_predictions("val", self.data.val, probs, self.data.findings)

    def _drop_moved(self) -> None:
        for p in resume_files(self.art.root)[1:]:
            p.unlink(missing_ok=True)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()

    def abandon(self) -> None:
        """Wait for the queued writes, ignoring their errors (another one is on its way)."""
        self.writer.close()
