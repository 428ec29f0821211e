"""Paper scale from this machine: input pipeline per core, cache build rate, resume-state bytes,
and the projected wall time of the study's recipes on 1 and 8 H200s, before and after issue 17.

    python -m bench.paper_scale [--rounds 10] [--batches 2] [--cores-per-gpu 8]

Data: the shared NIH mini folder (real 1024 px PNGs), cached at 256 px, 224 px crops, the
``paper`` recipe's transforms. All timings on 1 torch thread, i.e. per core:

1. loader: images/s one core turns out through ``XrayDataset`` + transforms + collate, for the
   MAE (crop (0.5, 1) + flip) and fine-tuning (crop (0.08, 1) + flip + RandAugment) transforms
   and for evaluation (resize + centre crop), as float32 RGB normalised in the loader (before)
   and as uint8 grey (now). Interleaved rounds; the ratio is the median of per-round ratios.
2. cache: PNG decode + resize into the 256 px cache, 1 and 2 threads.
3. resume states: bytes of the study's models + AdamW state; the blocking cost per save before
   (``torch.save`` on the training thread) and now (a CPU snapshot; the write is off-thread).
4. projection: per epoch, before = loading in the training process (1 core, float path) in
   series with the GPU step, validation on rank 0 alone, a state written every epoch while the
   ranks wait; now = loader processes (cores per GPU - 1) in parallel with the step, validation
   on every rank, states every 15 minutes off-thread. GPU rates: BENCHMARKS.md section 7 (eager,
   one H200); an eval forward is taken as 3x a training step; 8 GPUs scale ideally.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench._common import machine_line, median, print_table, spread, time_interleaved

NIH = Path(__file__).resolve().parents[2] / "shared" / "data" / "chestxray14-mini"
GPU = {"mae": 9333, "finetune": 4062, "densenet": 2455}   # img/s, section 7, eager bf16
N_TRAIN, N_VAL = 75_312, 11_212                           # ChestX-ray14, study split
EPOCHS = {"mae": 800, "finetune": 75, "densenet": 75}
EVAL_X = 3.0       # eval forward vs training step, assumed
STATE_EVERY_S = 15 * 60


def _recipe():
    from explorer.spec.recipes import resolve_recipe

    return resolve_recipe("mae_vit_small_xray", "paper", (
        {"data": {"source": "chestxray14", "root": str(NIH)}},))


def _transforms(recipe) -> dict:
    from explorer.data import build_transform

    p, f, d = recipe.pretrain, recipe.finetune, recipe.data
    return {"mae": build_transform(d, train=True, crop_scale=tuple(p.crop_scale), hflip=p.hflip,
                                   interpolation=p.interpolation),
            "finetune": build_transform(d, train=True, crop_scale=tuple(f.crop_scale),
                                        hflip=f.hflip, rand_augment=f.rand_augment,
                                        interpolation=f.interpolation),
            "eval": build_transform(d, train=False)}


def _before(tf, data):
    """Today's format: normalised float32, 3 channels, made in the loader."""
    def old(img):
        x = (tf(img).float() / 255 - data.mean) / data.std
        return x.expand(3, -1, -1)
    return old


def bench_loader(recipe, bundle, rounds: int, batches: int) -> tuple[list, dict]:
    from torch.utils.data import DataLoader, RandomSampler

    from explorer.data import XrayDataset

    fns, rates = {}, {}
    for stage, tf in _transforms(recipe).items():
        for fmt, t in (("float32 RGB", _before(tf, recipe.data)), ("uint8 grey", tf)):
            ds = XrayDataset(bundle.train, t)
            loader = DataLoader(ds, batch_size=64, drop_last=True, sampler=RandomSampler(
                ds, replacement=True, num_samples=10**9, generator=torch.Generator()))
            it = iter(loader)
            fns[(stage, fmt)] = lambda it=it: [next(it) for _ in range(batches)]
    times = time_interleaved(fns, rounds)
    rows = []
    for stage in ("mae", "finetune", "eval"):
        old, new = times[(stage, "float32 RGB")], times[(stage, "uint8 grey")]
        n = 64 * batches
        rates[stage] = {"old": n / median(old), "new": n / median(new)}
        ratio = median([o / w for o, w in zip(old, new)])
        rows.append([stage, f"{rates[stage]['old']:.0f}", f"{rates[stage]['new']:.0f}",
                     f"{ratio:.2f}x", spread(new), "602 KB -> 50 KB"])
    return rows, rates


def bench_processes(recipe, bundle, batches: int) -> list:
    """uint8 fine-tuning batches from 2 loader processes (this machine's 2 cores), steady
    state, against 2 x the per-core rate."""
    from explorer.data import XrayDataset
    from explorer.train.inputs import LoaderPlan, train_loader
    from explorer.train.session import LocalSession

    ds = XrayDataset(bundle.train, _transforms(recipe)["finetune"])
    plan = type("P", (), {"per_step_batch": 64})
    loader = train_loader(ds, plan, LocalSession(), LoaderPlan(2, False, 4, "bench"), seed=0)
    it = iter(loader)
    for _ in range(4):
        next(it)
    n, t0 = 0, time.perf_counter()
    while n < 64 * batches * 6:
        try:
            n += len(next(it)[0])
        except StopIteration:
            it = iter(loader)
    return [n / (time.perf_counter() - t0)]


def bench_cache(rounds: int) -> tuple[list, float]:
    """Decode + resize of synthetic 1024 px PNGs, as big as ChestX-ray14's (the NIH mini
    folder's files are 64 px)."""
    from bench.gpu_search import write_images
    from explorer.data.cache import _decode_all

    with tempfile.TemporaryDirectory() as d:
        write_images(Path(d), 32, 1024)
        paths = sorted(str(p) for p in Path(d, "images").glob("*.png"))
        out = np.zeros((len(paths), 256, 256), np.uint8)
        times = time_interleaved({w: lambda w=w: _decode_all(paths, 256, out, w)
                                  for w in (1, 2)}, rounds, warmup=1)
    rows = [[w, f"{len(paths) / median(t):.0f}", spread(t)] for w, t in times.items()]
    return rows, len(paths) / median(times[1])


def _state(model) -> dict:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict()}


def _blocking(state: dict) -> str:
    """What a save costs the training thread: torch.save before, a CPU snapshot now."""
    from explorer.train.cadence import snapshot

    with tempfile.TemporaryDirectory() as d:
        t = time_interleaved({"save": lambda: torch.save(state, os.path.join(d, "s.pt")),
                              "snapshot": lambda: snapshot(state)}, 5, warmup=1)
    return f"{median(t['save']):.2f} s -> {median(t['snapshot']):.2f} s"


def bench_states() -> tuple[list, dict]:
    from explorer.models import create_cnn, create_mae, create_vit_classifier

    models = {"MAE ViT-S/16 (decoder 512 x 2)": lambda: create_mae(
                  "vit_small", img_size=224, patch_size=16, decoder_dim=512, decoder_depth=2,
                  decoder_heads=16),
              "ViT-S/16 classifier": lambda: create_vit_classifier("vit_small", img_size=224,
                                                                   patch_size=16, num_classes=14),
              "DenseNet-121": lambda: create_cnn("densenet121", num_classes=14),
              "MAE ViT-B/16 (decoder 512 x 8)": lambda: create_mae(
                  "vit_base", img_size=224, patch_size=16, decoder_dim=512, decoder_depth=8,
                  decoder_heads=16)}
    rows, sizes = [], {}
    for name, make in models.items():
        model = make()
        n = sum(p.numel() for p in model.parameters())
        state = _state(model)
        buf = io.BytesIO()
        torch.save(state, buf)
        sizes[name] = len(buf.getvalue())
        blocking = _blocking(state) if "ViT-S" in name and "MAE" in name else "-"
        rows.append([name, f"{n / 1e6:.1f} M", f"{sizes[name] / 1e9:.2f} GB", blocking])
        del model, state
    return rows, sizes


def projection(rates: dict, states: dict, cores: int, save_s: float) -> list:
    kinds = {"mae": ("MAE ViT-S/16, 800 epochs", "mae", "MAE ViT-S/16 (decoder 512 x 2)"),
             "finetune": ("ViT-S/16 fine-tuning, 75 epochs", "finetune", "ViT-S/16 classifier"),
             "densenet": ("DenseNet-121, 75 epochs", "finetune", "DenseNet-121")}
    rows = []
    for key, (label, tf, state) in kinds.items():
        g, ep = GPU[key], EPOCHS[key]
        load_old, load_new = rates[tf]["old"], rates[tf]["new"] * (cores - 1)
        ev_old, ev_new = rates["eval"]["old"], rates["eval"]["new"] * (cores - 1)
        for w in (1, 8):
            n = N_TRAIN / w
            before = n * (1 / load_old + 1 / g)
            now = n / min(g, load_new)
            if key != "mae":   # validation every epoch
                before += N_VAL * (1 / ev_old + 1 / (EVAL_X * g))
                now += N_VAL / w / min(EVAL_X * g, ev_new)
            before += states[state] / 1e9 * save_s   # every epoch, ranks waiting
            total_b, total_n = before * ep / 3600, now * ep / 3600
            rows.append([label, w, f"{total_b:.2f} h", f"{total_n:.2f} h",
                         f"{total_b / total_n:.1f}x",
                         f"{N_TRAIN / w / now:.0f} / {g}"])
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batches", type=int, default=2, help="batches of 64 per round and path")
    ap.add_argument("--cores-per-gpu", type=int, default=8)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from explorer.data import load_data

    recipe = _recipe()
    print(machine_line())
    t0 = time.perf_counter()
    bundle = load_data(recipe.data)
    print(f"data: {len(bundle.train)} NIH mini train images, cache "
          f"{'hit' if bundle.notes['cache']['hit'] else 'built'} in "
          f"{time.perf_counter() - t0:.1f} s, {recipe.data.cache_size} px")

    rows, rates = bench_loader(recipe, bundle, args.rounds, args.batches)
    print_table(["transforms", "float32 RGB img/s/core (before)", "uint8 grey img/s/core (now)",
                 "now / before", "+-", "bytes per 224 px image"], rows,
                title="\n1. loader, one core")
    two = bench_processes(recipe, bundle, args.batches)[0]
    print(f"\n2 loader processes, fine-tuning uint8: {two:.0f} img/s = "
          f"{two / 2 / rates['finetune']['new']:.2f} x 2 cores' in-process rate")
    need = {k: math.ceil(1.5 * GPU[k] / rates[tf]["new"]) + 1
            for k, tf in (("mae", "mae"), ("finetune", "finetune"), ("densenet", "finetune"))}
    print(f"cores per GPU for 1.5x an H200's img/s (loader processes + 1): {need}")

    rows, per_thread = bench_cache(max(3, args.rounds // 3))
    print_table(["decode threads", "img/s (1024 px PNG -> 256 px cache)", "+-"], rows,
                title="\n2. cache build")
    print(f"112,120 ChestX-ray14 images at {per_thread:.0f} img/s per thread: "
          f"{112_120 / per_thread / 60:.0f} min on 1 thread, "
          f"{112_120 / per_thread / 8 / 60:.1f} min on 8 (cache.py's cap)")

    rows, sizes = bench_states()
    print_table(["model", "parameters", "resume state", "blocking per save: before -> now"],
                rows, title="\n3. resume states")
    save_s = _save_seconds_per_gb(sizes)
    rows = []
    for key, name in (("mae", "MAE ViT-S/16 (decoder 512 x 2)"),
                      ("finetune", "ViT-S/16 classifier"),
                      ("mae", "MAE ViT-B/16 (decoder 512 x 8)")):
        for w in (1, 8):
            epoch_s = N_TRAIN / w / GPU[key] * (4 if "ViT-B" in name else 1)
            per_h_before = 3600 / epoch_s * sizes[name]
            per_h_now = 3600 / STATE_EVERY_S * sizes[name]
            rows.append([name, w, f"{epoch_s:.1f} s", f"{per_h_before / 1e9:.0f} GB",
                         f"{per_h_now / 1e9:.1f} GB", "15 min"])
    print_table(["state", "H200s", "epoch", "GB/h every epoch (before)",
                 "GB/h every 15 min (now)", "work lost at most"], rows,
                title="\n   bytes written per hour (ViT-B epoch taken as 4x ViT-S)")
    print_table(["recipe", "H200s", "before", "now", "speed-up", "img/s fed / GPU can take"],
                projection(rates, sizes, args.cores_per_gpu, save_s),
                title=f"\n4. projected wall time, {args.cores_per_gpu} cores per GPU "
                      f"(state writes at {save_s:.2f} s/GB, as measured here)")


def _save_seconds_per_gb(sizes: dict) -> float:
    from explorer.models import create_vit_classifier

    state = _state(create_vit_classifier("vit_small", img_size=224, patch_size=16,
                                         num_classes=14))
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        torch.save(state, os.path.join(d, "s.pt"))
        dt = time.perf_counter() - t0
    return dt / (sizes["ViT-S/16 classifier"] / 1e9)


if __name__ == "__main__":
    main()
