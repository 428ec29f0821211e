"""A real two-trial search at paper shapes on whatever GPU is here: img/s per stage, GPU
utilisation, and the share of the fine-tuning stage spent in training steps.

    python -m bench.gpu_search                  # a GPU: paper shapes, ~4 min (run it twice)
    python -m bench.gpu_search --cpu-tiny       # no GPU: tiny shapes, proves it end to end
    python -m bench.gpu_search --no-ray         # the same stages in this process, no Ray
    python -m bench.gpu_search --compile        # with torch.compile (resources.compile)

Stages, all real: synthetic 1024 px PNGs with a CSV (``data.source: csv``) are decoded into the
cache; a ``mask_ratio`` search of 2 trials (Optuna, no ASHA, no baselines) pre-trains an MAE
and fine-tunes it per trial, validating every epoch; then the results store and the HTML
report. The figures come from the trial records the loops write (per epoch: images, seconds,
seconds spent waiting for batches and validating) and from NVML, sampled every 0.5 s.

Without Ray (``--no-ray``, or Ray not installed, as on a lent GPU machine whose image lacks
it), the two trials run one after the other in this process (``LocalSession``): the same loops,
cache and data, no report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench._common import machine_line, print_table

PAPER = {"images": 12_000, "val": 2_000, "mae_epochs": 10, "ft_epochs": 6}
TINY = {"images": 600, "val": 200, "mae_epochs": 2, "ft_epochs": 2}
UNIQUE = 256   # distinct synthetic images; the rest are hard links (each file is decoded)


def write_images(root: Path, n: int, side: int, seed: int = 0) -> None:
    """``n`` grey PNGs of ``side`` px and ``labels.csv`` (ChestX-ray14 findings, 3 images per
    patient); a bright disc marks 'Effusion' so the runs have something to learn. The distinct
    images are drawn on all cores (zlib releases the GIL), the rest are hard links."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from explorer.data.findings import FINDINGS

    (root / "images").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:side, 0:side] / side

    def draw(k: int) -> None:
        rng = np.random.default_rng(seed * 100_003 + k)
        img = 90 + 80 * np.sin(6 * xx + k) * np.cos(4 * yy) + rng.normal(0, 12, xx.shape)
        if k % 3 == 0:
            img += 90 * (((xx - 0.3) ** 2 + (yy - 0.7) ** 2) < 0.01)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "L").save(
            root / f"images/{k:06d}.png")

    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(draw, range(min(n, UNIQUE))))
    labels = []
    for i in range(n):
        if i >= UNIQUE:
            os.link(root / f"images/{i % UNIQUE:06d}.png", root / f"images/{i:06d}.png")
        extra = [FINDINGS[(i * 7) % len(FINDINGS)]] if i % 5 == 0 else []
        labels.append("|".join((["Effusion"] if i % UNIQUE % 3 == 0 else []) + extra)
                      or "No Finding")
    (root / "labels.csv").write_text("path,labels,patient\n" + "".join(
        f"images/{i:06d}.png,{lab},p{i // 3}\n" for i, lab in enumerate(labels)))


class GpuSampler:
    """NVML utilisation every 0.5 s, with timestamps (nothing without a GPU or NVML)."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._nvml = pynvml
        except Exception:   # no NVML here: utilisation is reported as '-'
            self._nvml = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self._nvml is not None and not self._stop.wait(0.5):
            util = self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu
            self.samples.append((time.time(), float(util)))

    def mean(self, start: float, end: float) -> str:
        xs = [u for t, u in self.samples if start <= t <= end]
        return f"{np.mean(xs):.0f}%" if xs else "-"

    def stop(self) -> None:
        self._stop.set()


def overrides(root: Path, sizes: dict, tiny: bool, gpu: bool, cpus: int) -> list[str]:
    sets = ["data.source=csv", f"data.root={root}", "data.labels_column=labels",
            "data.patient_column=patient", "data.test_fraction=0.05",
            f"data.val_fraction={sizes['val'] / sizes['images']:.3f}",
            "search.num_samples=2", "search.points_to_evaluate=[]", "baselines=[]",
            "search.scheduler.type=none", "finalists=0",
            f"pretrain.epochs={sizes['mae_epochs']}", "pretrain.warmup_epochs=1",
            f"finetune.epochs={sizes['ft_epochs']}", "finetune.warmup_epochs=1",
            f"resources.cpus_per_worker={cpus}", f"resources.gpus_per_worker={int(gpu)}"]
    if tiny:   # the cpu scale's shapes, from 128 px files
        sets = ["scale=cpu", *sets]
    else:
        sets = ["scale=paper", *sets]
    return sets


def run_ray(spec: Path, storage: Path, sets: list[str]) -> Path:
    from explorer.search import main

    args = [str(spec), "--storage", str(storage), "--reports", str(storage / "reports")]
    for s in sets:
        args += ["--set", s]
    if main(args) != 0:
        raise SystemExit("the search failed: see its output above")
    return storage / "mask_ratio"


def run_local(storage: Path, sets: list[str]) -> Path:
    """The two trials in this process: same loops, same data, same records."""
    from explorer.data import load_data
    from explorer.spec import load_spec
    from explorer.storage import open_store
    from explorer.train.artifacts import TrialArtifacts
    from explorer.train.finetune import check_validation, finetune_loop
    from explorer.train.pretrain import ensure_encoder
    from explorer.train.session import LocalSession

    spec = Path(__file__).resolve().parents[1] / "search_spaces" / "mask_ratio.yaml"
    base = load_spec(spec, sets).base
    data = load_data(base.data)
    check_validation(data)
    store = open_store(storage)
    for i, mask in enumerate((0.9, 0.75)):
        recipe = base.model_copy(update={"pretrain": base.pretrain.model_copy(
            update={"mask_ratio": mask})})
        session = LocalSession(f"local-{i}")
        enc = ensure_encoder(recipe, data, store, session)
        art = TrialArtifacts(storage / "mask_ratio" / "trials" / session.trial_id)
        art.root.mkdir(parents=True, exist_ok=True)
        art.write_json("encoder.json", enc.to_dict())
        finetune_loop(recipe, data, session, enc, art)
    return storage / "mask_ratio"


def summarise(run: Path, storage: Path, gpu: GpuSampler, wall: float) -> None:
    rows = []
    for meta in sorted((storage / "_encoders").glob("*/meta.json")):
        losses = json.loads((meta.parent / "losses.json").read_text())
        rows.append(_stage_row("MAE pre-training", meta.parent.name[:8], losses, "time_s",
                               losses[0]["end"] - losses[0]["time_s"], gpu))
    for hist in sorted(run.glob("trials/*/history.json")):
        h = json.loads(hist.read_text())
        summary = json.loads((hist.parent / "summary.json").read_text())
        rows.append(_stage_row("fine-tuning + validation", hist.parent.name[:8], h,
                               "epoch_time_s", summary["started"], gpu))
    print_table(["stage", "run", "training img/s (epochs after the first)",
                 "wait for batches", "validation", "training steps / stage wall", "GPU util"],
                rows)
    stages = json.loads((run / "stages.json").read_text()) if (run / "stages.json").is_file() \
        else {}
    print(f"wall {wall:.0f} s" + ("; driver stages: " if stages else "") +
          ", ".join(f"{k} {v:.0f} s" for k, v in stages.items()))


def _stage_row(stage: str, name: str, epochs: list[dict], time_key: str, started: float,
               gpu: GpuSampler) -> list:
    later = epochs[1:] or epochs   # the first epoch pays for worker start-up and warm-up
    train_s = [e[time_key] - e.get("val_time_s", 0.0) for e in later]
    rate = sum(e["images"] for e in later) / sum(train_s)
    wait = sum(e["data_wait_s"] for e in epochs)
    val = sum(e.get("val_time_s", 0.0) for e in epochs)
    val_text = (f"{val:.1f} s, {sum(e['val_images'] for e in epochs) / val:.0f} img/s"
                if val else "-")
    wall = epochs[-1]["end"] - started
    steps = sum(e[time_key] for e in epochs) - wait - val
    return [stage, name, f"{rate:.0f}", f"{wait:.1f} s", val_text,
            f"{steps / wall:.0%} of {wall:.0f} s", gpu.mean(started, epochs[-1]["end"])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-tiny", action="store_true", help="tiny shapes, on CPUs")
    ap.add_argument("--no-ray", action="store_true", help="run the trials in this process")
    ap.add_argument("--out", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--images", type=int, default=None, help="synthetic images in all")
    ap.add_argument("--compile", action="store_true", help="resources.compile=true")
    args = ap.parse_args(argv)
    import torch

    gpu = torch.cuda.is_available()
    if not gpu and not args.cpu_tiny:
        print("bench.gpu_search: no CUDA GPU is visible; nothing was measured (use --cpu-tiny "
              "to check it end to end on CPUs)", file=sys.stderr)
        return 2
    sizes = dict(TINY if args.cpu_tiny else PAPER)
    if args.images:
        sizes["images"] = args.images
    try:
        import ray  # noqa: F401
        use_ray = not args.no_ray
    except ImportError:
        use_ray = False
    out = Path(args.out or f"/tmp/gpu-search-{os.getpid()}")
    shutil.rmtree(out, ignore_errors=True)
    os.environ["CXR_EXPLORER_CACHE"] = str(out / "cache")
    cpus = max(1, (os.cpu_count() or 2) // (1 if gpu else 2))
    print(machine_line() + (f", GPU {torch.cuda.get_device_name(0)}" if gpu else ", no GPU"))
    print(f"{'Ray search' if use_ray else 'in-process trials (no Ray)'}; {sizes}")

    t0 = time.time()
    write_images(out / "data", sizes["images"], 128 if args.cpu_tiny else 1024)
    t_write = time.time() - t0
    sets = overrides(out / "data", sizes, args.cpu_tiny, gpu, cpus)
    sets += ["resources.compile=true"] if args.compile else []
    from explorer.data import load_data
    from explorer.spec import load_spec

    spec = Path(__file__).resolve().parents[1] / "search_spaces" / "mask_ratio.yaml"
    t1 = time.time()
    data = load_data(load_spec(spec, sets).base.data)   # the cache stage, timed on its own
    t_cache = time.time() - t1
    n = sum(len(data.split(s)) for s in ("train", "val", "test"))
    print(f"synthetic PNGs written in {t_write:.0f} s; cache: {n} images in {t_cache:.1f} s = "
          f"{n / t_cache:.0f} img/s ({len(data.train)} train, {len(data.val)} val)")
    sampler = GpuSampler()
    t2 = time.time()
    run = run_ray(spec, out / "runs", sets) if use_ray else run_local(out / "runs", sets)
    sampler.stop()
    summarise(run, out / "runs", sampler, time.time() - t2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
