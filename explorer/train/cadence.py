"""When a run writes its resume state, and the thread that writes it.

A resume state (weights + optimizer state: 0.26 GB for ViT-S, 1 GB for ViT-B) written after
every epoch costs hundreds of GB per paper-scale run, and the training ranks used to wait for
rank 0 to write it. Now it is written when ``checkpoint.every_epochs`` or
``checkpoint.every_minutes`` says, from a CPU snapshot, by a background thread.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from explorer.spec.config import CheckpointConfig
from explorer.storage import atomic_torch_save, atomic_write_bytes


class Cadence:
    """Due when ``every_epochs`` epochs or ``every_minutes`` minutes have passed since the
    last resume state (or the start of this process)."""

    def __init__(self, cfg: CheckpointConfig, start_epoch: int,
                 clock: Callable[[], float] = time.monotonic):
        self.cfg, self.clock = cfg, clock
        self.last_epoch, self.last_time = start_epoch, clock()

    def due(self, epoch: int) -> bool:
        c = self.cfg
        return ((c.every_epochs is not None and epoch - self.last_epoch >= c.every_epochs)
                or (c.every_minutes is not None
                    and self.clock() - self.last_time >= 60 * c.every_minutes))

    def mark(self, epoch: int) -> None:
        self.last_epoch, self.last_time = epoch, self.clock()


def snapshot(obj: Any) -> Any:
    """A CPU copy of every tensor in a nested state: the training thread goes on changing the
    live tensors while the copy is written."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


class Writer:
    """Runs write jobs in order on one background thread.

    ``submit`` returns at once unless a job is already waiting (then it waits: at most two
    snapshots exist besides the live model). ``flush`` waits for every job. A job's exception
    is raised in the submitting thread at the next ``submit`` or ``flush``.
    """

    def __init__(self):
        self._jobs: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="checkpoint-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                if self._error is None:  # after a failure, later writes would be inconsistent
                    job()
            except BaseException as exc:
                self._error = exc
            finally:
                self._jobs.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def submit(self, job: Callable[[], None]) -> None:
        self._raise()
        self._jobs.put(job)

    def flush(self) -> None:
        self._jobs.join()
        self._raise()

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()


def partial_saver(workdir: Path, on_save: Callable[[], None] | None = None
                  ) -> Callable[[dict], None]:
    """How a pre-training (MAE or MoCo) saves its resume state: ``partial.pt`` and
    ``losses.json`` (its mean loss per epoch, ``state["losses"]``), each written whole, then
    ``on_save`` (e.g. a push to remote storage). Runs on the ``Writer`` thread."""
    def save(state: dict) -> None:
        atomic_torch_save(state, workdir / "partial.pt")
        atomic_write_bytes(workdir / "losses.json", json.dumps(state["losses"]).encode())
        if on_save is not None:
            on_save()
    return save


@contextmanager
def rank0_writer(is_main: bool, workdir: Path, losses: list[dict]) -> Iterator[Writer | None]:
    """A pre-training loop's ``Writer`` on rank 0 (``None`` on the other ranks). When the loop
    ends without an error it waits for the last resume state, then writes ``losses.json`` (the
    ``losses`` list as the loop left it); the thread is stopped either way."""
    writer = Writer() if is_main else None
    try:
        yield writer
        if writer is not None:
            writer.flush()
            atomic_write_bytes(workdir / "losses.json", json.dumps(losses).encode())
    finally:
        if writer is not None:
            writer.close()
