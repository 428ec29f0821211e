"""What every benchmark shares: the machine line, interleaved timing, FLOP counting, the table.

Timing on a shared, noisy machine: configurations are measured in interleaved rounds (A, B, C,
A, B, C, ...) so that a slow spell hits all of them alike, and each figure is the median over
rounds. Ratios of medians taken in the same run are what the benchmarks report; absolute
seconds drift from run to run.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line(threads: int | str | None = None) -> str:
    """One line: CPU model, cores usable by this process, torch threads, versions, date."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    t = torch.get_num_threads() if threads is None else threads
    return (f"machine: {cpu_model()}, {cores} cores, torch threads {t}, torch {torch.__version__},"
            f" python {platform.python_version()}, "
            f"{_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}")


def time_interleaved(fns: dict[str, Callable[[], object]], rounds: int, reps: int = 1,
                     warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each ``fn``, measured in ``rounds`` interleaved rounds.

    Each round calls every fn ``reps`` times back to back and records the mean; ``warmup``
    untimed calls per fn come first (allocator, oneDNN primitive caches).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            out[name].append((time.perf_counter() - t0) / reps)
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> str:
    """Relative half-range of the middle half (a robust +-), e.g. '3%'."""
    if len(xs) < 4:
        return "-"
    q = statistics.quantiles(xs, n=4)
    return f"{(q[2] - q[0]) / 2 / statistics.median(xs):.0%}"


def _cpu_sdpa_mapping() -> dict:
    """FLOP formulas for CPU attention, which FlopCounterMode does not count (torch 2.x)."""
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    ops = torch.ops.aten
    mapping = {}
    if hasattr(ops, "_scaled_dot_product_flash_attention_for_cpu"):
        def fwd(q, k, v, *args, out_shape=None, **kwargs):
            return sdpa_flop_count(q, k, v)

        def bwd(grad_out, q, k, v, *args, out_shape=None, **kwargs):
            return sdpa_backward_flop_count(grad_out, q, k, v)

        mapping[ops._scaled_dot_product_flash_attention_for_cpu] = fwd
        mapping[ops._scaled_dot_product_flash_attention_for_cpu_backward] = bwd
    return mapping


def flops_by_op(fn: Callable[[], object]) -> dict[str, int]:
    """FLOPs of one call of ``fn`` per aten op, by ``torch.utils.flop_counter.FlopCounterMode``.

    Counts matmuls, convolutions and (with the mapping above) attention, forward and backward
    if ``fn`` runs backward; elementwise work (norms, GELU, the optimizer) counts as zero.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=_cpu_sdpa_mapping()) as fc:
        fn()
    return {str(k).split(".")[-1] if "." in str(k) else str(k): int(v)
            for k, v in fc.get_flop_counts()["Global"].items()}


def count_flops(fn: Callable[[], object]) -> int:
    """Total FLOPs of one call of ``fn`` (see ``flops_by_op``)."""
    return sum(flops_by_op(fn).values())


def print_table(headers: list[str], rows: list[list[object]], title: str | None = None) -> None:
    """A plain Markdown table (pastes straight into docs/benchmarks.md)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    if title:
        print(title)
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
