"""``python -m explorer.report RUN_DIR [--out DIR]``: rebuild a search's HTML report."""

from __future__ import annotations

import sys

from explorer.errors import OneLineParser, UserError, cli_line
from explorer.report.build import build_report


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m explorer.report",
        description="Write one self-contained HTML report of a search from its results store.")
    parser.add_argument("run_dir", help="the search's run folder (holding results/)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: reports/<search name>/)")
    parser.add_argument("--resamples", type=int, default=None,
                        help="patient-bootstrap resamples (default: the spec's, else 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    args = parser.parse_args(argv)
    try:
        if args.resamples is not None and args.resamples < 1:
            raise UserError(f"--resamples must be at least 1, got {args.resamples}")
        path = build_report(args.run_dir, args.out, n_resamples=args.resamples, seed=args.seed)
    except UserError as e:
        print(f"error: {cli_line(e)}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
