"""Closeness to the machine: achieved FLOP/s of a training step / this machine's fp32 matmul peak.

    python -m bench.machine [--threads 1 2] [--rounds 9] [--no-pretrain] [--profile]

The step is the cpu scale's ViT fine-tuning step as ``explorer.train.finetune.finetune_loop``
runs it per batch, without the data loader (``bench.input_pipeline`` measures that): ViT-micro
(128 x 4, 4 heads) at 64 px, patch 8, batch 64, drop path 0.2, forward, BCE-with-logits, backward,
the recipe's AdamW with layer-wise lr decay (``build_optimizer``), zero_grad. For context a
second row gives the cpu scale's MAE pre-training step (mask 0.90, decoder 128 x 2).

- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` on one real forward + backward (matmuls,
  the patch-embed convolution, attention through a formula for CPU SDPA; elementwise work and
  the optimizer count as zero, as in every MFU figure).
- Peak: a 2048 x 2048 x 2048 fp32 ``torch.mm`` (17.2 GFLOP), timed in the same interleaved
  rounds as the step, on the same thread count. Ratio = median over rounds of
  (step FLOP/s / matmul FLOP/s of that round), so a busy spell on the shared machine hits both.
- Where the rest goes: one profiled step (``torch.profiler``) gives the share of step time spent
  in GEMMs (aten::mm/addmm/bmm) and their own FLOP/s; ratio ~= GEMM share x GEMM FLOP/s / peak
  (plus the attention and convolution FLOPs done outside GEMMs).

Target: >= 0.7 at the cpu scale with 1 thread (trials run with 1 CPU each); 2 threads shown too.
"""

from __future__ import annotations

import argparse

import torch

from bench._common import flops_by_op, machine_line, median, print_table, time_interleaved

TARGET = 0.7
PEAK_N = 2048
GEMM_OPS = ("mm", "addmm", "bmm", "baddbmm")


def finetune_step(seed: int = 0):
    """(step, fwd_bwd) closures for the cpu scale's fine-tuning step on a fixed random batch."""
    from explorer.spec.recipes import resolve_recipe
    from explorer.train.common import build_optimizer
    from explorer.train.finetune import build_classifier
    from explorer.train.pretrain import EncoderInfo

    r = resolve_recipe("mae_vit_small_xray", "cpu")
    f = r.finetune
    torch.manual_seed(seed)
    model = build_classifier(r, 14, EncoderInfo(key=None, path=None, role="none"))
    model.train()
    opt = build_optimizer(model, f, lr=1e-3, layer_decay=f.layer_decay)
    crit = torch.nn.BCEWithLogitsLoss()
    side = r.data.image_size
    x = torch.randn(f.batch_size, 3, side, side)
    y = (torch.rand(f.batch_size, 14) < 0.1).float()

    def step() -> None:
        crit(model(x).float(), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def fwd_bwd() -> None:
        crit(model(x).float(), y).backward()
        model.zero_grad(set_to_none=True)

    shape = f"ViT fine-tune: {r.model.arch} {side}px/{r.model.patch_size}, b{f.batch_size}"
    return shape, step, fwd_bwd


def pretrain_step(seed: int = 0):
    from bench.masking import make_step, shape_recipe

    r = shape_recipe("cpu")
    step, fwd_bwd = make_step(r, r.pretrain.mask_ratio, r.pretrain.batch_size, seed)
    shape = (f"MAE pre-train: {r.model.arch} {r.data.image_size}px/{r.model.patch_size}, mask "
             f"{r.pretrain.mask_ratio}, b{r.pretrain.batch_size}")
    return shape, step, fwd_bwd


def gemm_profile(step) -> tuple[float, float]:
    """(GEMM self time, whole step time) in seconds per step, from 3 profiled steps."""
    from torch.profiler import ProfilerActivity, profile

    n = 3
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            step()
    events = prof.key_averages()
    gemm = sum(e.self_cpu_time_total for e in events if e.key.split("::")[-1] in GEMM_OPS)
    total = sum(e.self_cpu_time_total for e in events)
    return gemm / 1e6 / n, total / 1e6 / n


def print_top_ops(threads: int, n: int = 12) -> None:
    """Where the fine-tuning step's time goes: top ops by self CPU time over 5 steps."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    _, step, _ = finetune_step()
    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            step()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    print_table(["op (fine-tuning step, profiled)", "ms per step", "share"],
                [[e.key[:60], f"{e.self_cpu_time_total / 5e3:.1f}",
                  f"{e.self_cpu_time_total / total:.1%}"] for e in events[:n]])


def bench_threads(threads: int, rounds: int, with_pretrain: bool) -> list[list[object]]:
    torch.set_num_threads(threads)
    a, b = torch.randn(PEAK_N, PEAK_N), torch.randn(PEAK_N, PEAK_N)
    c = torch.empty(PEAK_N, PEAK_N)
    peak_flops = 2 * PEAK_N**3

    def peak() -> None:
        torch.mm(a, b, out=c)

    cases = [finetune_step()] + ([pretrain_step()] if with_pretrain else [])
    fns = {"peak": peak} | {shape: step for shape, step, _ in cases}
    times = time_interleaved(fns, rounds=rounds, warmup=2)
    peak_rate = [peak_flops / t for t in times["peak"]]
    rows = []
    for shape, step, fwd_bwd in cases:
        ops = flops_by_op(fwd_bwd)
        flops = sum(ops.values())
        ratio = median([flops / t / p for t, p in zip(times[shape], peak_rate)])
        gemm_s, total_s = gemm_profile(step)
        gemm_rate = sum(v for k, v in ops.items() if k in GEMM_OPS) / gemm_s
        verdict = ("met" if ratio >= TARGET else "MISSED") if "fine-tune" in shape else "-"
        rows.append([threads, shape, f"{median(times[shape]) * 1000:.0f} ms", f"{flops / 1e9:.1f}",
                     f"{flops / median(times[shape]) / 1e9:.1f}",
                     f"{median(peak_rate) / 1e9:.1f}", f"{ratio:.2f}",
                     f"{gemm_s / total_s:.0%}", f"{gemm_rate / median(peak_rate):.2f}", verdict])
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--no-pretrain", action="store_true", help="only the fine-tuning step")
    ap.add_argument("--profile", action="store_true",
                    help="also print the top ops of the fine-tuning step (1st thread count)")
    args = ap.parse_args(argv)
    print(machine_line(threads=" and ".join(map(str, args.threads))))
    rows = []
    for t in args.threads:
        rows += bench_threads(t, args.rounds, not args.no_pretrain)
    if args.profile:
        print_top_ops(args.threads[0])
    print_table(["threads", "step", "step (median)", "GFLOP", "achieved GFLOP/s",
                 f"peak GFLOP/s ({PEAK_N}^3 mm)", "achieved / peak", "GEMM share of time",
                 "GEMM GFLOP/s / peak", f"target >= {TARGET}"], rows)


if __name__ == "__main__":
    main()
