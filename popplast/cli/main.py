"""The `popplast` command. Thin: it parses flags and calls the Python API."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Sequence

from popplast.cli.parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from popplast.errors import PopplastError
    from popplast.search.session import Interrupted, interrupted, signals_unwrapped, stop_on_sigterm

    with stop_on_sigterm():
        try:
            with signals_unwrapped():
                return COMMANDS[args.command](args)
        except PopplastError as e:  # every error a user sees: one line, its exit code
            print(f"popplast: {e.line()}", file=sys.stderr)
            return e.exit_code
        except (KeyboardInterrupt, Interrupted) as e:
            stop = interrupted(e)
            assert stop is not None
            run, journal = getattr(e, "search_run_id", ""), getattr(e, "journalled_end", "")
            if journal:  # the search had ended; MLflow had not taken its end yet
                where = f"the search's end waits in {journal}, and `popplast sync {journal}` ends its run"
            elif args.command == "sync":  # it ships into a run it does not own: nothing marks that run
                where = (
                    "the search run's status is left as it was; the events not yet shipped stay in "
                    f"{args.directory}, and `popplast sync {args.directory}` ships them"
                )
            elif run:
                where = (
                    f"the search run {run} is marked KILLED; `popplast run --resume {run}` goes on from its last "
                    "finished generation"
                )
            else:
                where = "its MLflow run, if one was started, is marked KILLED"
            print(f"popplast: {stop}; {where}.", file=sys.stderr)
            return stop.exit_code


def _run(args: argparse.Namespace) -> int:
    from popplast.search.plan import RunOptions
    from popplast.search.run import run

    # every flag of `popplast run` is an option of popplast.run by the same name (tests/test_cli_options.py)
    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunOptions) if hasattr(args, f.name)}
    result = run(args.space, **options, progress=not args.quiet)
    print(result.summary())
    return 0


def _slurm(args: argparse.Namespace) -> int:
    import inspect

    from popplast.search.slurm import slurm

    # the job's own flags are popplast.slurm's keywords by the same names; the rest are popplast run's
    keywords = inspect.signature(slurm).parameters
    own = {name: getattr(args, name) for name in keywords if hasattr(args, name) and name != "space"}
    defaults = vars(build_parser().parse_args(["slurm"]))
    given = {  # popplast run's flags that were given: each is passed on to the job's driver, or refused
        name: value
        for name, value in vars(args).items()
        if name not in (*own, "command", "space", "quiet") and value != defaults[name]
    }
    job = slurm(args.space, **own, **given, progress=not args.quiet)
    print(job.summary())
    return 0


def _compare(args: argparse.Namespace) -> int:
    from popplast.search.compare import compare

    result = compare(
        args.space,
        methods=args.methods,
        budget_evals=args.budget_evals,
        budget_epochs=args.budget_epochs,
        seeds=args.seeds,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
        executor=args.executor,
        address=args.address,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        optuna_storage=args.optuna_storage,
        simulate=args.simulate,
        eval_timeout=args.eval_timeout,
        warm_start=args.warm_start,
        out=args.out,
        resume=args.resume,
        progress=not args.quiet,
    )
    print(result.summary())
    return 0


def _report(args: argparse.Namespace) -> int:
    from popplast.search.compare import report

    files = report(args.comparison_run_id, tracking_uri=args.tracking_uri, out=args.out, log=args.log)
    print("\n".join(files))
    return 0


def _record_table(args: argparse.Namespace) -> int:
    from popplast.reports.record_table import record_table

    table = record_table(args.tracking_uri, args.search_run_id)
    table.save(args.out)
    print(f"{args.out}: {len(table.rows)} runs of the search {args.search_run_id} ({table.metric})")
    return 0


def _suites(args: argparse.Namespace) -> int:
    from popplast.integrations.suites import import_suites, listing

    if args.action == "list":
        print("\n".join(listing(args.out)))
        return 0
    imported = import_suites(args.names, args.out, progress=not args.quiet, force=args.force)
    print("\n".join(task.search_file for task in imported))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from popplast.search.replay import replay

    result = replay(
        args.search_run_id,
        individual=args.individual,
        tracking_uri=args.tracking_uri,
        cpus=args.cpus,
        progress=not args.quiet,
    )
    print(result.summary())
    return 0 if result.fitness is not None else 1


def _sync(args: argparse.Namespace) -> int:
    from popplast.tracking.journal_sync import sync

    run_id, shipped, refused = sync(
        args.directory, on_wait=lambda message: print(f"[popplast] {message}", file=sys.stderr)
    )
    print(f"shipped {shipped} journalled events to the search run {run_id}")
    if not refused:
        return 0
    for index, error in sorted(refused.items()):
        print(f"popplast: MLflow refused journal event {index}: {error}", file=sys.stderr)
    print(
        f"popplast: {len(refused)} events stay in {args.directory}; fix what MLflow names and run "
        f"`popplast sync {args.directory}` again",
        file=sys.stderr,
    )
    return 1


def _lineage(args: argparse.Namespace) -> int:
    from popplast.reports.lineage import draw_lineage

    html_path, png_path = draw_lineage(
        args.tracking_uri, args.search_run_id, args.out, args.ui_url, log=not args.no_log, focus=args.focus
    )
    print(f"{html_path}\n{png_path}")
    return 0


def _evolve_rules(args: argparse.Namespace) -> int:
    from popplast.search.evolve_rules import evolve_rules

    result = evolve_rules(
        args.space,
        method=args.method,
        population=args.population,
        generations=args.generations,
        seed=args.seed,
        sigma=args.sigma,
        learning_rate=args.learning_rate,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
        executor=args.executor,
        address=args.address,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        progress=not args.quiet,
    )
    print(result.summary())
    return 0


COMMANDS = {  # a command's handler: it returns the exit code; a PopplastError is main's to print
    "run": _run,
    "compare": _compare,
    "report": _report,
    "record-table": _record_table,
    "suites": _suites,
    "replay": _replay,
    "sync": _sync,
    "lineage": _lineage,
    "evolve-rules": _evolve_rules,
    "slurm": _slurm,
}


if __name__ == "__main__":
    sys.exit(main())
