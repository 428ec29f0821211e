"""``python -m explorer.search SPEC``: run (or resume) a recipe search and write its report.

Stages, each resumable: the search (Ray Tune + Optuna TPE + ASHA), the baselines (cached across
searches), the one-time test scoring of the finalists, the results store, the HTML report.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from explorer.errors import OneLineParser, UserError, cli_line

EPILOG = """examples:
  python -m explorer.search search_spaces/mask_ratio.yaml
  python -m explorer.search search_spaces/mask_ratio.yaml --resume
  python -m explorer.search search_spaces/mask_ratio.yaml --set scale=smoke
  python -m explorer.search search_spaces/mask_ratio.yaml --set data.source=chestxray14 \\
      --set data.root=../shared/data/chestxray14-mini
  python -m explorer.search search_spaces/layer_decay.yaml --address auto --storage /nfs/explorer
"""


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m explorer.search", epilog=EPILOG,
                      description=__doc__.splitlines()[0],
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="search spec YAML, e.g. search_spaces/mask_ratio.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any spec field (repeatable), e.g. scale=smoke, data.root=PATH")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted search (finished trials are kept)")
    p.add_argument("--extend", type=int, default=None, metavar="N",
                   help="add N trials to a finished search; the sampler learns from the old ones")
    p.add_argument("--retry-failed", action="store_true",
                   help="re-run only the trials that errored")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved recipe, the search and its rough cost; run nothing")
    p.add_argument("--storage", default=None,
                   help="experiment storage: a local folder, a shared mount or s3://bucket/prefix "
                        "(default: $CXR_EXPLORER_STORAGE, else runs/)")
    p.add_argument("--name", help="experiment name (default: the spec's name)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join ('auto' or host:port; default: RAY_ADDRESS, "
                        "else a private local Ray)")
    p.add_argument("--reports", default="reports", help="where reports are written")
    p.add_argument("-v", "--verbose", action="store_true", help="show Ray's own output")
    return p


class _StdoutHandler(logging.Handler):
    """explorer's warnings (e.g. labelled images without a file) are progress, not errors: they
    go to stdout, so stderr holds nothing but the one error line. sys.stdout is looked up per
    record (it may be replaced, e.g. by pytest's capture)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stdout, flush=True)


def _log_to_stdout() -> None:
    log = logging.getLogger("explorer")
    if not any(isinstance(h, _StdoutHandler) for h in log.handlers):
        log.addHandler(_StdoutHandler())


RESUME_HINT = "run the same command with --resume to continue"


def main(argv: list[str] | None = None) -> int:
    from explorer.storage.faults import StorageFault

    args = build_parser().parse_args(argv)
    _log_to_stdout()
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {cli_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (explorer.search.faults.Terminated)
        term = type(exc).__name__ == "Terminated"
        # after Ctrl-C the terminal shows ^C: start on a line of our own
        print("terminated: " + RESUME_HINT if term else "\ninterrupted: " + RESUME_HINT,
              file=sys.stderr)
        return 143 if term else 130
    except Exception as exc:
        # Tune wraps what its callbacks raise (explorer.search.faults.FaultWatch) in a
        # TuneError; a full or read-only disk met outside a trial is a bare OSError
        fault = wrapped_user_error(exc) or StorageFault.from_exception(exc, _shown_storage(args))
        if fault is None:
            raise
        print(f"error: {cli_line(fault)}", file=sys.stderr)
        return 2


def wrapped_user_error(exc: BaseException) -> UserError | None:
    """The ``UserError`` an exception was raised from or while handling, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, UserError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _shown_storage(args: argparse.Namespace) -> str:
    from explorer.storage.remote import shown

    return shown(str(args.storage or "the storage"))


def _check_name(name: str | None) -> None:
    if name is not None and not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UserError(f"--name {name!r}: use letters, digits, '-', '_' and '.' only")


def run(args: argparse.Namespace) -> int:
    """Every check that needs no Ray, then Ray, then the stages (``explorer.search.pipeline``)."""
    from explorer.settings import check_environment, check_folder, storage_setting

    check_environment()   # first: the modules imported next read some of these settings
    args.storage = storage_setting(args.storage)
    check_folder(args.reports, "--reports")   # written last: a bad one would fail at the end
    from explorer.search.dryrun import dry_run_text
    from explorer.search.experiment import Experiment
    from explorer.search.preflight import check_loaded_spec, check_name
    from explorer.search.writer import sole_writer
    from explorer.spec import load_spec
    from explorer.storage import open_store

    if args.extend is not None and args.extend < 1:
        raise UserError(f"--extend {args.extend}: must be a positive number of trials")
    loaded = load_spec(args.spec, args.set)
    check_loaded_spec(loaded, str(args.spec))   # what trials would build, built now
    _check_name(args.name)
    name = args.name or loaded.spec.name
    check_name(name, "--name" if args.name else f"{args.spec}: name")
    if args.dry_run:
        print(dry_run_text(loaded, name))
        return 0
    store = open_store(args.storage)
    exp = Experiment(store, name)
    with sole_writer(store, name, exp.where):  # one driver per experiment, before any write
        return _run_locked(args, loaded, store, exp)


def _run_locked(args, loaded, store, exp) -> int:
    """The run, with the experiment's driver lock held."""
    from explorer.search import cluster
    from explorer.search.context import RunInputs
    from explorer.search.faults import sigterm_as_interrupt

    store.pull(exp.name)  # a remote storage: this machine's mirror of the experiment, if any
    extend = args.extend or 0
    if exp.exists():
        if not (args.resume or extend or args.retry_failed):
            exp.refuse_overwrite()
        exp.check_same_spec(loaded)
    elif extend or args.retry_failed:
        raise UserError(f"{exp.where}: no experiment to extend or retry; run it first without "
                        "--extend/--retry-failed")
    elif args.resume:
        print(f"nothing to resume at {exp.where}: starting the search", flush=True)

    from explorer.search.pipeline import prepare

    inputs = RunInputs(loaded)
    data = prepare(inputs)  # bad data or weights fail here, before anything is written
    _mend(exp)
    with cluster.ray_settings(args.verbose):
        ray_cluster = cluster.connect(args.address, args.verbose)
        with sigterm_as_interrupt():  # after ray.init, which sets its own handler
            return _run_on(args, loaded, exp, inputs, data, ray_cluster, extend)


def _mend(exp) -> None:
    """What a driver that died mid-write left in an existing experiment (``repair.py``)."""
    from explorer.search.repair import repair_journal, sweep_temporaries
    from explorer.search.tuning import journal_path

    if not exp.exists():
        return
    n, size = sweep_temporaries(exp.dir)
    if n:
        print(f"note: removed {n} temporary file(s) ({size / 1e6:.1f} MB) left by interrupted "
              f"writes in {exp.where}", flush=True)
    note = repair_journal(journal_path(exp.dir), f"{exp.where}/optuna.journal")
    if note:
        print(note, flush=True)


def _run_on(args, loaded, exp, inputs, data, ray_cluster, extend: int) -> int:
    """The stages on a connected cluster (inside ``cluster.ray_settings``)."""
    from explorer.data.prepare import prepare_nodes
    from explorer.search import cluster
    from explorer.search.context import RunContext
    from explorer.search.pipeline import Pipeline

    cluster.check_fit(inputs.base, ray_cluster)  # so do resources that can never fit
    cluster.check_shared_storage(exp.store, ray_cluster)
    prepare_nodes(inputs.base.data, ray_cluster.nodes)  # each node's cache, before trials
    if not exp.exists():
        exp.create(loaded)
    pipeline = Pipeline(RunContext(inputs, exp, data, ray_cluster, args.verbose),
                        reports=Path(args.reports))
    t0 = time.time()
    status = pipeline.run(extend=extend, retry_failed=args.retry_failed)
    if status == 0:
        print(f"done in {time.time() - t0:.0f} s: report at {pipeline.report_path}", flush=True)
    return status
