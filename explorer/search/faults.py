"""Ending a search on a fault, in one line, with nothing finished lost.

- A storage fault in a trial (its record or an encoder hit a full or read-only disk) reaches
  the driver as the trial's error text. Left to Tune, the trial would be retried, then marked
  ERROR, which ``--resume`` never runs again, and every later trial would fail the same way.
  ``FaultWatch`` stops the search at the trial's first failure instead, before Tune's next
  snapshot records it: the trial stays running in the stored state and ``--resume`` continues
  it from its last saved epoch.
- Tune's own writes (its state, copied every few seconds) log their failures instead of
  raising. ``FaultLog`` takes those records off Ray's handlers (they would print a traceback)
  and ``FaultWatch`` stops the search on the next step.
- SIGTERM is handled like Ctrl-C (``Terminated``), after Ray's own handler, which exits
  mid-call.

``FaultWatch`` is a Tune callback, pickled into ``tuner.pkl``: keep its module path (see
docs/architecture.md); ``tuning.restore_tuner`` hands a restored one this process' log.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from ray.tune import Callback

from explorer.storage.faults import StorageFault, fault_in_text, storage_fault


class Terminated(KeyboardInterrupt):
    """SIGTERM: a KeyboardInterrupt, so every path that keeps Ctrl-C resumable keeps it."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Raise ``Terminated`` in the main thread on SIGTERM while the block runs. Code on the
    way out may catch it and raise a KeyboardInterrupt of its own (Ray does): any interrupt
    leaving the block after a SIGTERM leaves as ``Terminated``."""
    received = []

    def handler(signum, frame):
        received.append(signum)
        raise Terminated()

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an embedding program): leave signals alone
        yield
        return
    try:
        yield
    except KeyboardInterrupt as exc:
        if received and not isinstance(exc, Terminated):
            raise Terminated() from exc
        raise
    finally:
        signal.signal(signal.SIGTERM, old)


class FaultLog(logging.Filter):
    """On Ray's log handlers: keeps the first storage fault Ray logged (Tune's state copies)
    and drops its record, so stderr holds only the search's own one line."""

    def __init__(self) -> None:
        super().__init__()
        self.fault: tuple[int, str | None] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        err = storage_fault(exc)
        # a trial's error arrives as a RayTaskError: the OSError is only in its text
        found = (err.errno, err.filename) if err is not None else \
            fault_in_text(f"{record.getMessage()}\n{exc if exc is not None else ''}")
        if found is None:
            return True
        self.fault = self.fault or found
        return False

    @contextlib.contextmanager
    def attached(self) -> Iterator[FaultLog]:
        handlers = {*logging.getLogger("ray").handlers, *logging.getLogger().handlers}
        for h in handlers:
            h.addFilter(self)
        try:
            yield self
        finally:
            for h in handlers:
                h.removeFilter(self)


def trial_error_text(trial) -> str:
    """The error Tune recorded for ``trial``: the driver's local copy first (written at once;
    the storage's copy may never arrive on a full disk)."""
    path = getattr(trial, "error_file", None)
    with contextlib.suppress(OSError, TypeError):
        if path and Path(path).is_file():
            return Path(path).read_text(errors="replace")
    with contextlib.suppress(Exception):  # the stored copy: best effort, the fault may hide it
        return str(trial.get_error() or "")
    return ""


class Halted(Exception):
    """The run beside a search that stopped was stopped with it (``FaultWatch.halt``)."""


class FaultWatch(Callback):
    """Stops a Tune run with a ``StorageFault`` when a trial fails on one, or when Tune's own
    state could not be written (``FaultLog``); with ``Halted`` once ``halt`` is set (the
    baselines' run, in a thread, when the search stops). ``where``: the experiment, as
    messages name it."""

    log: FaultLog | None = None
    halt: threading.Event | None = None

    def __init__(self, where: str, log: FaultLog | None = None,
                 halt: threading.Event | None = None):
        self.where, self.log, self.halt = where, log, halt

    def __getstate__(self) -> dict:
        return {"where": self.where}

    def _check_trial(self, trial) -> None:
        found = fault_in_text(trial_error_text(trial))
        if found is not None:
            raise StorageFault(found[0], found[1], self.where, by=f"trial {trial.trial_id}")

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self._check_trial(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._check_trial(trial)

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if self.halt is not None and self.halt.is_set():
            raise Halted()  # like a crash: Tune saves no state on the way out
        if self.log is not None and self.log.fault is not None:
            code, path = self.log.fault
            raise StorageFault(code, path, self.where, by="Tune's state")
