"""Does MoCo v2's InfoNCE loss fall? One MoCo v2 pre-training, in process (no Ray), loss per epoch.

    python -m bench.moco_curve [--recipe densenet121_mocov2] [--scale cpu]
        [--over '{"pretrain": {"epochs": 30}}'] [--tag NAME]

Runs ``explorer.train.moco.moco_loop`` (the same loop a search's MoCo encoder trains with) on
the scale's data (or the overlay's: ``{"data": {"source": "chestxray14", "root": DIR,
"allow_outside_root": true}}`` for the NIH mini folder), one thread, and prints one Markdown row:
the mean InfoNCE loss per epoch, the chance level ln(queue + 1) (what the loss is when a query's
key is no closer to it than the queue's negatives), the fall from epoch 2 (epoch 1 meets a queue
of random vectors, so it sits below chance) to the mean of the last three epochs, and seconds.
docs/benchmarks.md section 11 holds the runs that set the `cpu` and `smoke` queues.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="densenet121_mocov2")
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--over", default="{}", help="a JSON overlay on the resolved recipe")
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)

    import torch

    from explorer.data import load_data
    from explorer.spec.recipes import resolve_recipe
    from explorer.train.moco import moco_loop
    from explorer.train.session import LocalSession

    torch.set_num_threads(1)
    recipe = resolve_recipe(args.recipe, args.scale, (json.loads(args.over),))
    data = load_data(recipe.data)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        moco_loop(recipe, data, LocalSession("bench"), Path(tmp))
        losses = [e["loss"] for e in json.loads((Path(tmp) / "losses.json").read_text())]
    seconds = time.perf_counter() - t0
    queue = recipe.pretrain.moco.queue_size
    fall = losses[1] - sum(losses[-3:]) / len(losses[-3:]) if len(losses) >= 2 else float("nan")
    print("| tag | data (train images, px) | queue | loss per epoch | chance | fall from epoch 2 "
          "| s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.tag} | {recipe.data.source} ({len(data.train)}, {recipe.data.image_size}) | "
          f"{queue} | {' '.join(f'{v:.3f}' for v in losses)} | {math.log(queue + 1):.3f} | "
          f"{fall:+.3f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
