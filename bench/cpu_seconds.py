"""Run a command and report its wall time and the CPU-seconds of its whole process tree.

``python -m bench.cpu_seconds OUT.json -- CMD ...``. On a shared machine wall time measures the
neighbours as much as the run; CPU-seconds (user + system, summed over the command and every
process it starts, Ray's raylet and workers included) measure the work. Linux only: the tree
is read from ``/proc`` every second, so a process that lives under a second can be missed (Ray's
workers live for the run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> tuple[int, int, float] | None:
    """(parent pid, start time, CPU seconds) of one process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), int(fields[19]), (int(fields[11]) + int(fields[12])) / TICK


def _tree_cpu(root: int, seen: dict) -> None:
    stats = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            st = _stat(p)
            if st:
                stats[int(p)] = st
    inside = {root}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _, _) in stats.items():
            if ppid in inside and pid not in inside:
                inside.add(pid)
                changed = True
    for pid in inside:
        if pid in stats:
            _, start, cpu = stats[pid]
            seen[(pid, start)] = max(cpu, seen.get((pid, start), 0.0))


def main(argv: list[str]) -> int:
    out, cmd = Path(argv[0]), argv[argv.index("--") + 1:]
    t0 = time.time()
    proc = subprocess.Popen(cmd)
    seen: dict = {}
    while proc.poll() is None:
        _tree_cpu(proc.pid, seen)
        time.sleep(1.0)
    wall = time.time() - t0
    record = {"command": cmd, "rc": proc.returncode, "wall_s": round(wall, 1),
              "cpu_s": round(sum(seen.values()), 1), "load_avg_end": os.getloadavg()}
    out.write_text(json.dumps(record, indent=2))
    print(json.dumps(record), flush=True)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
