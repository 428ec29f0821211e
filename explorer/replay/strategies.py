"""The strategies a replay compares, as variants of the recorded search's own spec, and their
summary over repeated seeds."""

from __future__ import annotations

import copy
import math
import statistics

from explorer.overrides import apply_sets
from explorer.replay.simulate import NotReplayable, replay_once
from explorer.replay.table import Recorded, describe
from explorer.search.space import config_key
from explorer.spec.load import validate_spec

#: name -> the --set values that make the strategy from the recorded spec.
STRATEGIES = {
    "random": ["search.searcher.type=random", "search.scheduler.type=none",
               "search.pretraining={}"],
    "tpe": ["search.searcher.type=tpe", "search.scheduler.type=none", "search.pretraining={}"],
    "tpe+asha": ["search.searcher.type=tpe", "search.scheduler.type=asha",
                 "search.pretraining={}"],
    "tpe+asha+mf": ["search.searcher.type=tpe", "search.scheduler.type=asha",
                    "search.pretraining.stage=true"],
}


def variant(rec: Recorded, sets: list[str], seed: int | None = None):
    raw = apply_sets(copy.deepcopy(rec.loaded.raw), [*sets, *([] if seed is None else
                                              [f"search.searcher.seed={seed}"])])
    return validate_spec(raw, f"replay of {rec.run_dir}")


def _mf_sets(rec: Recorded, sets: list[str]) -> list[str]:
    """Multi-fidelity pre-training as the search ran it, else as ``sets`` say, else with the
    measured defaults (``explorer.spec.search_spec.MEASURED_MILESTONES``)."""
    if rec.loaded.spec.search.pretraining.fidelity is not None or \
            any(s.startswith("search.pretraining.fidelity") for s in sets):
        return []
    return ["search.pretraining.fidelity={}"]


def summarise(rec: Recorded, name: str, sets: list[str], seeds: list[int],
              num_samples: int) -> dict:
    """The strategy over ``seeds``: cost, epochs, and how good the recipe it selects is."""
    if name == "tpe+asha+mf":
        sets = [*sets, *_mf_sets(rec, sets)]
    truth = {k: r.true_value for k, r in rec.runs.items()}
    top = max(v for v in truth.values() if math.isfinite(v))
    rows = []
    try:
        for seed in seeds:
            out = replay_once(rec, variant(rec, sets, seed), seed, num_samples)
            best = out.best()
            chosen = truth.get(config_key(best["params"], rec.params)) if best else None
            rows.append({"cost": out.cost_device_s, "pretrain_epochs": out.pretrain_epochs,
                         "finetune_epochs": out.finetune_epochs,
                         "censored": out.censored_epochs, "substituted": out.substituted,
                         "makespan": out.makespan_s,
                         "best": describe(best["params"]) if best else None,
                         "true": chosen, "found_top": chosen is not None and chosen >= top})
    except NotReplayable as e:
        return {"strategy": name, "replayable": False, "why": str(e)}

    def mean(k):
        return statistics.fmean(r[k] for r in rows)

    picks = statistics.multimode(r["best"] for r in rows)
    trues = [r["true"] for r in rows if r["true"] is not None]
    return {"strategy": name, "replayable": True, "runs": len(rows),
            "cost_device_s": mean("cost"),
            "cost_sd": statistics.pstdev(r["cost"] for r in rows),
            "pretrain_epochs": mean("pretrain_epochs"),
            "finetune_epochs": mean("finetune_epochs"), "makespan_s": mean("makespan"),
            "censored_epochs": mean("censored"), "substituted": mean("substituted"),
            "found_top": sum(r["found_top"] for r in rows) / len(rows),
            "selected_auc": statistics.fmean(trues) if trues else None,
            "regret": top - statistics.fmean(trues) if trues else None,
            "most_chosen": picks[0] if picks else None, "per_seed": rows}
