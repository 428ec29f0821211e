"""``python -m explorer.replay RUN_DIR``: which search strategy would have done best here?"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from explorer.errors import UserError, cli_line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every other mistake
        self.exit(2, f"error: {cli_line(message)} (see --help)\n")


def _hours(seconds: float | None) -> str:
    """Device-seconds as written in the table (hours beside them from an hour up)."""
    if seconds is None:
        return "n/a"
    return f"{seconds:,.0f}" + (f" ({seconds / 3600:.2f} h)" if seconds >= 3600 else "")


def report(rec, rows: list[dict], as_run: dict, repeats: int, seconds: float) -> str:
    from explorer.replay.table import describe

    real = rec.real
    lines = [
        f"replay of {rec.run_dir}: {len(rec.runs)} recorded recipes, {rec.n_parallel} at once, "
        f"{rec.devices:g} devices each; {repeats} seeds per strategy; {seconds:.1f} s",
        "",
        f"the real search: {real['trials']} trials, {_hours(real['cost_device_s'])} "
        f"device-s, {real['pretrain_epochs']} pre-training epochs, best "
        f"{describe(real['best_params'] or {})} (val mean AUC {real['best_value']:.4f})",
        f"replayed as run (its seed): {_hours(as_run['cost_device_s'])} device-s, "
        f"{as_run['pretrain_epochs']:.0f} pre-training epochs, best {as_run['most_chosen']}",
        "",
        "| strategy | device-s (sd) | pre-training epochs | fine-tuning epochs | "
        "found the best | mean regret (AUC) | most often chosen | censored epochs |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    ranked = sorted((r for r in rows if r["replayable"]),
                    key=lambda r: (round(r["regret"] or 0, 4), r["cost_device_s"]))
    for r in ranked:
        lines.append(
            f"| {r['strategy']} | {_hours(r['cost_device_s'])} ({_hours(r['cost_sd'])}) | "
            f"{r['pretrain_epochs']:.1f} | {r['finetune_epochs']:.1f} | "
            f"{100 * r['found_top']:.0f}% | {r['regret']:.4f} | {r['most_chosen']} | "
            f"{r['censored_epochs']:.1f} |")
    lines += [f"| {r['strategy']} | not replayable: {r['why']} |" for r in rows
              if not r["replayable"]]
    lines += ["", "Regret: the best recorded recipe's validation mean AUC minus that of the "
              "recipe the strategy selects. Censored: epochs beyond what the real search "
              "recorded (ASHA stopped the trial), replayed at its last score."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m explorer.replay",
                     description="Replay search strategies on a finished search's curves.")
    parser.add_argument("run_dir", help="the search's run folder (holding results/)")
    parser.add_argument("--repeats", type=int, default=20, help="seeds per strategy")
    parser.add_argument("--num-samples", type=int, default=None,
                        help="recipes per replayed search (default: the search's)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--mf", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of the multi-fidelity strategy, e.g. "
                        "search.pretraining.fidelity.milestones=[0.2,0.5] (repeatable)")
    args = parser.parse_args(argv)
    try:
        if args.repeats < 1:
            raise UserError(f"--repeats must be at least 1, got {args.repeats}")
        return _run(args)
    except UserError as e:
        print(f"error: {cli_line(e)}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import optuna

    from explorer.replay.strategies import STRATEGIES, summarise
    from explorer.replay.table import as_json, load_recorded

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a study per replayed search
    t0 = time.perf_counter()
    if args.num_samples is not None and args.num_samples < 1:
        raise UserError(f"--num-samples must be at least 1, got {args.num_samples}")
    rec = load_recorded(args.run_dir)
    n = args.num_samples or rec.loaded.spec.search.num_samples
    seeds = list(range(args.repeats))
    rows = [summarise(rec, name, [*sets, *(args.mf if name == "tpe+asha+mf" else [])], seeds, n)
            for name, sets in STRATEGIES.items()]
    as_run = summarise(rec, "as run", [], [rec.loaded.spec.search.searcher.seed], n)
    text = report(rec, rows, as_run, args.repeats, time.perf_counter() - t0)
    print(text)
    if args.json:
        Path(args.json).write_text(as_json({"real": rec.real, "as_run": as_run,
                                            "strategies": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
