"""The flags of `popplast run`, and the execution and tracking flags every command that searches shares."""

from __future__ import annotations

import argparse

from popplast.defaults import CPUS_PER_WORKER, EXECUTOR, EXECUTORS, GPUS_PER_WORKER, OPTUNA_STORAGE, TRACKING_URI
from popplast.strategies.stoppers import STOPPERS


def run_flags(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "space", metavar="SPACE.yaml", nargs="?", help="the search-space file (may be left out with --resume)"
    )
    run.add_argument(
        "--resume",
        metavar="SEARCH_RUN_ID",
        help="go on with an interrupted search from its MLflow run, from the last finished generation, "
        "exactly as if never stopped (every method but the tune-* ones)",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="with --resume: take the search over even if another driver still holds it",
    )
    run.add_argument(
        "--method",
        metavar="METHOD",
        help="ga or gensoup (the file's strategy), popplast's population-based training (pbt), an Optuna "
        "sampler (tpe, gp, cmaes, random, nsga2), an evolution strategy (elitist, openai, snes), or Ray Tune "
        "(tune-tpe: OptunaSearch; tune-pbt: PopulationBasedTraining; tune-asha: ASHA over random search), "
        "all over the same space; METHOD+RULE adds an early-stopping rule (ga+asha), tpe-hyperband, "
        "tpe-asha, random-asha name the multi-fidelity baselines, and ga-async, gensoup-async, pbt-async "
        "run without generations; or a strategy of your own, module:Class (found beside the file first)",
    )
    run.add_argument(
        "--warm-start",
        metavar="SEARCH_RUN_ID",
        help="start the first generation (or the first trials) from that search's best configurations, and "
        "Gen-Soup and PBT from their trained states where its checkpoint holds them (the file's warm_start: "
        "otherwise, which can also list configurations)",
    )
    run.add_argument(
        "--schedule",
        choices=("generational", "async"),
        help="async: ga, gensoup and pbt without generations, a child asked whenever a worker is free "
        "(the file's strategy.schedule otherwise; METHOD-async says the same)",
    )
    run.add_argument(
        "--stopper",
        choices=STOPPERS,
        help="early stopping (the file's stopper: section otherwise): median, asha, hyperband, or none",
    )
    run.add_argument(
        "--budget-evals",
        type=int,
        help="evaluations to spend (default: the file's population × "
        "generations); ga, pbt, the evolution strategies and tune-pbt need a multiple of the population",
    )
    run.add_argument(
        "--budget-epochs",
        type=int,
        help="training epochs to spend instead (an evaluation stopped early costs fewer); the search ends after "
        "the generation that reaches them",
    )
    file = run.add_argument_group("overrides of the file")
    file.add_argument("--population", type=int, help="individuals per generation")
    file.add_argument("--generations", type=int, help="number of generations")
    file.add_argument("--seed", type=int, help="seed of the strategy (same seed, same genomes and lineage)")
    file.add_argument("--epochs", type=int, help="training epochs per evaluation")
    file.add_argument("--image-size", type=int, help="image side in pixels during the search")
    execution_flags(run, timeouts=True)
    run.add_argument(
        "--run-id-file",
        metavar="PATH",
        help="write the search run's id to PATH as soon as the run exists, for a job script that resumes it "
        "(`popplast slurm`'s does)",
    )
    run.add_argument(
        "--retrain",
        action="store_true",
        help="train the best configuration at the file's final fidelity and log the model to MLflow",
    )
    study = run.add_argument_group("Optuna methods (tpe, cmaes, random, nsga2)")
    study.add_argument(
        "--optuna-storage",
        default=OPTUNA_STORAGE,
        help="Optuna storage URL the study is recorded in, a trial per individual (default %(default)s)",
    )
    study.add_argument("--study-name", help="Optuna study name (default: EXPERIMENT-METHOD-seedSEED)")


def execution_flags(parser: argparse.ArgumentParser, timeouts: bool = False) -> None:
    ex = parser.add_argument_group("execution and tracking")
    if timeouts:
        ex.add_argument(
            "--eval-timeout",
            type=float,
            metavar="SECONDS",
            help="an evaluation running longer is stopped (its Ray worker is killed and replaced) and recorded "
            "failed, 'timed out after SECONDS s'; the search goes on (default: no limit; ray and simulated "
            "executors)",
        )
    ex.add_argument(
        "--executor",
        choices=EXECUTORS,
        default=EXECUTOR,
        help="ray: a pool of Ray worker actors (default); local: one after another in this process; "
        "simulated: --workers simulated workers in virtual time, evaluations from --simulate",
    )
    ex.add_argument(
        "--simulate",
        metavar="PATH",
        help="with --executor simulated: a table recorded by `popplast record-table` (.json), a suite task's "
        "table (.npz; a task's own search file needs none) or a simulation file (.yaml: a table or a cost model, "
        "injected failures and worker losses)",
    )
    ex.add_argument(
        "--workers", type=int, help="Ray worker actors (default: as many as the CPUs allow, at most the population)"
    )
    ex.add_argument(
        "--cpus-per-worker",
        type=float,
        default=CPUS_PER_WORKER,
        help="CPUs per worker; also its torch threads (default %(default)g)",
    )
    ex.add_argument(
        "--gpus-per-worker",
        type=float,
        default=GPUS_PER_WORKER,
        help="GPUs per worker, fractions allowed (default %(default)g)",
    )
    ex.add_argument(
        "--address",
        help="join this Ray cluster ('auto' for the one this machine belongs to); "
        "without it a local Ray instance is started and stopped",
    )
    ex.add_argument("--tracking-uri", default=TRACKING_URI, help="MLflow tracking URI (default %(default)s)")
    ex.add_argument("--experiment", help="MLflow experiment (default: the file's name without .yaml)")
    ex.add_argument("--quiet", action="store_true", help="no progress display")
