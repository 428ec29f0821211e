"""How well does a cheap probe at a pre-training milestone rank encoders by their final
fine-tuned AUC? (issue 12: choose the probe and the milestones by measurement)

Two steps, both in one storage so the second reuses what the first trained:

1. ``python -m bench.probe_ranking pretrain --storage DIR [--set KEY=VALUE ...]`` pre-trains
   the encoder of every mask ratio of ``search_spaces/mask_ratio.yaml`` (cpu scale unless
   ``--set scale=...``) in the shared encoder cache, epoch by epoch through the same code as the
   pre-training stage (``explorer.train.staged.pretrain_segment``), with every probe of
   ``explorer.train.probe`` at every epoch. Two processes, one thread each.
2. The real search over the same mask ratios, every trial fine-tuned to the end (it prints
   the command: ``--set search.scheduler.type=none``, as many samples as ratios): its trials
   reuse the encoders, and its results store holds each encoder's final validation mean AUC.
3. ``python -m bench.probe_ranking table DIR/mask_ratio`` prints, per probe and milestone, the
   Spearman rank correlation of the probe's score with the final fine-tuned AUC (and, for
   contrast, of minus the MAE loss, which depends on the mask ratio itself).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "mask_ratio.yaml"


def _ratios(loaded) -> list[float]:
    from explorer.search.space import all_configs
    from explorer.search.tuning import space_params

    return [c["pretrain.mask_ratio"] for c in all_configs(space_params(loaded))]


def _one(storage: str, sets: list[str], ratio: float) -> dict:
    import torch

    from explorer.data import load_data
    from explorer.spec import load_spec
    from explorer.train.probe import PROBES
    from explorer.train.session import LocalSession
    from explorer.train.staged import pretrain_segment

    torch.set_num_threads(1)
    loaded = load_spec(SPACE, sets)
    recipe = loaded.recipe_for({"pretrain.mask_ratio": ratio})
    data = load_data(recipe.data)
    t0 = time.time()
    out = {}
    for epoch in range(1, recipe.pretrain.epochs + 1):
        out = pretrain_segment(recipe, data, storage, LocalSession(), until=epoch,
                               probes=PROBES, owner="bench.probe_ranking")
    return {"mask_ratio": ratio, "key": out["key"], "wall_s": time.time() - t0}


def pretrain(args) -> None:
    from explorer.spec import load_spec

    loaded = load_spec(SPACE, args.set)
    ratios = _ratios(loaded)
    with ProcessPoolExecutor(args.procs, mp_context=get_context("spawn")) as pool:
        for rec in pool.map(_one, [args.storage] * len(ratios), [args.set] * len(ratios),
                            ratios):
            print(json.dumps(rec), flush=True)
    sets = " ".join(f"--set {s}" for s in args.set)
    print(f"next: python -m explorer.search {SPACE.relative_to(REPO)} --storage {args.storage} "
          f"--set search.num_samples={len(ratios)} --set search.scheduler.type=none "
          f"--set 'baselines=[]' {sets}")


def rank_table(run_dir: Path) -> tuple[list[dict], int]:
    """Rows {signal, epoch, spearman, n} and the number of encoders."""
    import pandas as pd
    from scipy.stats import spearmanr

    from explorer.storage import read_json

    trials = pd.read_parquet(run_dir / "results" / "trials.parquet")
    trials = trials[(trials.kind == "recipe") & trials.val_mean_auc.notna()]
    final = trials.groupby("pretrain_key")["val_mean_auc"].max()
    signals: dict[tuple[str, int], dict[str, float]] = {}
    for key in final.index:
        enc = run_dir.parent / "_encoders" / key
        for r in read_json(enc / "probes.json", []) or []:
            signals.setdefault((r["probe"], r["epoch"]), {})[key] = r["value"]
        for e in read_json(enc / "losses.json", []) or []:
            signals.setdefault(("-MAE loss", e["epoch"]), {})[key] = -e["loss"]
    rows = []
    for (signal, epoch), by_key in sorted(signals.items()):
        keys = sorted(by_key)
        if len(keys) < 3:
            continue
        rho = spearmanr([by_key[k] for k in keys], [final[k] for k in keys]).statistic
        rows.append({"signal": signal, "epoch": epoch, "spearman": float(rho), "n": len(keys)})
    return rows, len(final)


def table(args) -> None:
    rows, n = rank_table(Path(args.run_dir))
    epochs = sorted({r["epoch"] for r in rows})
    print(f"Spearman rank correlation with the final fine-tuned validation mean AUC, "
          f"{n} encoders ({args.run_dir})\n")
    print("| signal | " + " | ".join(f"epoch {e}" for e in epochs) + " |")
    print("|---|" + "---:|" * len(epochs))
    for signal in sorted({r["signal"] for r in rows}):
        by = {r["epoch"]: r["spearman"] for r in rows if r["signal"] == signal}
        print(f"| {signal} | " + " | ".join(f"{by[e]:+.2f}" if e in by else "" for e in epochs)
              + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe_ranking")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pretrain")
    p.add_argument("--storage", required=True)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--procs", type=int, default=2)
    t = sub.add_parser("table")
    t.add_argument("run_dir")
    args = parser.parse_args(argv)
    {"pretrain": pretrain, "table": table}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
