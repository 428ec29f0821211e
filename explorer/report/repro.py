"""Section 8, reproducibility: the spec, resolved configs with hashes, seeds, data fingerprint
and split sizes, skipped files, versions, commit, hardware and wall time per stage.

Everything comes from ``meta.json`` and the trials table. Known keys are shown first, in a
fixed order, and any other key that a newer writer adds is shown after them, so nothing is
hidden and nothing missing breaks the page.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from explorer.report._format import fmt_seconds, is_missing
from explorer.results import Results

#: (meta key, heading) in display order; other keys follow under their own names.
KNOWN_KEYS = (
    ("name", "search name"),
    ("created", "created"),
    ("scale", "scale"),
    ("metric", "selection metric"),
    ("num_samples", "trials requested"),
    ("finalists_k", "finalists scored on test"),
    ("seeds", "seeds"),
    ("data", "data (source, fingerprint, split sizes, patients, skipped files)"),
    ("findings", "findings"),
    ("searched", "searched parameters"),
    ("versions", "package versions"),
    ("git_commit", "git commit"),
    ("hardware", "hardware"),
    ("stage_wall_s", "wall time per stage"),
)
SHOWN_ELSEWHERE = ("spec_yaml", "spec")


class ConfigEntry(NamedTuple):
    label: str
    kind: str
    config_hash: str | None
    config_text: str  # pretty-printed JSON (or the stored text when it is not JSON)


class ReproInfo(NamedTuple):
    spec_yaml: str | None
    spec: object  # the validated spec as data (dict), when stored
    facts: list[tuple[str, object]]  # (heading, JSON-like value) in display order
    configs: list[ConfigEntry]
    total_trial_wall_s: float | None


def _pretty(text) -> str:
    if is_missing(text):
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True)
    except (TypeError, ValueError):
        return str(text)


def get_repro_info(results: Results, bootstrap_seed: int | None = None) -> ReproInfo:
    """``bootstrap_seed``: the seed this report's bootstrap used, shown in place of the one the
    search recorded (a report rebuilt with ``--seed`` uses another)."""
    meta = results.meta
    if bootstrap_seed is not None and isinstance(meta.get("seeds"), dict):
        meta = {**meta, "seeds": {**meta["seeds"], "bootstrap": bootstrap_seed}}
    facts = []
    for key, heading in KNOWN_KEYS:
        if key in meta and meta[key] is not None:
            value = meta[key]
            if key == "stage_wall_s" and isinstance(value, dict):
                value = {k: fmt_seconds(v) if isinstance(v, (int, float)) else v
                         for k, v in value.items()}
            facts.append((heading, value))
    known = {k for k, _ in KNOWN_KEYS} | set(SHOWN_ELSEWHERE)
    facts += [(k, v) for k, v in meta.items() if k not in known]
    configs, total = [], None
    t = results.trials
    if not t.empty:
        for _, r in t.iterrows():
            configs.append(ConfigEntry(
                str(r["label"]), str(r["kind"]),
                None if is_missing(r.get("config_hash")) else str(r["config_hash"]),
                _pretty(r.get("config_json"))))
        if "wall_time_s" in t:
            total = float(t["wall_time_s"].fillna(0).sum())
    spec_yaml = meta.get("spec_yaml")
    return ReproInfo(None if spec_yaml is None else str(spec_yaml), meta.get("spec"), facts,
                     configs, total)
