"""Cache resolution for paper-scale training crops: detail kept, disk, build time, img/s per core.

    python -m bench.cache_resolution [--images 16] [--rounds 7] [--sizes 256 384 ... 1024]

The study (lambert-x/medical_mae) crops each fine-tuning image from the 1024-px NIH original:
timm's RandomResizedCrop, scale (0.08, 1), ratio (3/4, 4/3), output 224 px. A cache whose
training images have a shorter side S gives the same crops from S/1024 as many pixels. For each
S (and for decoding the original PNG in the loader, "orig"):

- crops upscaled: share of the fine-tuning crops (50,000 draws of timm's own crop sampler on an
  S x S image) whose narrower side holds fewer than 224 cache pixels although the original's
  crop holds more; detail = the linear detail kept relative to the original's crop,
  min(1, side_S / 224) / min(1, side_1024 / 224), geometric mean of the two sides, as the mean
  over crops and the worst crop.
  Analytically, no crop is upscaled once S >= 224 / sqrt(0.08 * 3/4) = 915.
- disk: bytes per training image (packed uint8, exactly S^2 for a square original), and the
  cache for the full ChestX-ray14 (112,120 images) in this project's layout: train (the study's
  75,312) at S, val and test (36,808) at the eval resize 256. "orig": no cache (the PNGs).
- build: seconds per image to decode a 1024-px PNG and resize it to S (one thread).
- img/s per core: one thread (``torch.set_num_threads(1)``, ``loader_workers: 0``), items of
  ``XrayDataset`` with the paper recipe's fine-tuning transform (crop + flip + RandAugment
  ``rand-m6-mstd0.5-inc1`` + tensor + normalise, 224 px) and pre-training transform (crop
  (0.5, 1) + flip); "orig" decodes the PNG per item first. Interleaved rounds, medians.

Sources: 1024-px phantom images (the built-in data, drawn with noise) written as 8-bit PNGs like
NIH's; they compress less (0.63 MiB against NIH's ~0.4 MB average), so the "orig" column and the
build times err on the slow side.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench._common import machine_line, median, print_table, spread, time_interleaved

NIH_TOTAL, NIH_TRAIN = 112_120, 75_312   # the study's train split; val + test are the rest
ORIGINAL = 1024
OUT = 224


def crop_detail(size: int, draws: int, seed: int = 0) -> tuple[float, float, float]:
    """(share of crops upscaled from fewer pixels than the original's, mean and worst detail
    kept)."""
    from timm.data.transforms import RandomResizedCropAndInterpolation

    random.seed(seed)   # timm's crop sampler draws from Python's random module
    img = Image.new("L", (size, size))
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    lost, detail, worst = 0, 0.0, 1.0
    for _ in range(draws):
        _, _, h, w = RandomResizedCropAndInterpolation.get_params(img, scale, ratio)
        kept = []
        for side in (h, w):
            orig = side * ORIGINAL / size
            kept.append(min(1.0, side / OUT) / min(1.0, orig / OUT))
        lost += min(kept) < 1 - 1e-9
        detail += math.sqrt(kept[0] * kept[1])
        worst = min(worst, math.sqrt(kept[0] * kept[1]))
    return lost / draws, detail / draws, worst


def write_originals(folder: Path, n: int) -> list[str]:
    from explorer.data.phantom import generate

    images = generate(n, ORIGINAL, seed=0, stream=0)[0]
    paths = []
    for i, img in enumerate(images):
        path = folder / f"{i:05d}.png"
        Image.fromarray(img, "L").save(path)
        paths.append(str(path))
    return paths


class _Originals(torch.utils.data.Dataset):
    """Decode the PNG in the loader (no cache), then the same transform."""

    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from explorer.data.images import decode_grey

        img = decode_grey(self.paths[i], ORIGINAL, upscale=False)
        return self.transform(Image.fromarray(img, "L")), torch.zeros(1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16, help="1024-px source images")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--items", type=int, default=16, help="dataset items per timed call")
    ap.add_argument("--draws", type=int, default=50_000, help="crop draws for the detail columns")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 384, 512, 768, 915, 1024])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    from explorer.data import XrayDataset, build_transform
    from explorer.data.bundle import Split
    from explorer.data.images import decode_grey
    from explorer.data.packed import PackedImages
    from explorer.spec.recipes import resolve_recipe

    recipe = resolve_recipe("mae_vit_small_xray", "paper")
    f, p = recipe.finetune, recipe.pretrain
    tfs = {"finetune": build_transform(recipe.data, train=True, crop_scale=tuple(f.crop_scale),
                                       hflip=f.hflip, rand_augment=f.rand_augment,
                                       interpolation=f.interpolation),
           "pretrain": build_transform(recipe.data, train=True, crop_scale=tuple(p.crop_scale),
                                       hflip=p.hflip, interpolation=p.interpolation)}
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_originals(Path(tmp), args.images)
        png_bytes = float(np.mean([Path(q).stat().st_size for q in paths]))
        n = len(paths)
        labels = np.zeros((n, 1), np.float32)
        ids = np.array([str(i) for i in range(n)])

        builds = {s: (lambda s=s: [decode_grey(q, s, upscale=False, exact=False) for q in paths])
                  for s in args.sizes}
        build_t = time_interleaved(builds, rounds=max(3, args.rounds // 2), warmup=1)
        sets: dict[str, torch.utils.data.Dataset] = {}
        for s in args.sizes:
            packed = PackedImages.from_arrays(builds[s]())
            split = Split("train", packed, labels, ids, ids)
            for stage, tf in tfs.items():
                sets[f"{s}/{stage}"] = XrayDataset(split, tf)
        for stage, tf in tfs.items():
            sets[f"orig/{stage}"] = _Originals(paths, tf)
        rng = np.random.default_rng(0)
        order = rng.integers(0, n, size=10_000)
        cursor = {k: 0 for k in sets}

        def items(key):
            def run():
                ds, c = sets[key], cursor[key]
                for i in order[c:c + args.items]:
                    ds[int(i)]
                cursor[key] = (c + args.items) % (len(order) - args.items)
            return run

        times = time_interleaved({k: items(k) for k in sets}, rounds=args.rounds, warmup=1)

    rows = []
    evals = (NIH_TOTAL - NIH_TRAIN) * 256 * 256
    for s in [*args.sizes, "orig"]:
        if s == "orig":
            upscaled, detail, worst = 0.0, 1.0, 1.0
            per_img, full, build = png_bytes, 0.0, "0"   # the PNGs themselves, no cache
        else:
            upscaled, detail, worst = crop_detail(s, args.draws)
            per_img, full = s * s, NIH_TRAIN * s * s + evals
            build = f"{median(build_t[s]) / n * 1000:.0f} ms"
        ft, pt = times[f"{s}/finetune"], times[f"{s}/pretrain"]
        rows.append([s, f"{upscaled:.0%}", f"{detail:.2f} / {worst:.2f}",
                     f"{per_img / 2**20:.2f} MiB",
                     f"{full / 1e9:.0f} GB", build,
                     f"{args.items / median(ft):.0f} ({spread(ft)})",
                     f"{args.items / median(pt):.0f} ({spread(pt)})"])
    print(f"{n} phantom originals of {ORIGINAL} px, PNG {png_bytes / 2**20:.2f} MiB each; "
          f"{args.rounds} interleaved rounds of {args.items} items per configuration")
    print_table(["train cache S", "crops upscaled", "detail kept (mean / worst)",
                 "disk / train image",
                 "full ChestX-ray14", "build / image", "fine-tune img/s/core",
                 "pre-train img/s/core"], rows)


if __name__ == "__main__":
    main()
