"""Masking speed-up: one MAE pre-training step at mask 0.75 / 0.90 against the same step at mask 0.

    python -m bench.masking [--threads 1] [--rounds 9] [--paper-batch 8] [--only cpu|paper]

A step is what ``explorer.train.pretrain.pretrain_loop`` does per batch: forward (patch embed,
random masking, encoder on the visible tokens, decoder on all tokens, loss over the hidden
patches), backward, the recipe's AdamW step (``build_optimizer``), zero_grad. Two shapes, both
resolved from ``recipes/mae_vit_small_xray.yaml`` so they follow the recipe:

- ``cpu``:   the cpu scale, ViT-micro (128 x 4, 4 heads), 64 px, patch 8, decoder 128 x 2
  (4 heads), batch 64 (the scale's batch);
- ``paper``: the study's ViT-S/16 at 224 px, decoder 512 x 2 (16 heads), batch 8 (the paper's
  256 per worker is not a CPU size; the ratio hardly depends on the batch).

Measured speed-up = median over interleaved rounds (see ``bench._common``) of step time at
mask 0 / step time at mask m in the same round (pairing within a round cancels slow drifts of
a shared machine). FLOP ratio = FLOPs of the mask-0 step / FLOPs of the mask-m
step, both counted by ``torch.utils.flop_counter.FlopCounterMode`` on one real fwd+bwd (matmuls,
the patch-embed convolution, and attention through a formula for CPU SDPA, which the counter
does not count by itself). Target: measured / FLOP ratio >= 0.9, i.e. the step gets at least
90% of the speed-up that the work it skips allows.
"""

from __future__ import annotations

import argparse

import torch

from bench._common import count_flops, machine_line, median, print_table, spread, time_interleaved

MASKS = (0.0, 0.75, 0.90)
TARGET = 0.9


def shape_recipe(scale: str):
    from explorer.spec.recipes import resolve_recipe

    return resolve_recipe("mae_vit_small_xray", scale)


def make_step(recipe, mask_ratio: float, batch: int, seed: int = 0):
    """A closure doing one pre-training step on a fixed random batch."""
    from explorer.models import create_mae
    from explorer.train.common import build_optimizer

    p = recipe.pretrain
    torch.manual_seed(seed)
    model = create_mae(recipe.model.arch, img_size=recipe.data.image_size,
                       patch_size=recipe.model.patch_size, decoder_dim=p.decoder_dim,
                       decoder_depth=p.decoder_depth, decoder_heads=p.decoder_heads,
                       norm_pix_loss=p.norm_pix_loss)
    model.train()
    opt = build_optimizer(model, p, lr=1e-4)
    side = recipe.data.image_size
    imgs = torch.randn(batch, 3, side, side)

    def step() -> None:
        loss, _, _ = model(imgs, mask_ratio=mask_ratio)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def fwd_bwd() -> None:
        loss, _, _ = model(imgs, mask_ratio=mask_ratio)
        loss.backward()
        model.zero_grad(set_to_none=True)

    return step, fwd_bwd


def bench_shape(name: str, recipe, batch: int, rounds: int) -> list[list[object]]:
    steps, flops = {}, {}
    for m in MASKS:
        step, fwd_bwd = make_step(recipe, m, batch)
        steps[m] = step
        flops[m] = count_flops(fwd_bwd)
    times = time_interleaved(steps, rounds=rounds, warmup=2)
    shape = (f"{recipe.model.arch} {recipe.data.image_size}px/{recipe.model.patch_size}, dec "
             f"{recipe.pretrain.decoder_dim}x{recipe.pretrain.decoder_depth}, b{batch}")
    rows = []
    for m in MASKS:
        t = median(times[m])
        speedup = median([a / b for a, b in zip(times[0.0], times[m])])
        flop_ratio = flops[0.0] / flops[m]
        frac = speedup / flop_ratio
        verdict = "-" if m == 0 else ("met" if frac >= TARGET else "MISSED")
        rows.append([name, shape, f"{m:.2f}", f"{t * 1000:.0f} ms", spread(times[m]),
                     f"{flops[m] / 1e9:.1f}", f"{speedup:.2f}x", f"{flop_ratio:.2f}x",
                     f"{frac:.2f}", verdict])
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (trials use 1)")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--paper-batch", type=int, default=8)
    ap.add_argument("--only", choices=("cpu", "paper"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine_line())
    rows = []
    if args.only in (None, "cpu"):
        r = shape_recipe("cpu")
        rows += bench_shape("cpu", r, r.pretrain.batch_size, args.rounds)
    if args.only in (None, "paper"):
        rows += bench_shape("paper", shape_recipe("paper"), args.paper_batch, args.rounds)
    print_table(["scale", "shape", "mask", "step (median)", "+-", "GFLOP fwd+bwd",
                 "measured speed-up", "FLOP ratio", "measured / FLOP", f"target >= {TARGET}"],
                rows)


if __name__ == "__main__":
    main()
