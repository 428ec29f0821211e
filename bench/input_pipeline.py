"""Input pipeline headroom: images/s the data pipeline delivers / images/s the training step eats.

    python -m bench.input_pipeline [--rounds 30] [--threads 1]

At the cpu scale, as a trial runs (1 torch thread, ``data.loader_workers: 0``, batch 64): the
built-in phantom's train split from the pre-resized cache (``load_data``, a memory-mapped uint8
array), ``XrayDataset`` + ``build_transform(train=True)`` with the recipe's augmentation, and
``explorer.train.common.train_loader`` (the DataLoader the loops use, random sampler, collate).

- fine-tuning: RandomResizedCrop(0.08, 1) + flip + RandAugment ``rand-m6-mstd0.5-inc1``, against
  the ViT fine-tuning step of ``bench.machine`` (ViT-micro, 64 px, patch 8);
- pre-training: RandomResizedCrop(0.5, 1) + flip, against the MAE step (mask 0.90) of
  ``bench.masking``.

Each round fetches one batch from the loader (cycling epochs, so iterator start-up and reshuffles
are included) and runs one training step on a fixed batch, interleaved; headroom = median over
rounds of step time / batch fetch time. Target: >= 5x for fine-tuning (the data never slows a
trial by more than ~20%).
"""

from __future__ import annotations

import argparse
import time

import torch

from bench._common import machine_line, median, print_table

TARGET = 5.0


class Batches:
    """Endless batches from a DataLoader, a new epoch (reshuffled) when one runs out."""

    def __init__(self, loader, seed: int):
        from explorer.train.common import set_epoch

        self.loader, self.seed, self.epoch, self.set_epoch = loader, seed, 0, set_epoch
        self.it = None

    def fetch(self) -> int:
        if self.it is None:
            self.set_epoch(self.loader, self.epoch, self.seed)
            self.it = iter(self.loader)
        try:
            imgs, _ = next(self.it)
        except StopIteration:
            self.epoch += 1
            self.it = None
            return self.fetch()
        return len(imgs)


def loader_for(recipe, data, stage: str):
    from explorer.data import XrayDataset, build_transform
    from explorer.train.common import train_loader
    from explorer.train.session import LocalSession

    if stage == "finetune":
        f = recipe.finetune
        tf = build_transform(recipe.data, train=True, crop_scale=tuple(f.crop_scale),
                             hflip=f.hflip, rand_augment=f.rand_augment,
                             random_erasing=f.random_erasing, interpolation=f.interpolation)
        batch, what = f.batch_size, f"crop+flip+RandAugment {f.rand_augment}"
    else:
        p = recipe.pretrain
        tf = build_transform(recipe.data, train=True, crop_scale=tuple(p.crop_scale),
                             hflip=p.hflip, interpolation=p.interpolation)
        batch, what = p.batch_size, f"crop{tuple(p.crop_scale)}+flip"
    loader = train_loader(XrayDataset(data.train, tf), batch, LocalSession(),
                          recipe.data.loader_workers, seed=recipe.seed)
    return Batches(loader, recipe.seed), batch, what


def bench_stage(stage: str, recipe, data, rounds: int) -> list[object]:
    from bench.machine import finetune_step, pretrain_step

    batches, batch, what = loader_for(recipe, data, stage)
    shape, step, _ = finetune_step() if stage == "finetune" else pretrain_step()
    for _ in range(2):  # warm-up: first epoch's iterator, oneDNN primitives
        batches.fetch()
        step()
    t_fetch, t_step = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        n = batches.fetch()
        t1 = time.perf_counter()
        step()
        t2 = time.perf_counter()
        t_fetch.append((t1 - t0) / n * batch)  # a short last batch counts per image
        t_step.append(t2 - t1)
    headroom = median([s / f for s, f in zip(t_step, t_fetch)])
    verdict = ("met" if headroom >= TARGET else "MISSED") if stage == "finetune" else "-"
    return [stage, what, batch, f"{batch / median(t_fetch):.0f}",
            f"{batch / median(t_step):.0f}", shape.split(":")[0], f"{headroom:.1f}x", verdict]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (trials use 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from explorer.data import load_data
    from explorer.spec.recipes import resolve_recipe

    recipe = resolve_recipe("mae_vit_small_xray", "cpu")
    data = load_data(recipe.data)
    print(machine_line())
    print(f"data: {recipe.data.source}, {len(data.train)} train images at "
          f"{recipe.data.train_cache_size} px, loader_workers={recipe.data.loader_workers}")
    rows = [bench_stage(s, recipe, data, args.rounds) for s in ("finetune", "pretrain")]
    print_table(["stage", "augmentation", "batch", "pipeline img/s", "train step img/s",
                 "step", "headroom (pipeline / step)", f"target >= {TARGET:g}x"], rows)


if __name__ == "__main__":
    main()
