"""Remote storage: the same search with ``--storage`` a local folder vs ``s3://`` (moto, local).

    python -m bench.remote_storage [--scale smoke] [--repeats 2] [--samples 3]

Runs ``python -m explorer.search search_spaces/mask_ratio.yaml`` (baselines off; every run in a
storage of its own, so no run reuses another's encoders; the data cache warm from a first
unmeasured run) with the two storages in interleaved rounds (local, s3, local, s3, ...) and
reports the median walls and their ratio.
The S3 server is moto's (``moto[server]``, a test dependency) on 127.0.0.1: the ratio is the
cost of the mirror's pushes and pulls and of the lock objects' 1 s settle, not of a network.
On real S3 each push also pays the link: a trial pushes its resume state after every epoch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import machine_line, print_table
from bench.end_to_end import REPO, SPEC


def run(storage: str, root: Path, scale: str, samples: int, tag: str) -> float:
    cmd = [sys.executable, "-m", "explorer.search", SPEC, "--storage", storage,
           "--reports", str(root / "reports"), "--name", tag, "--set", f"scale={scale}",
           "--set", "baselines=[]", "--set", f"search.num_samples={samples}"]
    env = {**os.environ, "CXR_EXPLORER_MIRROR": str(root / "mirror")}
    t0 = time.time()
    with open(root / f"{tag}.log", "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"{tag} failed (exit {proc.returncode}); log: {root / f'{tag}.log'}")
    return time.time() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=("smoke", "cpu"), default="smoke")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--samples", type=int, default=3)
    args = ap.parse_args(argv)

    sys.path.insert(0, str(REPO / "tests"))
    from local_s3 import LocalS3

    root = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    walls: dict[str, list[float]] = {"local": [], "s3": []}
    with LocalS3() as s3:
        run(str(root / "warm-up"), root, args.scale, args.samples, "warm-up")  # data cache
        for i in range(args.repeats):
            walls["local"].append(run(str(root / f"runs-{i}"), root, args.scale, args.samples,
                                      f"local-{i}"))
            walls["s3"].append(run(s3.uri(f"bench-{i}"), root, args.scale, args.samples,
                                   f"s3-{i}"))
    print(machine_line())
    med = {k: statistics.median(v) for k, v in walls.items()}
    print(f"mask_ratio.yaml at scale={args.scale}, {args.samples} trials, no baselines, "
          f"{args.repeats} interleaved rounds (logs: {root})")
    print_table(["storage", "walls s", "median s", "ratio to local"], [
        [k, " ".join(f"{w:.1f}" for w in walls[k]), f"{med[k]:.1f}",
         f"{med[k] / med['local']:.2f}x"] for k in walls])


if __name__ == "__main__":
    main()
