"""Learning curves of one recipe at one scale: is the budget the limit?

    python -m bench.learning_curves [--recipe mae_vit_small_xray] [--scale cpu]
        [--over '{"finetune": {"epochs": 20}}'] [--store /tmp/curves-store] [--tag NAME]

Pre-trains the recipe's encoder (if it has one; shared through ``--store`` like a search's
``_encoders/``) and fine-tunes it once, in this process (no Ray), on the scale's data, then
prints one Markdown row: validation mean AUC per epoch, the best and its epoch, the final-third
gain of the best-so-far score and the "still improving" flag exactly as the report computes them
(``explorer.report.budget``), the MAE loss's last-third share, and the seconds spent. This is
how the `cpu` scale's budgets were chosen (docs/benchmarks.md section 14): every candidate run
with the same command, one JSON overlay apart.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="mae_vit_small_xray")
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--over", default="{}", help="a JSON overlay on the resolved recipe")
    ap.add_argument("--store", default=str(Path(tempfile.gettempdir()) / "curves-store"))
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)

    from explorer.data import load_data
    from explorer.report.budget import final_third_gain, final_third_share, still_improving
    from explorer.spec.recipes import resolve_recipe
    from explorer.train.artifacts import TrialArtifacts
    from explorer.train.finetune import finetune_loop
    from explorer.train.pretrain import ensure_encoder
    from explorer.train.session import LocalSession

    recipe = resolve_recipe(args.recipe, args.scale, (json.loads(args.over),))
    data = load_data(recipe.data)
    t0 = time.perf_counter()
    encoder = ensure_encoder(recipe, data, Path(args.store), LocalSession("bench"))
    t1 = time.perf_counter()
    losses = []
    if encoder.path and (Path(encoder.path).parent / "losses.json").is_file():
        losses = [e["loss"] for e in json.loads((Path(encoder.path).parent / "losses.json")
                                                .read_text())]
    session = LocalSession()
    with tempfile.TemporaryDirectory() as tmp:
        finetune_loop(recipe, data, session, encoder, TrialArtifacts(Path(tmp)))
    t2 = time.perf_counter()
    curve = [h["val_mean_auc"] for h in session.history]
    best = int(np.nanargmax(curve)) + 1
    gain = final_third_gain(curve)
    share = final_third_share(losses) if losses else float("nan")
    print("| tag | recipe | overlay | val mean AUC per epoch | best (epoch) | final-third gain "
          "| still improving | MAE last-third share | pre-train s | fine-tune s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.tag} | {args.recipe} @ {args.scale} | `{args.over}` | "
          f"{' '.join(f'{v:.3f}' for v in curve)} | {max(curve):.3f} ({best}) | {gain:+.4f} | "
          f"{still_improving(curve, best, recipe.finetune.epochs)} | {share:.2f} | "
          f"{t1 - t0:.0f} ({encoder.role}) | {t2 - t1:.0f} |")


if __name__ == "__main__":
    main()
