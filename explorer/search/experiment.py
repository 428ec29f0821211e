"""The on-disk record of one experiment: its spec, its stages, and the rules for reusing a name.

``<storage>/<name>/experiment.json`` holds the spec exactly as it was run (after ``--set``), so
``--resume`` continues the same search and a changed spec is caught instead of silently mixed
in. ``stages.json`` accumulates wall time per stage across resumes.
"""

from __future__ import annotations

import time
from pathlib import Path

from explorer import __version__
from explorer.errors import UserError
from explorer.spec import LoadedSpec, validate_spec
from explorer.spec.recipes import config_hash
from explorer.storage import Store, as_store, atomic_write_json, read_json


class Experiment:
    def __init__(self, storage: Store | str | Path, name: str):
        self.store = as_store(storage)
        self.storage = self.store.local_root  # this process' view of it (a mirror if remote)
        self.name = name
        self.dir = self.storage / name
        #: How messages name it: the folder, or the remote location (not this machine's mirror).
        self.where = f"{self.store.shown.rstrip('/')}/{name}" if self.store.is_remote \
            else str(self.dir)

    @property
    def record_path(self) -> Path:
        return self.dir / "experiment.json"

    def exists(self) -> bool:
        return self.record_path.is_file() or (self.dir / "tuner.pkl").is_file()

    def create(self, loaded: LoadedSpec) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)  # the storage root too, if new
        atomic_write_json(self.record_path, {
            "name": self.name, "spec": loaded.raw, "spec_hash": config_hash(loaded.raw),
            "spec_path": str(loaded.path) if loaded.path else None,
            "created": time.time(), "explorer_version": __version__,
        })

    def record(self) -> dict:
        rec = read_json(self.record_path)
        if not isinstance(rec, dict) or "spec" not in rec:
            raise UserError(f"{self.where}/experiment.json: missing or unreadable experiment "
                            f"record; use --name to start a new experiment")
        return rec

    def stored_spec(self) -> LoadedSpec:
        rec = self.record()
        return validate_spec(rec["spec"], str(self.record_path))

    def check_same_spec(self, loaded: LoadedSpec) -> None:
        rec = self.record()
        if rec.get("spec_hash") != config_hash(loaded.raw):
            raise UserError(
                f"{self.where}: the spec differs from the one this experiment was started with; "
                f"resume with the same spec and --set values, or use --name NEW")

    def refuse_overwrite(self, progress: str = "") -> None:
        raise UserError(
            f"{self.where} already holds an experiment named '{self.name}'{progress}: add --resume "
            f"to continue it, --extend N to add trials, or --name NEW to start another")

    def extensions(self) -> list[dict]:
        """Trials added by ``--extend N``, one Tune experiment each: [{name, num_samples}]."""
        return read_json(self.dir / "extensions.json", []) or []

    def add_extension(self, n: int) -> dict:
        exts = self.extensions()
        ext = {"name": f"extend-{len(exts) + 1}", "num_samples": n, "created": time.time()}
        atomic_write_json(self.dir / "extensions.json", [*exts, ext])
        return ext

    def add_stage_time(self, stage: str, seconds: float) -> None:
        path = self.dir / "stages.json"
        stages = read_json(path, {}) or {}
        stages[stage] = stages.get(stage, 0.0) + seconds
        atomic_write_json(path, stages)

    def stage_times(self) -> dict:
        return read_json(self.dir / "stages.json", {}) or {}
